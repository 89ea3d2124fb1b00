//! Monocular depth: a head whose output is confined to a metric range, and the standard depth
//! metrics (Eigen et al. 2014, as used for NYUv2 and KITTI).

use std::collections::BTreeMap;

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::layers::{dense_stack, DenseStack};
use crate::metrics::{mask_vec, squeeze_channel, to_f64_vec, PrimaryMetric, TaskMetrics};
use crate::{HeadsError, Result};

/// Settings of a [`DepthHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthHeadConfig {
    /// Channels of the decoder feature the head reads.
    pub in_channels: usize,
    /// Channels of the hidden `3×3` convolution.
    pub hidden_channels: usize,
    /// Smallest depth the head can output, metres (> 0).
    pub min_depth: f64,
    /// Largest depth the head can output, metres (> `min_depth`).
    pub max_depth: f64,
}

impl DepthHeadConfig {
    fn validate(&self) -> Result<()> {
        validate_range(self.min_depth, self.max_depth)?;
        if self.in_channels == 0 || self.hidden_channels == 0 {
            return Err(HeadsError::Config(format!(
                "depth head channels must be positive, got in {} hidden {}",
                self.in_channels, self.hidden_channels
            )));
        }
        Ok(())
    }
}

fn validate_range(min: f64, max: f64) -> Result<()> {
    if !(min.is_finite() && max.is_finite() && min > 0.0 && max > min) {
        return Err(HeadsError::Config(format!(
            "depth range must satisfy 0 < min < max, got [{min}, {max}]"
        )));
    }
    Ok(())
}

/// `(N, C, H, W)` feature → `(N, 1, H, W)` depth in metres:
/// `d = min + (max − min) · σ(z)`, `z` from a `3×3` conv, ReLU and a `1×1` conv
/// (parameters `hidden.{weight,bias}`, `out.{weight,bias}`).
#[derive(Debug, Clone)]
pub struct DepthHead {
    stack: DenseStack,
    min_depth: f64,
    max_depth: f64,
}

/// Builds a [`DepthHead`].
pub fn depth_head(config: &DepthHeadConfig, vb: VarBuilder) -> Result<DepthHead> {
    config.validate()?;
    Ok(DepthHead {
        stack: dense_stack(config.in_channels, config.hidden_channels, 1, vb)?,
        min_depth: config.min_depth,
        max_depth: config.max_depth,
    })
}

impl DepthHead {
    /// The output range `[min, max]` in metres.
    pub fn range(&self) -> (f64, f64) {
        (self.min_depth, self.max_depth)
    }

    /// Metrics evaluated over the same range as the head outputs.
    pub fn metrics(&self) -> DepthMetrics {
        DepthMetrics {
            min_depth: self.min_depth,
            max_depth: self.max_depth,
            sums: DepthSums::default(),
        }
    }
}

/// `σ(z) = (1 + tanh(z/2)) / 2`: algebraically the logistic function, built from ops whose
/// gradients candle records correctly and that do not overflow for large `|z|`.
pub(crate) fn sigmoid(z: &Tensor) -> candle_core::Result<Tensor> {
    ((z * 0.5)?.tanh()? + 1.0)? * 0.5
}

impl Module for DepthHead {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let z = self.stack.forward(xs)?;
        sigmoid(&z)?.affine(self.max_depth - self.min_depth, self.min_depth)
    }
}

/// Running sums over every valid pixel seen so far.
#[derive(Debug, Clone, Default, PartialEq)]
struct DepthSums {
    pixels: u64,
    delta: [u64; 3],
    abs_rel: f64,
    sq_rel: f64,
    sq_err: f64,
    sq_log_err: f64,
    abs_log10_err: f64,
}

/// Depth metrics over valid pixels, pooled over the whole data set (every valid pixel of every
/// image weighs the same; not a mean of per-image values).
///
/// A pixel is valid when its ground truth `g` is finite and `min < g < max` (strict, as in the
/// Eigen/BTS evaluation code) and, when a mask is given, the mask is non-zero. Predictions are
/// clamped to `[min, max]` first (NaN to `min`), so every logarithm is finite. With `d` the
/// prediction and `n` valid pixels:
/// - `delta1|2|3` = fraction with `max(d/g, g/d) < 1.25^k`, k = 1, 2, 3;
/// - `abs_rel` = Σ|d − g|/g / n; `sq_rel` = Σ(d − g)²/g / n;
/// - `rmse` = √(Σ(d − g)² / n); `rmse_log` = √(Σ(ln d − ln g)² / n);
/// - `log10` = Σ|log₁₀ d − log₁₀ g| / n.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthMetrics {
    min_depth: f64,
    max_depth: f64,
    sums: DepthSums,
}

impl DepthMetrics {
    /// Metrics evaluating depths in `(min_depth, max_depth)` metres (`0 < min < max`).
    pub fn new(min_depth: f64, max_depth: f64) -> Result<Self> {
        validate_range(min_depth, max_depth)?;
        Ok(Self {
            min_depth,
            max_depth,
            sums: DepthSums::default(),
        })
    }

    /// Number of valid pixels accumulated.
    pub fn pixels(&self) -> u64 {
        self.sums.pixels
    }
}

impl TaskMetrics for DepthMetrics {
    /// `prediction` and `target`: `(N, 1, H, W)` or `(N, H, W)` in metres.
    fn update(
        &mut self,
        prediction: &Tensor,
        target: &Tensor,
        valid: Option<&Tensor>,
    ) -> Result<()> {
        if squeeze_channel(prediction.dims()) != squeeze_channel(target.dims()) {
            return Err(HeadsError::Shape {
                what: "depth metrics: prediction".into(),
                expected: format!("the target's pixels {:?}", target.dims()),
                got: prediction.dims().to_vec(),
            });
        }
        let pred = to_f64_vec(prediction)?;
        let gt = to_f64_vec(target)?;
        let mask = mask_vec("depth metrics", valid, gt.len())?;
        let thresholds = [1.25, 1.25f64.powi(2), 1.25f64.powi(3)];
        let s = &mut self.sums;
        for (i, (&d, &g)) in pred.iter().zip(&gt).enumerate() {
            let in_range = g.is_finite() && g > self.min_depth && g < self.max_depth;
            if !in_range || mask.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            let d = if d.is_nan() {
                self.min_depth
            } else {
                d.clamp(self.min_depth, self.max_depth)
            };
            let ratio = (d / g).max(g / d);
            for (count, t) in s.delta.iter_mut().zip(thresholds) {
                *count += u64::from(ratio < t);
            }
            let err = d - g;
            s.pixels += 1;
            s.abs_rel += err.abs() / g;
            s.sq_rel += err * err / g;
            s.sq_err += err * err;
            s.sq_log_err += (d.ln() - g.ln()).powi(2);
            s.abs_log10_err += (d.log10() - g.log10()).abs();
        }
        Ok(())
    }

    fn compute(&self) -> BTreeMap<String, f64> {
        let s = &self.sums;
        if s.pixels == 0 {
            return BTreeMap::new();
        }
        let n = s.pixels as f64;
        BTreeMap::from([
            ("delta1".to_owned(), s.delta[0] as f64 / n),
            ("delta2".to_owned(), s.delta[1] as f64 / n),
            ("delta3".to_owned(), s.delta[2] as f64 / n),
            ("abs_rel".to_owned(), s.abs_rel / n),
            ("sq_rel".to_owned(), s.sq_rel / n),
            ("rmse".to_owned(), (s.sq_err / n).sqrt()),
            ("rmse_log".to_owned(), (s.sq_log_err / n).sqrt()),
            ("log10".to_owned(), s.abs_log10_err / n),
        ])
    }

    fn reset(&mut self) {
        self.sums = DepthSums::default();
    }

    /// `abs_rel`, lower is better.
    fn primary(&self) -> PrimaryMetric {
        PrimaryMetric {
            name: "abs_rel",
            higher_is_better: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};

    use super::*;

    fn t(values: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(values.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn head_output_stays_in_range_and_has_one_channel() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let config = DepthHeadConfig {
            in_channels: 3,
            hidden_channels: 4,
            min_depth: 0.5,
            max_depth: 10.0,
        };
        let head = depth_head(&config, vb).unwrap();
        // Large inputs push the sigmoid towards both ends.
        let x = (random_f64(&[2, 3, 5, 6], 7).unwrap() * 100.0).unwrap();
        let y = head.forward(&x).unwrap();
        assert_eq!(y.dims(), &[2, 1, 5, 6]);
        for v in y.flatten_all().unwrap().to_vec1::<f64>().unwrap() {
            assert!((0.5..=10.0).contains(&v), "depth {v} outside [0.5, 10]");
        }
    }

    #[test]
    fn sigmoid_matches_the_logistic_function_and_its_gradient() {
        let z = (random_f64(&[7], 3).unwrap() * 6.0).unwrap();
        let got = sigmoid(&z).unwrap().to_vec1::<f64>().unwrap();
        for (g, z) in got.iter().zip(z.to_vec1::<f64>().unwrap()) {
            assert!((g - 1.0 / (1.0 + (-z).exp())).abs() < 1e-15);
        }
        assert_gradients("sigmoid", |a| sigmoid(&a[0]), &[z], 1e-6, 1e-8);
    }

    #[test]
    fn head_gradients_match_finite_differences() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let config = DepthHeadConfig {
            in_channels: 2,
            hidden_channels: 3,
            min_depth: 0.1,
            max_depth: 5.0,
        };
        let head = depth_head(&config, vb).unwrap();
        let x = random_f64(&[1, 2, 3, 3], 11).unwrap();
        assert_gradients(
            "depth head wrt input",
            |a| head.forward(&a[0]),
            &[x],
            1e-6,
            1e-7,
        );
    }

    #[test]
    fn metrics_match_hand_computation() {
        // Range (0.1, 10). Pixels (d, g): (2, 1), (1, 1), (3, 4), (5, 0 → invalid), (20 → clamped
        // to 10, 8), (1, 12 → invalid: g ≥ max). Valid: (2,1), (1,1), (3,4), (10,8); n = 4.
        // ratios max(d/g, g/d): 2, 1, 4/3, 1.25.
        //   delta1 (< 1.25): only 1 → 1/4 (1.25 itself is not < 1.25).
        //   delta2 (< 1.5625): 1, 4/3, 1.25 → 3/4.   delta3 (< 1.953125): same 3 → 3/4.
        // abs_rel = (1/1 + 0 + 1/4 + 2/8) / 4 = 1.5 / 4 = 0.375
        // sq_rel  = (1/1 + 0 + 1/4 + 4/8) / 4 = 1.75 / 4 = 0.4375
        // rmse    = sqrt((1 + 0 + 1 + 4) / 4) = sqrt(1.5)
        // rmse_log= sqrt((ln2² + 0 + ln(3/4)² + ln(10/8)²) / 4)
        // log10   = (log10 2 + 0 + |log10 0.75| + log10 1.25) / 4
        let mut m = DepthMetrics::new(0.1, 10.0).unwrap();
        let pred = t(&[2.0, 1.0, 3.0, 5.0, 20.0, 1.0], &[1, 1, 2, 3]);
        let gt = t(&[1.0, 1.0, 4.0, 0.0, 8.0, 12.0], &[1, 2, 3]);
        m.update(&pred, &gt, None).unwrap();
        let r = m.compute();
        assert_eq!(m.pixels(), 4);
        assert_eq!(r["delta1"], 0.25);
        assert_eq!(r["delta2"], 0.75);
        assert_eq!(r["delta3"], 0.75);
        assert!(close(r["abs_rel"], 0.375));
        assert!(close(r["sq_rel"], 0.4375));
        assert!(close(r["rmse"], 1.5f64.sqrt()));
        let l2 = 2f64.ln().powi(2) + 0.75f64.ln().powi(2) + 1.25f64.ln().powi(2);
        assert!(close(r["rmse_log"], (l2 / 4.0).sqrt()));
        let l10 = 2f64.log10() + 0.75f64.log10().abs() + 1.25f64.log10();
        assert!(close(r["log10"], l10 / 4.0));
    }

    #[test]
    fn rmse_pools_pixels_over_the_data_set_not_images() {
        // Image A: one valid pixel, error 3 (d 4, g 1); image B: three valid pixels with errors
        // 2, 0, 0. Pooled over pixels: sqrt((9 + 4 + 0 + 0) / 4) = sqrt(13) / 2 ≈ 1.803, whereas
        // a mean of per-image RMSEs would be (3 + sqrt(4/3)) / 2 ≈ 2.077.
        let mut m = DepthMetrics::new(0.01, 100.0).unwrap();
        let pred = t(&[4.0, 0.0, 0.0, 3.0, 3.0, 1.0, 1.0, 1.0], &[2, 1, 2, 2]);
        // Ground truth 0 marks the invalid pixels.
        let gt = t(&[1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0], &[2, 1, 2, 2]);
        m.update(&pred, &gt, None).unwrap();
        assert!(close(m.compute()["rmse"], 13f64.sqrt() / 2.0));
    }

    #[test]
    fn mask_excludes_pixels() {
        // Same pixels as metrics_match_hand_computation's first three, mask drops the first:
        // valid (1,1), (3,4): abs_rel = (0 + 0.25) / 2 = 0.125.
        let mut m = DepthMetrics::new(0.1, 10.0).unwrap();
        let pred = t(&[2.0, 1.0, 3.0], &[1, 1, 1, 3]);
        let gt = t(&[1.0, 1.0, 4.0], &[1, 1, 1, 3]);
        let mask = t(&[0.0, 1.0, 1.0], &[1, 1, 1, 3]);
        m.update(&pred, &gt, Some(&mask)).unwrap();
        assert!(close(m.compute()["abs_rel"], 0.125));
        assert_eq!(m.pixels(), 2);
    }

    #[test]
    fn two_batches_equal_one_batch_exactly() {
        let pred = (random_f64(&[4, 1, 3, 5], 1).unwrap().abs().unwrap() * 9.0).unwrap();
        let gt = (random_f64(&[4, 1, 3, 5], 2).unwrap().abs().unwrap() * 9.0).unwrap();
        let mut whole = DepthMetrics::new(0.1, 8.0).unwrap();
        whole.update(&pred, &gt, None).unwrap();
        let mut split = DepthMetrics::new(0.1, 8.0).unwrap();
        split
            .update(
                &pred.narrow(0, 0, 1).unwrap(),
                &gt.narrow(0, 0, 1).unwrap(),
                None,
            )
            .unwrap();
        split
            .update(
                &pred.narrow(0, 1, 3).unwrap(),
                &gt.narrow(0, 1, 3).unwrap(),
                None,
            )
            .unwrap();
        assert_eq!(whole.compute(), split.compute());
        assert!(whole.pixels() > 0);
        split.reset();
        assert!(split.compute().is_empty());
    }

    #[test]
    fn rejects_bad_shapes_and_ranges() {
        let mut m = DepthMetrics::new(0.1, 10.0).unwrap();
        let err = m
            .update(
                &t(&[1.0; 6], &[1, 1, 2, 3]),
                &t(&[1.0; 6], &[1, 3, 2]),
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("prediction"), "{err}");
        assert!(DepthMetrics::new(0.0, 10.0).is_err());
        assert!(DepthMetrics::new(5.0, 1.0).is_err());
    }
}
