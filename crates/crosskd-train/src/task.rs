//! Task-specific glue: batches on the run's device, heads, task losses, metrics, and pictures of
//! predictions. Data sources live in [`crate::datasets`].

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use crosskd_data::scenes::SCENE_CLASSES as SCENE_CLASS_TABLE;
use crosskd_data::{BatchTarget, IGNORE_CLASS};
use crosskd_heads::{
    classification_head, depth_head, segmentation_head, translation_head, ClassificationHeadConfig,
    DepthHeadConfig, SegmentationHeadConfig, TaskHead, TranslationHeadConfig,
};
use crosskd_losses::task::{
    classification_cross_entropy, segmentation_cross_entropy, translation_loss, SsimConfig,
    TranslationLossConfig,
};
use image::{Rgb, RgbImage};

use crate::config::{Config, Task};
use crate::error::{Result, TrainError};

/// Number of classes of the rendered scenes.
pub const SCENE_CLASSES: usize = SCENE_CLASS_TABLE.len();

/// Depth range the depth head predicts in, metres (the renderer's valid range).
pub const DEPTH_RANGE: (f64, f64) = (0.1, 10.0);

pub(crate) fn component(what: &str, e: impl std::fmt::Display) -> TrainError {
    TrainError::Component(format!("{what}: {e}"))
}

/// A batch of inputs and targets as tensors.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Inputs `(N, C, H, W)` in `[0, 1]`.
    pub images: Tensor,
    /// Targets: depth `(N, 1, H, W)` metres; class ids `(N, H, W)` u32; translation images
    /// `(N, 3, H, W)` in `[−1, 1]` (the head's tanh range); labels `(N)` u32.
    pub target: Tensor,
    /// Valid-pixel mask `(N, 1, H, W)` (1.0 = valid) for depth.
    pub valid: Option<Tensor>,
    /// Data-set indices of the samples (of the split they come from), in batch order.
    pub indices: Vec<usize>,
    /// Each sample's key in the teacher-feature cache ([`crate::teacher_cache::key`]): set for
    /// training batches whose inputs are a fixed function of the sample and the keyed
    /// augmentations; `None` means the teacher must run on `images`.
    pub teacher_keys: Option<Vec<usize>>,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.images.dims().first().copied().unwrap_or(0)
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch mirrored left–right (augmentation); targets are mirrored with the inputs.
    pub fn flipped(&self) -> Result<Batch> {
        let flip = |t: &Tensor| -> Result<Tensor> {
            let w = t.dim(t.rank() - 1)?;
            let idx: Vec<u32> = (0..w as u32).rev().collect();
            let idx = Tensor::new(idx.as_slice(), t.device())?;
            Ok(t.index_select(&idx, t.rank() - 1)?)
        };
        let target = if self.target.rank() >= 3 {
            flip(&self.target)?
        } else {
            self.target.clone()
        };
        let valid = match &self.valid {
            Some(v) => Some(flip(v)?),
            None => None,
        };
        Ok(Batch {
            images: flip(&self.images)?,
            target,
            valid,
            indices: self.indices.clone(),
            teacher_keys: self.teacher_keys.as_ref().map(|k| {
                k.iter()
                    .map(|&k| crate::teacher_cache::flip_key(k))
                    .collect()
            }),
        })
    }

    /// A batch of the data loader on `device`, checked to hold targets of `task`.
    pub fn from_loader(task: Task, batch: crosskd_data::Batch, device: &Device) -> Result<Batch> {
        let (target, valid) = match (batch.target, task) {
            (BatchTarget::Depth { depth, valid }, Task::Depth) => (depth, Some(valid)),
            (BatchTarget::Segmentation { classes }, Task::Segmentation) => (classes, None),
            (BatchTarget::Translation { target }, Task::Translation) => (target, None),
            (BatchTarget::Class { labels }, Task::Classification) => (labels, None),
            (other, task) => {
                let kind = match other {
                    BatchTarget::Depth { .. } => "depth",
                    BatchTarget::Segmentation { .. } => "segmentation",
                    BatchTarget::Translation { .. } => "translation",
                    BatchTarget::Class { .. } => "class",
                };
                return Err(TrainError::Component(format!(
                    "samples {:?}: {kind} targets, expected ones for task {}",
                    batch.indices,
                    task.name()
                )));
            }
        };
        Ok(Batch {
            images: batch.images.to_device(device)?,
            target: target.to_device(device)?,
            valid: valid.map(|v| v.to_device(device)).transpose()?,
            indices: batch.indices,
            teacher_keys: None,
        })
    }
}

/// The task head for a student whose output has `in_channels` channels.
pub fn build_head(
    config: &Config,
    in_channels: usize,
    vb: VarBuilder,
) -> Result<Box<dyn TaskHead>> {
    let hidden = in_channels.max(8);
    let head: Box<dyn TaskHead> = match config.task {
        Task::Depth => Box::new(
            depth_head(
                &DepthHeadConfig {
                    in_channels,
                    hidden_channels: hidden,
                    min_depth: DEPTH_RANGE.0,
                    max_depth: DEPTH_RANGE.1,
                },
                vb,
            )
            .map_err(|e| component("depth head", e))?,
        ),
        Task::Segmentation => Box::new(
            segmentation_head(
                &SegmentationHeadConfig {
                    in_channels,
                    hidden_channels: hidden,
                    num_classes: config.data.num_classes,
                    ignore_index: Some(IGNORE_CLASS),
                },
                vb,
            )
            .map_err(|e| component("segmentation head", e))?,
        ),
        Task::Translation => Box::new(
            translation_head(
                &TranslationHeadConfig {
                    in_channels,
                    hidden_channels: hidden,
                },
                vb,
            )
            .map_err(|e| component("translation head", e))?,
        ),
        Task::Classification => Box::new(
            classification_head(
                &ClassificationHeadConfig {
                    in_channels,
                    num_classes: config.data.num_classes,
                },
                vb,
            )
            .map_err(|e| component("classification head", e))?,
        ),
    };
    Ok(head)
}

/// The task loss of a prediction.
pub fn task_loss(config: &Config, prediction: &Tensor, batch: &Batch) -> Result<Tensor> {
    let loss = match config.task {
        Task::Depth => {
            let mask = batch
                .valid
                .as_ref()
                .ok_or_else(|| TrainError::Component("depth batch without mask".into()))?;
            config.loss.depth.compute(prediction, &batch.target, mask)
        }
        Task::Segmentation => {
            segmentation_cross_entropy(prediction, &batch.target, None, Some(IGNORE_CLASS))
        }
        Task::Translation => translation_loss(
            prediction,
            &batch.target,
            TranslationLossConfig {
                ssim_weight: config.loss.translation_ssim_weight,
                ssim: SsimConfig::default(),
            },
        ),
        Task::Classification => classification_cross_entropy(prediction, &batch.target, 0.0),
    };
    loss.map_err(|e| component("task loss", e))
}

/// Maps a value in `[0, 1]` to a perceptually ordered colour (a compact "turbo"-like ramp:
/// dark blue → cyan → green → yellow → red).
pub fn colour_ramp(t: f32) -> [u8; 3] {
    let stops: [(f32, [f32; 3]); 5] = [
        (0.0, [0.19, 0.07, 0.23]),
        (0.25, [0.16, 0.55, 0.95]),
        (0.5, [0.25, 0.90, 0.45]),
        (0.75, [0.98, 0.75, 0.15]),
        (1.0, [0.60, 0.05, 0.02]),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    for pair in stops.windows(2) {
        let ((t0, c0), (t1, c1)) = (pair[0], pair[1]);
        if t <= t1 {
            let u = (t - t0) / (t1 - t0);
            let mix = |i: usize| ((c0[i] + (c1[i] - c0[i]) * u) * 255.0).round() as u8;
            return [mix(0), mix(1), mix(2)];
        }
    }
    [153, 13, 5]
}

/// A `(C, H, W)` tensor in `[lo, hi]` as an RGB picture (grey for one channel).
pub fn image_tile(t: &Tensor, lo: f32, hi: f32) -> Result<RgbImage> {
    let (c, h, w) = t.dims3()?;
    let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let to_u8 = |x: f32| (((x - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8;
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let p = y as usize * w + x as usize;
        if c >= 3 {
            Rgb([to_u8(v[p]), to_u8(v[h * w + p]), to_u8(v[2 * h * w + p])])
        } else {
            let g = to_u8(v[p]);
            Rgb([g, g, g])
        }
    }))
}

/// A depth map `(1, H, W)` or `(H, W)` colourised on a log scale over [`DEPTH_RANGE`]; invalid
/// pixels (mask 0) are black.
pub fn depth_tile(depth: &Tensor, valid: Option<&Tensor>) -> Result<RgbImage> {
    let (h, w) = (depth.dim(depth.rank() - 2)?, depth.dim(depth.rank() - 1)?);
    let d = depth
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let m = match valid {
        Some(v) => Some(v.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    };
    let (lo, hi) = (DEPTH_RANGE.0.ln() as f32, DEPTH_RANGE.1.ln() as f32);
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let p = y as usize * w + x as usize;
        if m.as_ref().is_some_and(|m| m[p] == 0.0) {
            return Rgb([0, 0, 0]);
        }
        Rgb(colour_ramp((d[p].max(1e-6).ln() - lo) / (hi - lo)))
    }))
}

/// Class ids `(H, W)` painted with the scene palette (ignored pixels black).
pub fn class_tile(classes: &Tensor) -> Result<RgbImage> {
    let (h, w) = classes.dims2()?;
    let c = classes
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?;
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let k = c[y as usize * w + x as usize] as usize;
        match SCENE_CLASS_TABLE.get(k) {
            Some(class) => Rgb(class.colour),
            None => Rgb([0, 0, 0]),
        }
    }))
}

/// One row of pictures per sample: input, target, prediction (dense tasks only).
pub fn prediction_rows(
    task: Task,
    batch: &Batch,
    prediction: &Tensor,
    max_rows: usize,
) -> Result<Vec<Vec<RgbImage>>> {
    let mut rows = Vec::new();
    for i in 0..batch.len().min(max_rows) {
        let input = image_tile(&batch.images.get(i)?, 0.0, 1.0)?;
        let row = match task {
            Task::Depth => {
                let valid = batch.valid.as_ref().map(|v| v.get(i)).transpose()?;
                vec![
                    input,
                    depth_tile(&batch.target.get(i)?, valid.as_ref())?,
                    depth_tile(&prediction.get(i)?, None)?,
                ]
            }
            Task::Segmentation => {
                vec![
                    input,
                    class_tile(&batch.target.get(i)?)?,
                    class_tile(&prediction.get(i)?.argmax(0)?)?,
                ]
            }
            Task::Translation => vec![
                input,
                image_tile(&batch.target.get(i)?, -1.0, 1.0)?,
                image_tile(&prediction.get(i)?, -1.0, 1.0)?,
            ],
            Task::Classification => vec![input],
        };
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_batches_move_with_their_masks_and_flip_with_targets() {
        let batch = crosskd_data::Batch {
            images: Tensor::from_vec(vec![0.5f32; 8], (2, 1, 2, 2), &Device::Cpu).unwrap(),
            target: BatchTarget::Depth {
                depth: Tensor::from_vec(
                    vec![0.5f32, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0],
                    (2, 1, 2, 2),
                    &Device::Cpu,
                )
                .unwrap(),
                valid: Tensor::from_vec(vec![1.0f32; 8], (2, 1, 2, 2), &Device::Cpu).unwrap(),
            },
            indices: vec![7, 3],
            partial: false,
        };
        let wrong = Batch::from_loader(Task::Segmentation, batch.clone(), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            wrong.contains("[7, 3]") && wrong.contains("depth"),
            "{wrong}"
        );
        let b = Batch::from_loader(Task::Depth, batch, &Device::Cpu).unwrap();
        assert_eq!(b.indices, [7, 3]);
        assert_eq!(b.valid.as_ref().unwrap().dims(), &[2, 1, 2, 2]);
        let f = b.flipped().unwrap();
        assert_eq!(
            f.target.flatten_all().unwrap().to_vec1::<f32>().unwrap()[..4],
            [2.0, 0.5, 4.0, 3.0]
        );
    }

    #[test]
    fn colour_ramp_ends_differ_and_clamp() {
        assert_ne!(colour_ramp(0.0), colour_ramp(1.0));
        assert_eq!(colour_ramp(-3.0), colour_ramp(0.0));
        assert_eq!(colour_ramp(f32::NAN), colour_ramp(0.0));
    }
}
