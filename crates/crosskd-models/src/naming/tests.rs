//! The name maps against the state dicts of the real libraries (`models/manifests/`, written by
//! `models/manifests/generate.py`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::arch::build_from_tensors;
use crate::torchvision::mobilenet_v2::MobileNetV2Config;
use crate::torchvision::resnet::ResNetConfig;
use crate::torchvision::vgg16::Vgg16Config;

type Manifest = Vec<(String, Vec<usize>)>;

fn manifest(file: &str) -> Manifest {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/manifests")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let name = entry[0].as_str().unwrap().to_string();
            let shape = entry[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (name, shape)
        })
        .collect()
}

/// Every supported architecture with its timm and torchvision model names.
fn architectures() -> Vec<(ArchitectureConfig, &'static str, &'static str)> {
    let resnet = |depth| {
        ArchitectureConfig::Resnet(ResNetConfig {
            depth,
            num_classes: 1000,
        })
    };
    vec![
        (
            ArchitectureConfig::MobilenetV2(MobileNetV2Config::default()),
            "mobilenetv2_100",
            "mobilenet_v2",
        ),
        (resnet(18), "resnet18", "resnet18"),
        (resnet(34), "resnet34", "resnet34"),
        (resnet(50), "resnet50", "resnet50"),
        (
            ArchitectureConfig::Vgg16(Vgg16Config::default()),
            "vgg16",
            "vgg16",
        ),
    ]
}

fn mapped(
    arch: &ArchitectureConfig,
    naming: WeightNaming,
    m: &Manifest,
) -> BTreeMap<String, Vec<usize>> {
    let scheme = naming.detect(m.iter().map(|(n, _)| n.as_str()));
    m.iter()
        .map(|(n, s)| torchvision_name(arch, scheme, n, s))
        .collect()
}

/// Zero tensors of the given shapes that share one element, so that even VGG16's 138 M
/// parameters cost no memory.
fn broadcast_zeros(shapes: &BTreeMap<String, Vec<usize>>) -> HashMap<String, Tensor> {
    let zero = Tensor::zeros((), DType::F32, &Device::Cpu).unwrap();
    shapes
        .iter()
        .map(|(n, s)| (n.clone(), zero.broadcast_as(s.as_slice()).unwrap()))
        .collect()
}

#[test]
fn timm_names_map_onto_torchvision_names_for_every_architecture() {
    for (arch, timm, torchvision) in architectures() {
        let timm = manifest(&format!("timm-{timm}.json"));
        let torchvision = manifest(&format!("torchvision-{torchvision}.json"));
        let want: BTreeMap<_, _> = torchvision.iter().cloned().collect();
        assert_eq!(want.len(), torchvision.len());
        // Explicitly timm, and detected as timm (ResNets have torchvision's names in timm too).
        for naming in [WeightNaming::Timm, WeightNaming::Auto] {
            let got = mapped(&arch, naming, &timm);
            assert_eq!(got.len(), timm.len(), "{}: names collide", arch.name());
            assert_eq!(got, want, "{} ({})", arch.name(), naming.name());
        }
    }
}

#[test]
fn torchvision_names_are_kept_and_auto_detects_them() {
    for (arch, _, torchvision) in architectures() {
        let m = manifest(&format!("torchvision-{torchvision}.json"));
        let want: BTreeMap<_, _> = m.iter().cloned().collect();
        assert_eq!(mapped(&arch, WeightNaming::Auto, &m), want);
        assert_eq!(mapped(&arch, WeightNaming::Torchvision, &m), want);
    }
}

#[test]
fn the_strict_loader_accepts_both_libraries_state_dicts_through_the_maps() {
    for (arch, timm, torchvision) in architectures() {
        for file in [
            format!("timm-{timm}.json"),
            format!("torchvision-{torchvision}.json"),
        ] {
            let shapes = mapped(&arch, WeightNaming::Auto, &manifest(&file));
            build_from_tensors(
                &arch,
                broadcast_zeros(&shapes),
                &file,
                DType::F32,
                &Device::Cpu,
            )
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
}

#[test]
fn a_timm_mobilenet_v2_state_dict_loads_tensor_by_tensor() {
    // Real tensors this time (3.5 M parameters): each a distinct constant, so that a tensor
    // renamed to the wrong place would be caught by its value.
    let arch = ArchitectureConfig::MobilenetV2(MobileNetV2Config::default());
    let timm = manifest("timm-mobilenetv2_100.json");
    let tensors: HashMap<String, Tensor> = timm
        .iter()
        .enumerate()
        .map(|(i, (n, s))| {
            let t =
                (Tensor::ones(s.as_slice(), DType::F32, &Device::Cpu).unwrap() * i as f64).unwrap();
            (n.clone(), t)
        })
        .collect();
    let renamed = to_torchvision_names(&arch, WeightNaming::Auto, tensors).unwrap();
    let check = |from: &str, to: &str| {
        let index = timm.iter().position(|(n, _)| n == from).unwrap();
        let value = renamed[to].flatten_all().unwrap().get(0).unwrap();
        assert_eq!(
            value.to_scalar::<f32>().unwrap(),
            index as f32,
            "{from} -> {to}"
        );
    };
    check("conv_stem.weight", "features.0.0.weight");
    check("blocks.0.0.conv_pw.weight", "features.1.conv.1.weight");
    check("blocks.2.1.conv_dw.weight", "features.5.conv.1.0.weight");
    check(
        "blocks.6.0.bn3.running_var",
        "features.17.conv.3.running_var",
    );
    check("classifier.bias", "classifier.1.bias");
    build_from_tensors(
        &arch,
        renamed,
        "timm mobilenetv2_100",
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
}

#[test]
fn vgg16_convolutional_classifier_weights_reshape_in_flattening_order() {
    let arch = ArchitectureConfig::Vgg16(Vgg16Config::default());
    let conv = Tensor::arange(0f32, 2.0 * 3.0 * 49.0, &Device::Cpu)
        .unwrap()
        .reshape((2, 3, 7, 7))
        .unwrap();
    let tensors = HashMap::from([("pre_logits.fc1.weight".to_string(), conv.clone())]);
    let renamed = to_torchvision_names(&arch, WeightNaming::Timm, tensors).unwrap();
    let linear = &renamed["classifier.0.weight"];
    assert_eq!(linear.dims(), &[2, 147]);
    // torchvision flattens (C, H, W) maps row-major: input c·49 + h·7 + w.
    let (o, c, h, w) = (1, 2, 3, 4);
    let want = conv
        .get(o)
        .unwrap()
        .get(c)
        .unwrap()
        .get(h)
        .unwrap()
        .get(w)
        .unwrap();
    let got = linear.get(o).unwrap().get(c * 49 + h * 7 + w).unwrap();
    assert_eq!(
        got.to_scalar::<f32>().unwrap(),
        want.to_scalar::<f32>().unwrap()
    );
}

#[test]
fn names_that_collide_after_mapping_are_refused_naming_both() {
    let arch = ArchitectureConfig::Vgg16(Vgg16Config::default());
    let t = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    let tensors = HashMap::from([
        ("head.fc.bias".to_string(), t.clone()),
        ("classifier.6.bias".to_string(), t),
    ]);
    let err = to_torchvision_names(&arch, WeightNaming::Timm, tensors)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("head.fc.bias") && err.contains("classifier.6.bias"),
        "{err}"
    );
}
