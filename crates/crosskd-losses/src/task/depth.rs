//! Depth regression losses with a validity mask (NYUv2 ground truth has holes).
//!
//! `pred`, `target`, `mask`: same shape (typically `(N, 1, H, W)`); `mask` is 1 on valid pixels
//! and 0 elsewhere, in the dtype of `pred`. Invalid pixels contribute nothing to the value or the
//! gradient; a batch without valid pixels gives 0.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::same_shape;
use crate::{Error, Result};

/// Predictions are clamped to at least this before a logarithm (depths are positive).
pub const DEPTH_LOG_FLOOR: f64 = 1e-6;

fn check(context: &str, pred: &Tensor, target: &Tensor, mask: &Tensor) -> Result<()> {
    same_shape(context, "target", pred, target)?;
    same_shape(context, "mask", pred, mask)?;
    if pred.rank() == 0 {
        return Err(Error::Shape {
            context: context.into(),
            expected: "a batched prediction".into(),
            got: vec![],
        });
    }
    Ok(())
}

/// `Σ m·|ŷ − y| / max(Σ m, 1)`.
pub fn depth_l1_loss(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
    check("depth L1 loss", pred, target, mask)?;
    let count = mask.sum_all()?.maximum(1.0)?;
    Ok(((pred - target)?.abs()? * mask)?.sum_all()?.div(&count)?)
}

/// Scale-invariant log loss (Eigen et al. 2014), per image then averaged over the batch:
/// with `d = ln ŷ − ln y` on the `k` valid pixels of an image,
/// `L = (1/k) Σ d² − λ (1/k²) (Σ d)²` (`λ = 0` is the log-MSE, `λ = 1` fully scale-invariant;
/// Eigen used 0.5). Predictions are clamped to [`DEPTH_LOG_FLOOR`]; targets must be positive where
/// valid. Images without valid pixels count as 0.
pub fn scale_invariant_log_loss(
    pred: &Tensor,
    target: &Tensor,
    mask: &Tensor,
    lambda: f64,
) -> Result<Tensor> {
    check("scale-invariant log loss", pred, target, mask)?;
    let n = pred.dim(0)?;
    let per_image = pred.elem_count() / n.max(1);
    let m = mask.reshape((n, per_image))?;
    // Invalid pixels become 1 before the log (ln 1 = 0), so holes (often stored as 0) cannot
    // produce −∞ · 0 = NaN.
    let safe = |x: &Tensor| -> Result<Tensor> {
        let x = x.reshape((n, per_image))?;
        Ok(((x * &m)? + m.affine(-1.0, 1.0)?)?)
    };
    let log_pred = safe(&pred.maximum(DEPTH_LOG_FLOOR)?)?.log()?;
    let log_target = safe(target)?.log()?;
    let d = ((log_pred - log_target)? * &m)?;
    let k = m.sum(1)?.maximum(1.0)?;
    let mean_sq = d.sqr()?.sum(1)?.div(&k)?;
    let mean = d.sum(1)?.div(&k)?;
    let per = (mean_sq - mean.sqr()?.affine(lambda, 0.0)?)?;
    Ok(per.mean_all()?)
}

/// Reverse Huber (berHu, Laina et al. 2016) on valid pixels:
/// `B(x) = |x|` for `|x| ≤ c`, `(x² + c²)/(2c)` otherwise, with `x = ŷ − y` and
/// `c = 0.2·max_valid |x|`, averaged over valid pixels. `c` is part of the function (gradients flow
/// through the max), so the gradient is the exact one of the value.
pub fn berhu_loss(pred: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
    check("berHu loss", pred, target, mask)?;
    let abs = ((pred - target)?.abs()? * mask)?;
    let count = mask.sum_all()?.maximum(1.0)?;
    // c ≥ a tiny floor so that an exact fit does not divide by zero.
    let c = abs
        .flatten_all()?
        .max(0)?
        .affine(0.2, 0.0)?
        .maximum(1e-12)?;
    let quad = (abs.sqr()?.broadcast_add(&c.sqr()?)?).broadcast_div(&c.affine(2.0, 0.0)?)?;
    let inside = abs.broadcast_le(&c)?;
    let value = inside.where_cond(&abs, &quad)?;
    Ok((value * mask)?.sum_all()?.div(&count)?)
}

/// The depth loss of a run, configured as `{ kind = "scale-invariant-log", lambda = 0.5 }` etc.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DepthLoss {
    /// [`depth_l1_loss`].
    L1,
    /// [`scale_invariant_log_loss`] with `lambda` (default 0.5).
    ScaleInvariantLog {
        /// Weight of the scale term.
        #[serde(default = "default_lambda")]
        lambda: f64,
    },
    /// [`berhu_loss`].
    Berhu,
}

fn default_lambda() -> f64 {
    0.5
}

impl DepthLoss {
    /// The configured loss.
    pub fn compute(&self, pred: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
        match *self {
            DepthLoss::L1 => depth_l1_loss(pred, target, mask),
            DepthLoss::ScaleInvariantLog { lambda } => {
                scale_invariant_log_loss(pred, target, mask, lambda)
            }
            DepthLoss::Berhu => berhu_loss(pred, target, mask),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};

    fn t(v: &[f64]) -> Tensor {
        Tensor::from_slice(v, (1, 1, 1, v.len()), &Device::Cpu).unwrap()
    }

    fn scalar(x: Tensor) -> f64 {
        x.to_scalar::<f64>().unwrap()
    }

    fn positive(shape: &[usize], seed: u64) -> Tensor {
        random_f64(shape, seed).unwrap().affine(0.4, 1.0).unwrap() // in [0.6, 1.4)
    }

    fn mask(shape: &[usize], seed: u64) -> Tensor {
        random_f64(shape, seed)
            .unwrap()
            .ge(-0.4)
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap()
    }

    #[test]
    fn values_match_hand_computations() {
        let pred = t(&[1.0, 2.0, 4.0, 9.0]);
        let target = t(&[2.0, 2.0, 1.0, 0.0]);
        let m = t(&[1.0, 1.0, 1.0, 0.0]); // last pixel is a hole (target 0)
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        close(
            scalar(depth_l1_loss(&pred, &target, &m).unwrap()),
            (1.0 + 0.0 + 3.0) / 3.0,
        );
        // d = (ln ½, 0, ln 4): (Σd²)/3 − λ(Σd)²/9.
        let (a, b) = (0.5f64.ln(), 4f64.ln());
        let expect = (a * a + b * b) / 3.0 - 0.5 * (a + b).powi(2) / 9.0;
        close(
            scalar(scale_invariant_log_loss(&pred, &target, &m, 0.5).unwrap()),
            expect,
        );
        // |x| = (1, 0, 3): c = 0.6; 1 → (1 + 0.36)/1.2, 0 → 0, 3 → (9 + 0.36)/1.2.
        close(
            scalar(berhu_loss(&pred, &target, &m).unwrap()),
            ((1.36 + 9.36) / 1.2) / 3.0,
        );
    }

    #[test]
    fn fully_masked_batches_give_zero_not_nan() {
        let pred = t(&[1.0, 2.0]);
        let target = t(&[0.0, 0.0]);
        let m = t(&[0.0, 0.0]);
        for l in [
            DepthLoss::L1,
            DepthLoss::ScaleInvariantLog { lambda: 0.5 },
            DepthLoss::Berhu,
        ] {
            assert_eq!(scalar(l.compute(&pred, &target, &m).unwrap()), 0.0, "{l:?}");
        }
    }

    #[test]
    fn scale_invariance_at_lambda_one() {
        let pred = positive(&[2, 1, 3, 3], 1);
        let target = positive(&[2, 1, 3, 3], 2);
        let m = mask(&[2, 1, 3, 3], 3);
        let a = scalar(scale_invariant_log_loss(&pred, &target, &m, 1.0).unwrap());
        let b = scalar(
            scale_invariant_log_loss(&pred.affine(3.0, 0.0).unwrap(), &target, &m, 1.0).unwrap(),
        );
        assert!((a - b).abs() < 1e-12);
    }

    #[test]
    fn depth_losses_have_exact_gradients() {
        let shape = [2, 1, 3, 4];
        let target = positive(&shape, 5);
        let m = mask(&shape, 6);
        for l in [
            DepthLoss::L1,
            DepthLoss::ScaleInvariantLog { lambda: 0.85 },
            DepthLoss::Berhu,
        ] {
            let pred = positive(&shape, 4);
            assert_gradients(
                &format!("{l:?}"),
                |a| Ok(l.compute(&a[0], &target, &m)?),
                &[pred],
                1e-6,
                1e-6,
            );
        }
    }

    #[test]
    fn shape_mismatch_names_the_tensor() {
        let e = depth_l1_loss(&t(&[1.0, 2.0]), &t(&[1.0, 2.0]), &t(&[1.0])).unwrap_err();
        assert!(e.to_string().contains("mask"), "{e}");
    }
}
