//! Every architecture: seeded build, forward with all taps against `tap_shapes`, save as a
//! checkpoint and reload as a teacher with identical features.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use crosskd_models::arch::{build_seeded, ArchitectureConfig};
use crosskd_models::checkpoint::save_varmap_checkpoint;
use crosskd_models::layers::NormKind;
use crosskd_models::params::sorted_vars;
use crosskd_models::storage::write_safetensors;
use crosskd_models::students::small_resnet::SmallResnetConfig;
use crosskd_models::students::unet::{UnetConfig, UpsampleMode};
use crosskd_models::teacher::{FrozenTeacher, InputNormalization, Teacher};
use crosskd_models::torchvision::mobilenet_v2::MobileNetV2Config;
use crosskd_models::torchvision::resnet::ResNetConfig;
use crosskd_models::torchvision::vgg16::Vgg16Config;
use crosskd_models::{Result, TappedNetwork};

fn images(n: usize, h: usize, w: usize, seed: u64) -> Result<Tensor> {
    // A deterministic, non-constant pattern in [0, 1] (no RNG needed).
    let count = n * 3 * h * w;
    let v: Vec<f32> = (0..count)
        .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32) / 999.0)
        .collect();
    Ok(Tensor::from_vec(v, (n, 3, h, w), &Device::Cpu)?)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// Builds `arch` at seed 1, checks taps at `(h, w)`, round-trips it through a checkpoint and a
/// plain weight file, and checks the reloaded teachers give the same features.
fn check_architecture(arch: ArchitectureConfig, h: usize, w: usize) -> Result<()> {
    let dev = Device::Cpu;
    let (net, varmap) = build_seeded(&arch, 1, DType::F32, &dev)?;
    let shapes = net.tap_shapes((h, w))?;
    let names: Vec<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
    let x = images(2, h, w, 3)?;
    let (out, taps) = net.forward_with_taps(&x, false, &names)?;
    assert_eq!(
        taps.len(),
        shapes.len(),
        "{}: every tap recorded",
        arch.name()
    );
    for (name, shape) in &shapes {
        let mut want = vec![2];
        want.extend_from_slice(shape);
        assert_eq!(
            taps[name].dims(),
            want.as_slice(),
            "{}: tap {name}",
            arch.name()
        );
    }
    // A features-only pass, which may end at its last tap, records the same values.
    let (first, last) = (names[0], names[names.len() - 1]);
    for wanted in [vec![first], vec![last], vec![last, first]] {
        let alone = net.tap_features(&x, false, &wanted)?;
        assert_eq!(alone.len(), wanted.len(), "{}: {wanted:?}", arch.name());
        for name in &wanted {
            assert_eq!(
                max_abs_diff(&alone[*name], &taps[*name])?,
                0.0,
                "{}: tap {name} of a features-only pass",
                arch.name()
            );
        }
    }
    let output_tap = net.output_tap();
    assert_eq!(
        max_abs_diff(&out, &taps[&output_tap])?,
        0.0,
        "output equals tap {output_tap}"
    );
    assert!(
        out.flatten_all()?.abs()?.sum(0)?.to_scalar::<f32>()? > 0.0,
        "{}: output is not all zero",
        arch.name()
    );

    let dir = tempfile::tempdir().expect("temporary folder");
    let random = FrozenTeacher::random(&arch, 1, None, &dev)?;
    let want = random.features(&x, &names)?;
    let ckpt = dir.path().join("model.safetensors");
    save_varmap_checkpoint(&ckpt, &arch, &varmap)?;
    let inhouse = FrozenTeacher::from_checkpoint(&ckpt, None, &dev)?;
    let plain = dir.path().join("plain.safetensors");
    write_safetensors(&plain, &sorted_vars(&varmap), &BTreeMap::new())?;
    let pretrained = FrozenTeacher::pretrained(&arch, &plain, None, &dev)?;
    for teacher in [&inhouse, &pretrained] {
        let got = teacher.features(&x, &names)?;
        for name in &names {
            assert_eq!(
                max_abs_diff(&got[*name], &want[*name])?,
                0.0,
                "{}: tap {name} after reload",
                arch.name()
            );
            assert_eq!(
                max_abs_diff(&got[*name], &taps[*name])?,
                0.0,
                "{}: tap {name} vs network",
                arch.name()
            );
        }
    }
    assert_ne!(inhouse.identity(), random.identity());
    Ok(())
}

#[test]
fn unet_batch_norm() -> Result<()> {
    let cfg = UnetConfig {
        base_width: 4,
        depth: 3,
        out_channels: 6,
        ..UnetConfig::default()
    };
    check_architecture(ArchitectureConfig::Unet(cfg.clone()), 16, 16)?;
    // Sizes that do not halve evenly: floors in the encoder, exact resize back in the decoder.
    check_architecture(ArchitectureConfig::Unet(cfg), 19, 13)
}

#[test]
fn unet_group_norm_bilinear_without_skips() -> Result<()> {
    let cfg = UnetConfig {
        base_width: 4,
        depth: 2,
        norm: NormKind::Group,
        group_norm_groups: 2,
        skip_connections: false,
        out_channels: 4,
        upsample: UpsampleMode::Bilinear,
        ..UnetConfig::default()
    };
    check_architecture(ArchitectureConfig::Unet(cfg), 12, 12)
}

#[test]
fn small_resnet() -> Result<()> {
    let cfg = SmallResnetConfig {
        widths: vec![4, 8, 8],
        blocks: vec![1, 2, 1],
        ..SmallResnetConfig::default()
    };
    check_architecture(ArchitectureConfig::SmallResnet(cfg), 16, 16)
}

#[test]
fn mobilenet_v2() -> Result<()> {
    check_architecture(
        ArchitectureConfig::MobilenetV2(MobileNetV2Config { num_classes: 10 }),
        32,
        32,
    )
}

#[test]
fn resnet18() -> Result<()> {
    check_architecture(
        ArchitectureConfig::Resnet(ResNetConfig {
            depth: 18,
            num_classes: 10,
        }),
        32,
        32,
    )
}

#[test]
fn resnet34() -> Result<()> {
    check_architecture(
        ArchitectureConfig::Resnet(ResNetConfig {
            depth: 34,
            num_classes: 10,
        }),
        32,
        32,
    )
}

#[test]
fn resnet50() -> Result<()> {
    check_architecture(
        ArchitectureConfig::Resnet(ResNetConfig {
            depth: 50,
            num_classes: 10,
        }),
        32,
        32,
    )
}

#[test]
fn vgg16_features_only() -> Result<()> {
    check_architecture(
        ArchitectureConfig::Vgg16(Vgg16Config {
            classifier: false,
            num_classes: 1000,
        }),
        32,
        32,
    )
}

#[cfg(feature = "dinov2")]
#[test]
fn dinov2_small() -> Result<()> {
    use crosskd_models::foreign::dinov2::{Dinov2Config, Dinov2Size};
    check_architecture(
        ArchitectureConfig::Dinov2(Dinov2Config {
            size: Dinov2Size::Small,
        }),
        28,
        28,
    )
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() -> Result<()> {
    let arch = ArchitectureConfig::SmallResnet(SmallResnetConfig {
        widths: vec![4, 8],
        blocks: vec![1, 1],
        ..SmallResnetConfig::default()
    });
    let dev = Device::Cpu;
    let a = sorted_vars(&build_seeded(&arch, 5, DType::F32, &dev)?.1);
    let b = sorted_vars(&build_seeded(&arch, 5, DType::F32, &dev)?.1);
    let c = sorted_vars(&build_seeded(&arch, 6, DType::F32, &dev)?.1);
    assert_eq!(a.len(), b.len());
    let mut any_differs = false;
    for ((na, ta), ((nb, tb), (_, tc))) in a.iter().zip(b.iter().zip(c.iter())) {
        assert_eq!(na, nb);
        assert_eq!(max_abs_diff(ta, tb)?, 0.0, "{na}");
        any_differs |= max_abs_diff(ta, tc)? > 0.0;
    }
    assert!(any_differs, "another seed gives other weights");
    Ok(())
}

/// A two-level U-Net student of width 4 at seed 2, with its variables.
fn small_unet() -> Result<(Box<dyn TappedNetwork>, candle_nn::VarMap)> {
    let arch = ArchitectureConfig::Unet(UnetConfig {
        base_width: 4,
        depth: 2,
        out_channels: 4,
        ..UnetConfig::default()
    });
    build_seeded(&arch, 2, DType::F32, &Device::Cpu)
}

#[test]
fn students_train_every_parameter_and_update_running_stats() -> Result<()> {
    let (net, varmap) = small_unet()?;
    let x = images(2, 8, 8, 1)?;
    let (out, _) = net.forward_with_taps(&x, true, &[])?;
    let grads = out.sqr()?.sum_all()?.backward()?;
    let mut trainable = 0;
    for (name, var) in sorted_vars(&varmap) {
        if crosskd_ops::norm::is_buffer(&name) {
            continue;
        }
        trainable += 1;
        let g = grads
            .get(&var)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert!(
            g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0,
            "zero gradient for {name}"
        );
    }
    assert!(trainable > 10);
    let stats = sorted_vars(&varmap);
    let (_, rm) = stats
        .iter()
        .find(|(n, _)| n == "enc1.norm1.running_mean")
        .expect("running mean stored in the VarMap");
    assert!(
        rm.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0,
        "a training forward updates the running mean"
    );
    Ok(())
}

/// A features-only pass ends at its last requested tap: a teacher read at its bottleneck runs no
/// decoder. Seen in training mode, where only the layers that ran update their running means.
#[test]
fn features_only_pass_ends_at_the_last_requested_tap() -> Result<()> {
    let (net, varmap) = small_unet()?;
    let running_means = || -> Result<BTreeMap<String, Vec<f32>>> {
        sorted_vars(&varmap)
            .into_iter()
            .filter(|(name, _)| name.ends_with("running_mean"))
            .map(|(name, t)| Ok((name, t.flatten_all()?.to_vec1::<f32>()?)))
            .collect()
    };
    let before = running_means()?;
    let feats = net.tap_features(&images(2, 8, 8, 1)?, true, &["bottleneck"])?;
    assert_eq!(feats.keys().collect::<Vec<_>>(), ["bottleneck"]);
    let after = running_means()?;
    let changed: Vec<&str> = before
        .keys()
        .filter(|name| before[*name] != after[*name])
        .map(String::as_str)
        .collect();
    let ran = |prefix: &str| changed.iter().any(|name| name.starts_with(prefix));
    assert!(ran("enc1") && ran("bottleneck"), "{changed:?}");
    assert!(!ran("dec"), "the decoder ran: {changed:?}");
    assert!(before.keys().any(|name| name.starts_with("dec")));
    Ok(())
}

#[test]
fn unknown_taps_are_refused_with_the_available_list() -> Result<()> {
    let arch = ArchitectureConfig::Unet(UnetConfig {
        base_width: 4,
        depth: 2,
        ..UnetConfig::default()
    });
    let teacher =
        FrozenTeacher::random(&arch, 0, Some(InputNormalization::imagenet()), &Device::Cpu)?;
    let err = teacher
        .validate_taps((16, 16), &["bottleneck", "layer3"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"layer3\""), "{err}");
    assert!(err.contains("bottleneck: [16, 4, 4]"), "{err}");
    assert!(err.contains("enc1: [4, 16, 16]"), "{err}");
    let x = images(1, 16, 16, 0)?;
    assert!(teacher.features(&x, &["nope"]).is_err());
    Ok(())
}

#[test]
fn too_small_inputs_are_refused() -> Result<()> {
    let arch = ArchitectureConfig::Unet(UnetConfig {
        base_width: 4,
        depth: 3,
        ..UnetConfig::default()
    });
    let (net, _) = build_seeded(&arch, 0, DType::F32, &Device::Cpu)?;
    let err = net.tap_shapes((4, 16)).unwrap_err().to_string();
    assert!(err.contains("4x16"), "{err}");
    Ok(())
}

#[test]
fn architecture_configs_round_trip_and_refuse_unknown_fields() {
    let arch = ArchitectureConfig::Unet(UnetConfig::default());
    let json = arch.to_json();
    let back: ArchitectureConfig = serde_json::from_str(&json).expect("round trip");
    assert_eq!(back, arch);
    let parsed: ArchitectureConfig =
        serde_json::from_str(r#"{"arch":"resnet","depth":50}"#).expect("defaults");
    assert_eq!(
        parsed,
        ArchitectureConfig::Resnet(ResNetConfig {
            depth: 50,
            num_classes: 1000
        })
    );
    let bad = serde_json::from_str::<ArchitectureConfig>(r#"{"arch":"unet","base-widht":8}"#);
    assert!(bad.is_err(), "misspelt field refused");
}
