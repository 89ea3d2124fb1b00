//! Weight files that do not match the architecture are refused with every problem listed.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use crosskd_models::arch::{build_seeded, ArchitectureConfig};
use crosskd_models::checkpoint::{save_checkpoint, save_varmap_checkpoint, ARCHITECTURE_KEY};
use crosskd_models::params::sorted_vars;
use crosskd_models::storage::write_safetensors;
use crosskd_models::students::unet::UnetConfig;
use crosskd_models::teacher::{FrozenTeacher, Teacher};
use crosskd_models::torchvision::mobilenet_v2::MobileNetV2Config;
use crosskd_models::Result;

fn small_unet() -> ArchitectureConfig {
    ArchitectureConfig::Unet(UnetConfig {
        base_width: 4,
        depth: 2,
        ..UnetConfig::default()
    })
}

#[test]
fn missing_extra_and_misshapen_tensors_are_all_listed() -> Result<()> {
    let dev = Device::Cpu;
    let arch = small_unet();
    let (_, varmap) = build_seeded(&arch, 0, DType::F32, &dev)?;
    let mut tensors = sorted_vars(&varmap);
    tensors.retain(|(n, _)| n != "enc2.conv1.weight");
    for (name, t) in tensors.iter_mut() {
        if name == "dec1.norm2.bias" {
            *t = Tensor::zeros(7, DType::F32, &dev)?;
        }
    }
    tensors.push((
        "head.weight".into(),
        Tensor::zeros((3, 3), DType::F32, &dev)?,
    ));
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("bad.safetensors");
    save_checkpoint(&path, &arch, "", &tensors, &[], &BTreeMap::new())?;
    let msg = FrozenTeacher::from_checkpoint(&path, None, &dev)
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("bad.safetensors"), "{msg}");
    assert!(
        msg.contains("enc2.conv1.weight: expected shape [8, 4, 3, 3]"),
        "{msg}"
    );
    assert!(msg.contains("head.weight: shape [3, 3]"), "{msg}");
    assert!(
        msg.contains("dec1.norm2.bias: expected [32], found [7]"),
        "{msg}"
    );
    assert!(
        msg.contains("missing (1)")
            && msg.contains("unexpected (1)")
            && msg.contains("wrong shape (1)"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn a_plain_file_for_another_architecture_is_refused() -> Result<()> {
    let dev = Device::Cpu;
    let (_, varmap) = build_seeded(&small_unet(), 0, DType::F32, &dev)?;
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("unet.safetensors");
    write_safetensors(&path, &sorted_vars(&varmap), &BTreeMap::new())?;
    let arch = ArchitectureConfig::MobilenetV2(MobileNetV2Config { num_classes: 10 });
    let msg = FrozenTeacher::pretrained(&arch, &path, None, &dev)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        msg.contains("features.0.0.weight: expected shape [32, 3, 3, 3]"),
        "{msg}"
    );
    assert!(msg.contains("enc1.conv1.weight"), "{msg}");
    Ok(())
}

#[test]
fn checkpoints_with_a_prefix_ignore_other_modules_and_old_files_may_lack_num_batches_tracked(
) -> Result<()> {
    let dev = Device::Cpu;
    let arch = small_unet();
    let (net, varmap) = build_seeded(&arch, 3, DType::F32, &dev)?;
    let mut tensors = sorted_vars(&varmap);
    tensors.retain(|(n, _)| !n.ends_with("num_batches_tracked"));
    let extra = vec![(
        "head.conv.weight".to_string(),
        Tensor::zeros((1, 4, 1, 1), DType::F32, &dev)?,
    )];
    let mut meta = BTreeMap::new();
    meta.insert("crosskd.task".to_string(), "segmentation".to_string());
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("run.safetensors");
    save_checkpoint(&path, &arch, "student.", &tensors, &extra, &meta)?;
    let teacher = FrozenTeacher::from_checkpoint(&path, None, &dev)?;
    let x = Tensor::ones((1, 3, 8, 8), DType::F32, &dev)?;
    let got = teacher.features(&x, &["bottleneck"])?;
    let (_, want) = net.forward_with_taps(&x, false, &["bottleneck"])?;
    let diff = (&got["bottleneck"] - &want["bottleneck"])?
        .abs()?
        .sum_all()?
        .to_scalar::<f32>()?;
    assert_eq!(diff, 0.0);
    Ok(())
}

#[test]
fn files_without_the_contract_metadata_are_refused_as_checkpoints() -> Result<()> {
    let dev = Device::Cpu;
    let (_, varmap) = build_seeded(&small_unet(), 0, DType::F32, &dev)?;
    let dir = tempfile::tempdir().expect("temporary folder");
    let plain = dir.path().join("plain.safetensors");
    write_safetensors(&plain, &sorted_vars(&varmap), &BTreeMap::new())?;
    let msg = FrozenTeacher::from_checkpoint(&plain, None, &dev)
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("crosskd.format"), "{msg}");
    let good = dir.path().join("good.safetensors");
    save_varmap_checkpoint(&good, &small_unet(), &varmap)?;
    let mut file = crosskd_models::storage::read_safetensors(&good, &dev)?;
    file.metadata.insert(
        ARCHITECTURE_KEY.into(),
        r#"{"arch":"unet","depht":2}"#.into(),
    );
    let tensors: Vec<(String, Tensor)> = file.tensors.into_iter().collect();
    let broken = dir.path().join("broken.safetensors");
    write_safetensors(&broken, &tensors, &file.metadata)?;
    let msg = FrozenTeacher::from_checkpoint(&broken, None, &dev)
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("depht"), "{msg}");
    Ok(())
}
