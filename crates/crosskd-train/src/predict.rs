//! `crosskd predict`: run a trained student on one image file.

use std::path::Path;

use candle_core::Tensor;
use image::imageops::FilterType;
use image::RgbImage;

use crate::config::Task;
use crate::error::{Result, TrainError};
use crate::session::Session;
use crate::task::{class_tile, depth_tile, image_tile};

/// What a prediction produced.
#[derive(Debug, Clone)]
pub enum Prediction {
    /// A picture of a dense prediction (colourised depth, palette segmentation, translated image).
    Picture(RgbImage),
    /// Class probabilities of a classifier, highest first: `(class, probability)`.
    Classes(Vec<(usize, f64)>),
}

/// Reads `input`, resizes it to the run's image size, and predicts with the session's student.
pub fn predict_file(session: &Session, input: &Path) -> Result<Prediction> {
    let img = image::open(input).map_err(|e| TrainError::Input {
        path: input.to_path_buf(),
        message: format!("expected a readable PNG or JPEG image: {e}"),
    })?;
    let size = session.config.data.image_size as u32;
    let img = img.resize_exact(size, size, FilterType::Triangle);
    let channels = match session.config.student_arch() {
        Some(crosskd_models::ArchitectureConfig::Unet(u)) => u.in_channels,
        Some(crosskd_models::ArchitectureConfig::SmallResnet(r)) => r.in_channels,
        _ => 3,
    };
    let (c, data): (usize, Vec<f32>) = if channels == 1 {
        (
            1,
            img.to_luma8()
                .pixels()
                .map(|p| p.0[0] as f32 / 255.0)
                .collect(),
        )
    } else {
        let rgb = img.to_rgb8();
        let plane = (size * size) as usize;
        let mut v = vec![0.0f32; 3 * plane];
        for (i, p) in rgb.pixels().enumerate() {
            for ch in 0..3 {
                v[ch * plane + i] = p.0[ch] as f32 / 255.0;
            }
        }
        (3, v)
    };
    let x = Tensor::from_vec(data, (1, c, size as usize, size as usize), &session.device)?;
    let pass = session.student.forward(&x, false)?;
    let pred = pass.prediction.get(0)?;
    Ok(match session.config.task {
        Task::Depth => Prediction::Picture(depth_tile(&pred, None)?),
        Task::Segmentation => Prediction::Picture(class_tile(&pred.argmax(0)?)?),
        Task::Translation => Prediction::Picture(image_tile(&pred, -1.0, 1.0)?),
        Task::Classification => {
            let p = crosskd_ops::softmax::softmax(&pred, 0)
                .map_err(|e| TrainError::Component(e.to_string()))?;
            let mut v: Vec<(usize, f64)> = p
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?
                .into_iter()
                .enumerate()
                .collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            Prediction::Classes(v)
        }
    })
}
