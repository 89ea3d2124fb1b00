//! Semantic-segmentation cross-entropy.

use candle_core::Tensor;
use crosskd_ops::softmax::{cross_entropy, CrossEntropyOptions};

use crate::Result;

/// Mean pixel-wise cross-entropy of `logits: (N, K, H, W)` against u32 `labels: (N, H, W)`, with
/// optional per-class weights `(K)` and an ignored label (e.g. 255 for "void"):
/// `Σ_i m_i w_{y_i} (−log p_{i,y_i}) / Σ_i m_i w_{y_i}` (PyTorch semantics, see
/// `crosskd_ops::softmax::cross_entropy`); all pixels ignored gives 0.
pub fn segmentation_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    class_weights: Option<&Tensor>,
    ignore_index: Option<u32>,
) -> Result<Tensor> {
    let opts = CrossEntropyOptions {
        class_weights: class_weights.cloned(),
        ignore_index,
        label_smoothing: 0.0,
    };
    Ok(cross_entropy(logits, labels, &opts)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};

    #[test]
    fn matches_a_hand_computed_weighted_mean_with_an_ignored_pixel() {
        // One image, 3 classes, 1×3 pixels; labels (0, 2, 255).
        let logits = random_f64(&[1, 3, 1, 3], 1).unwrap();
        let labels = Tensor::new(&[[[0u32, 2, 255]]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[1.0f64, 2.0, 3.0], &Device::Cpu).unwrap();
        let got = segmentation_cross_entropy(&logits, &labels, Some(&w), Some(255))
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let l: Vec<f64> = logits.flatten_all().unwrap().to_vec1().unwrap(); // index c*3 + pixel
        let nll = |pixel: usize, class: usize| {
            let lse = (0..3).map(|c| l[c * 3 + pixel].exp()).sum::<f64>().ln();
            lse - l[class * 3 + pixel]
        };
        let expect = (1.0 * nll(0, 0) + 3.0 * nll(1, 2)) / (1.0 + 3.0);
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
    }

    #[test]
    fn has_exact_gradients() {
        let logits = random_f64(&[2, 4, 2, 3], 2).unwrap();
        let labels = Tensor::new(
            &[[[0u32, 1, 3], [2, 255, 1]], [[3, 3, 0], [1, 2, 255]]],
            &Device::Cpu,
        )
        .unwrap();
        let w = random_f64(&[4], 3).unwrap().affine(0.4, 1.0).unwrap();
        assert_eq!(labels.dtype(), DType::U32);
        assert_gradients(
            "segmentation CE",
            |a| {
                Ok(segmentation_cross_entropy(
                    &a[0],
                    &labels,
                    Some(&w),
                    Some(255),
                )?)
            },
            &[logits],
            1e-6,
            1e-6,
        );
    }
}
