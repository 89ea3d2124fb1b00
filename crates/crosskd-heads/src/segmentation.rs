//! Semantic segmentation: a per-pixel class-logit head, and mIoU / pixel accuracy from an
//! accumulated confusion matrix.

use std::collections::BTreeMap;

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::layers::{dense_stack, DenseStack};
use crate::metrics::{mask_vec, squeeze_channel, to_f64_vec, PrimaryMetric, TaskMetrics};
use crate::{HeadsError, Result};

/// Settings of a [`SegmentationHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationHeadConfig {
    /// Channels of the decoder feature the head reads.
    pub in_channels: usize,
    /// Channels of the hidden `3×3` convolution.
    pub hidden_channels: usize,
    /// Number of classes `C`.
    pub num_classes: usize,
    /// Target value that marks unlabelled pixels (default 255, the Cityscapes/VOC convention).
    #[serde(default = "default_ignore_index")]
    pub ignore_index: Option<u32>,
}

fn default_ignore_index() -> Option<u32> {
    Some(255)
}

/// `(N, C_in, H, W)` feature → `(N, C, H, W)` class logits: `3×3` conv, ReLU, `1×1` conv
/// (parameters `hidden.{weight,bias}`, `out.{weight,bias}`).
#[derive(Debug, Clone)]
pub struct SegmentationHead {
    stack: DenseStack,
    num_classes: usize,
    ignore_index: Option<u32>,
}

/// Builds a [`SegmentationHead`].
pub fn segmentation_head(
    config: &SegmentationHeadConfig,
    vb: VarBuilder,
) -> Result<SegmentationHead> {
    if config.num_classes < 2 || config.in_channels == 0 || config.hidden_channels == 0 {
        return Err(HeadsError::Config(format!(
            "segmentation head needs ≥ 2 classes and positive channels, got {config:?}"
        )));
    }
    Ok(SegmentationHead {
        stack: dense_stack(
            config.in_channels,
            config.hidden_channels,
            config.num_classes,
            vb,
        )?,
        num_classes: config.num_classes,
        ignore_index: config.ignore_index,
    })
}

impl SegmentationHead {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Metrics over this head's classes and ignore index.
    pub fn metrics(&self) -> SegmentationMetrics {
        SegmentationMetrics {
            num_classes: self.num_classes,
            ignore_index: self.ignore_index,
            confusion: vec![0; self.num_classes * self.num_classes],
        }
    }
}

impl Module for SegmentationHead {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.stack.forward(xs)
    }
}

/// Segmentation metrics from a confusion matrix `M[g][p]` (pixels of true class `g` predicted as
/// `p`) accumulated over the data set:
/// - `miou` = mean over classes `c` with `TP + FP + FN > 0` of `IoU_c = TP / (TP + FP + FN)`,
///   where `TP = M[c][c]`, `FP = Σ_g M[g][c] − TP`, `FN = Σ_p M[c][p] − TP` (classes absent from
///   both prediction and ground truth are left out, not counted as 0 or 1);
/// - `pixel_accuracy` = `Σ_c M[c][c] / Σ M`;
/// - `mean_class_accuracy` = mean over classes present in the ground truth of `TP / Σ_p M[c][p]`;
/// - `iou/<c>` for every class that enters `miou`.
///
/// Pixels whose target is the ignore index, or whose mask is zero, are not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentationMetrics {
    num_classes: usize,
    ignore_index: Option<u32>,
    confusion: Vec<u64>,
}

impl SegmentationMetrics {
    /// Metrics over `num_classes` classes; targets equal to `ignore_index` are skipped.
    pub fn new(num_classes: usize, ignore_index: Option<u32>) -> Result<Self> {
        if num_classes == 0 {
            return Err(HeadsError::Config(
                "segmentation metrics need at least one class".into(),
            ));
        }
        Ok(Self {
            num_classes,
            ignore_index,
            confusion: vec![0; num_classes * num_classes],
        })
    }

    /// The confusion matrix, row-major `[ground truth][prediction]`.
    pub fn confusion(&self) -> &[u64] {
        &self.confusion
    }

    fn class_of(&self, what: &str, value: f64, index: usize) -> Result<usize> {
        if value.fract() != 0.0 || value < 0.0 || value >= self.num_classes as f64 {
            return Err(HeadsError::InvalidValue {
                what: format!("segmentation metrics: {what}"),
                message: format!(
                    "value {value} at flat index {index}, expected a class in 0..{}",
                    self.num_classes
                ),
            });
        }
        Ok(value as usize)
    }
}

impl TaskMetrics for SegmentationMetrics {
    /// `prediction`: logits `(N, C, H, W)` (reduced by argmax over `C`) or class
    /// indices `(N, H, W)`; `target`: class indices `(N, H, W)` or `(N, 1, H, W)`, any dtype.
    fn update(
        &mut self,
        prediction: &Tensor,
        target: &Tensor,
        valid: Option<&Tensor>,
    ) -> Result<()> {
        let target_dims = squeeze_channel(target.dims());
        let labels = match prediction.rank() {
            4 if prediction.dim(1)? == self.num_classes => prediction.argmax(1)?,
            _ => prediction.clone(),
        };
        if squeeze_channel(labels.dims()) != target_dims {
            return Err(HeadsError::Shape {
                what: "segmentation metrics: prediction".into(),
                expected: format!(
                    "logits (N, {}, H, W) or labels (N, H, W) matching the target {:?}",
                    self.num_classes,
                    target.dims()
                ),
                got: prediction.dims().to_vec(),
            });
        }
        let pred = to_f64_vec(&labels)?;
        let gt = to_f64_vec(target)?;
        let mask = mask_vec("segmentation metrics", valid, gt.len())?;
        // Validate the whole batch before counting any of it, so a bad batch leaves no trace.
        let mut pairs = Vec::with_capacity(gt.len());
        for (i, (&p, &g)) in pred.iter().zip(&gt).enumerate() {
            if self.ignore_index.is_some_and(|ig| g == f64::from(ig))
                || mask.as_ref().is_some_and(|m| !m[i])
            {
                continue;
            }
            pairs.push((
                self.class_of("target", g, i)?,
                self.class_of("prediction", p, i)?,
            ));
        }
        for (g, p) in pairs {
            self.confusion[g * self.num_classes + p] += 1;
        }
        Ok(())
    }

    fn compute(&self) -> BTreeMap<String, f64> {
        let c = self.num_classes;
        let total: u64 = self.confusion.iter().sum();
        if total == 0 {
            return BTreeMap::new();
        }
        let mut out = BTreeMap::new();
        let (mut iou_sum, mut iou_classes, mut acc_sum, mut acc_classes, mut correct) =
            (0.0, 0u64, 0.0, 0u64, 0u64);
        for k in 0..c {
            let tp = self.confusion[k * c + k];
            let gt_k: u64 = self.confusion[k * c..(k + 1) * c].iter().sum();
            let pred_k: u64 = (0..c).map(|g| self.confusion[g * c + k]).sum();
            let union = gt_k + pred_k - tp;
            correct += tp;
            if union > 0 {
                let iou = tp as f64 / union as f64;
                out.insert(format!("iou/{k}"), iou);
                iou_sum += iou;
                iou_classes += 1;
            }
            if gt_k > 0 {
                acc_sum += tp as f64 / gt_k as f64;
                acc_classes += 1;
            }
        }
        out.insert("miou".into(), iou_sum / iou_classes as f64);
        out.insert("pixel_accuracy".into(), correct as f64 / total as f64);
        if acc_classes > 0 {
            out.insert("mean_class_accuracy".into(), acc_sum / acc_classes as f64);
        }
        out
    }

    fn reset(&mut self) {
        self.confusion.iter_mut().for_each(|v| *v = 0);
    }

    /// `miou`, higher is better.
    fn primary(&self) -> PrimaryMetric {
        PrimaryMetric {
            name: "miou",
            higher_is_better: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};

    use super::*;

    fn labels(values: &[u32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn head_shape_and_gradients() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let config = SegmentationHeadConfig {
            in_channels: 2,
            hidden_channels: 3,
            num_classes: 4,
            ignore_index: None,
        };
        let head = segmentation_head(&config, vb).unwrap();
        let x = random_f64(&[1, 2, 3, 3], 5).unwrap();
        assert_eq!(head.forward(&x).unwrap().dims(), &[1, 4, 3, 3]);
        assert_gradients(
            "segmentation head wrt input",
            |a| head.forward(&a[0]),
            &[x],
            1e-6,
            1e-7,
        );
    }

    #[test]
    fn metrics_match_hand_computation() {
        // C = 4, ignore 255. Pixels (gt, pred):
        //   (0,0) (0,0) (0,1) (1,1) (1,0) (255,2) (2,2) (2,2)
        // Counted: all but the ignored one, 7 pixels. Class 3 never appears: excluded.
        // M[0] = [2,1,0,0], M[1] = [1,1,0,0], M[2] = [0,0,2,0].
        // IoU0 = 2 / (3 + 3 − 2) = 1/2; IoU1 = 1 / (2 + 2 − 1) = 1/3; IoU2 = 2 / (2 + 2 − 2) = 1.
        // miou = (1/2 + 1/3 + 1) / 3 = 11/18. pixel acc = (2 + 1 + 2) / 7 = 5/7.
        // mean class acc = (2/3 + 1/2 + 1) / 3 = 13/18.
        let mut m = SegmentationMetrics::new(4, Some(255)).unwrap();
        let gt = labels(&[0, 0, 0, 1, 1, 255, 2, 2], &[1, 2, 4]);
        let pred = labels(&[0, 0, 1, 1, 0, 2, 2, 2], &[1, 2, 4]);
        m.update(&pred, &gt, None).unwrap();
        let r = m.compute();
        assert!((r["miou"] - 11.0 / 18.0).abs() < 1e-15);
        assert!((r["pixel_accuracy"] - 5.0 / 7.0).abs() < 1e-15);
        assert!((r["mean_class_accuracy"] - 13.0 / 18.0).abs() < 1e-15);
        assert_eq!(r["iou/0"], 0.5);
        assert!(!r.contains_key("iou/3"));
    }

    #[test]
    fn class_predicted_but_absent_from_ground_truth_counts_as_zero_iou() {
        // gt (0, 0), pred (0, 1): IoU0 = 1 / (2 + 1 − 1) = 1/2, IoU1 = 0 / (0 + 1 − 0) = 0;
        // miou = 1/4.
        let mut m = SegmentationMetrics::new(3, None).unwrap();
        m.update(
            &labels(&[0, 1], &[1, 1, 2]),
            &labels(&[0, 0], &[1, 1, 2]),
            None,
        )
        .unwrap();
        assert_eq!(m.compute()["miou"], 0.25);
    }

    #[test]
    fn logits_are_reduced_by_argmax_and_match_labels() {
        // Logits (N=1, C=3, H=1, W=2): pixel 0 scores (0.1, 2.0, -1) → 1; pixel 1 (3, 0, 0) → 0.
        let logits = Tensor::from_vec(
            vec![0.1f32, 3.0, 2.0, 0.0, -1.0, 0.0],
            (1, 3, 1, 2),
            &Device::Cpu,
        )
        .unwrap();
        let gt = labels(&[1, 2], &[1, 1, 2]);
        let mut from_logits = SegmentationMetrics::new(3, None).unwrap();
        from_logits.update(&logits, &gt, None).unwrap();
        let mut from_labels = SegmentationMetrics::new(3, None).unwrap();
        from_labels
            .update(&labels(&[1, 0], &[1, 1, 2]), &gt, None)
            .unwrap();
        assert_eq!(from_logits.confusion(), from_labels.confusion());
        assert_eq!(from_logits.compute()["pixel_accuracy"], 0.5);
    }

    #[test]
    fn two_batches_equal_one_batch_and_mask_applies() {
        let gt = labels(&[0, 1, 2, 1, 0, 2, 2, 1], &[2, 2, 2]);
        let pred = labels(&[0, 1, 1, 1, 2, 2, 0, 1], &[2, 2, 2]);
        let mask = labels(&[1, 1, 0, 1, 1, 1, 1, 0], &[2, 1, 2, 2]);
        let mut whole = SegmentationMetrics::new(3, None).unwrap();
        whole.update(&pred, &gt, Some(&mask)).unwrap();
        let mut split = SegmentationMetrics::new(3, None).unwrap();
        for i in 0..2 {
            let (p, g, k) = (
                pred.narrow(0, i, 1).unwrap(),
                gt.narrow(0, i, 1).unwrap(),
                mask.narrow(0, i, 1).unwrap(),
            );
            split.update(&p, &g, Some(&k)).unwrap();
        }
        assert_eq!(whole.confusion(), split.confusion());
        assert_eq!(whole.compute(), split.compute());
        // 6 pixels counted (mask drops flat indices 2 and 7).
        assert_eq!(whole.confusion().iter().sum::<u64>(), 6);
    }

    #[test]
    fn rejects_out_of_range_targets_without_counting() {
        let mut m = SegmentationMetrics::new(2, Some(255)).unwrap();
        let err = m
            .update(
                &labels(&[0, 1], &[1, 1, 2]),
                &labels(&[0, 7], &[1, 1, 2]),
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("value 7"), "{err}");
        assert!(m.compute().is_empty());
    }
}
