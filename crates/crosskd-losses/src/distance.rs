//! Distances between compared feature matrices.
//!
//! All take two tensors of equal shape and return a scalar. For row matrices `(n, d)`:
//!
//! | kind | value |
//! |---|---|
//! | `mse` | `‖Δ‖²_F / (n·d)` (mean over elements, PyTorch `mse_loss`) |
//! | `squared-l2` | `‖Δ‖²_F / n` (the scale of `docs/method.md`) |
//! | `l1` | `Σ|Δ| / (n·d)` |
//! | `smooth-l1` | mean of `0.5·Δ²/β` where `|Δ| < β`, `|Δ| − 0.5β` elsewhere (PyTorch `smooth_l1_loss`) |
//! | `log-sum-quartic` | `ln(ε + Σ Δ⁴ / n)` (the SRD-style log loss) |
//!
//! `log-sum-quartic` scaling: the sum of fourth powers is divided by the number of rows `n` (so the
//! value does not grow with the batch); any other constant factor would only shift the value by a
//! constant, since `ln(c·x) = ln c + ln x`, and leave the gradient `4Δ³ / (n(ε + S))` unchanged
//! apart from the relative size of `ε` (default `1e-8`, which only matters near a perfect fit).

use candle_core::Tensor;
use crosskd_projectors::FeatureDistance;
use serde::{Deserialize, Serialize};

use crate::error::{positive_finite, same_shape};
use crate::Result;

fn default_beta() -> f64 {
    1.0
}

fn default_log_eps() -> f64 {
    1e-8
}

/// A feature distance, configured in TOML as `{ kind = "smooth-l1", beta = 1.0 }` etc.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Distance {
    /// Mean squared error over all elements.
    Mse,
    /// Squared Frobenius norm divided by the number of rows.
    SquaredL2,
    /// Mean absolute error.
    L1,
    /// Smooth L1 (Huber divided by β) with threshold `beta > 0`.
    SmoothL1 {
        /// Threshold between the quadratic and the linear part (default 1).
        #[serde(default = "default_beta")]
        beta: f64,
    },
    /// `ln(ε + Σ Δ⁴ / n)`.
    LogSumQuartic {
        /// `ε > 0` inside the logarithm (default 1e-8).
        #[serde(default = "default_log_eps")]
        eps: f64,
    },
}

impl Distance {
    /// Validates the parameters (`beta > 0`, `eps > 0`).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Distance::SmoothL1 { beta } if !positive_finite(beta) => Err(crate::Error::Config(
                format!("distance smooth-l1: beta must be > 0, got {beta}"),
            )),
            Distance::LogSumQuartic { eps } if !positive_finite(eps) => Err(crate::Error::Config(
                format!("distance log-sum-quartic: eps must be > 0, got {eps}"),
            )),
            _ => Ok(()),
        }
    }

    /// `D(a, b)` (see the module table); `a` and `b` must have the same shape, rank ≥ 1 (the
    /// first dimension counts as rows).
    pub fn compute(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        same_shape("distance", "second argument", a, b)?;
        self.validate()?;
        let delta = (a - b)?;
        let rows = if a.rank() == 0 { 1 } else { a.dim(0)? };
        Ok(match *self {
            Distance::Mse => delta.sqr()?.mean_all()?,
            Distance::SquaredL2 => delta.sqr()?.sum_all()?.affine(1.0 / rows as f64, 0.0)?,
            Distance::L1 => delta.abs()?.mean_all()?,
            Distance::SmoothL1 { beta } => {
                // With m = min(|Δ|, β): m·(|Δ| − m/2)/β is 0.5Δ²/β inside and |Δ| − β/2 outside.
                let abs = delta.abs()?;
                let m = abs.clamp(0.0, beta)?;
                let half_m = m.affine(0.5, 0.0)?;
                (m * (abs - half_m)?)?.affine(1.0 / beta, 0.0)?.mean_all()?
            }
            Distance::LogSumQuartic { eps } => delta
                .sqr()?
                .sqr()?
                .sum_all()?
                .affine(1.0 / rows as f64, eps)?
                .log()?,
        })
    }

    /// `Some(c)` with `D = c·‖Δ‖²_F` for `mse` (`1/(n·d)`) and `squared-l2` (`1/n`).
    pub fn squared_l2_factor(&self, rows: usize, cols: usize) -> Option<f64> {
        match self {
            Distance::Mse => Some(1.0 / (rows * cols).max(1) as f64),
            Distance::SquaredL2 => Some(1.0 / rows.max(1) as f64),
            _ => None,
        }
    }
}

impl FeatureDistance for Distance {
    fn distance(&self, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.compute(a, b)?)
    }

    fn squared_l2_scale(&self, rows: usize, cols: usize) -> Option<f64> {
        self.squared_l2_factor(rows, cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};

    fn value(d: Distance, a: &[f64], b: &[f64]) -> f64 {
        let ta = Tensor::from_slice(a, (1, a.len()), &candle_core::Device::Cpu).unwrap();
        let tb = Tensor::from_slice(b, (1, b.len()), &candle_core::Device::Cpu).unwrap();
        d.compute(&ta, &tb).unwrap().to_scalar::<f64>().unwrap()
    }

    #[test]
    fn values_match_hand_computations() {
        // Δ = (0.5, −2, 0, 3) over one row of 4.
        let a = [1.5, -1.0, 2.0, 3.0];
        let b = [1.0, 1.0, 2.0, 0.0];
        let close = |x: f64, y: f64| assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        close(value(Distance::Mse, &a, &b), (0.25 + 4.0 + 0.0 + 9.0) / 4.0);
        close(value(Distance::SquaredL2, &a, &b), 0.25 + 4.0 + 9.0);
        close(value(Distance::L1, &a, &b), (0.5 + 2.0 + 3.0) / 4.0);
        // β = 1: 0.5·0.25, 2 − 0.5, 0, 3 − 0.5.
        close(
            value(Distance::SmoothL1 { beta: 1.0 }, &a, &b),
            (0.125 + 1.5 + 0.0 + 2.5) / 4.0,
        );
        // β = 4: all inside: 0.5Δ²/4.
        close(
            value(Distance::SmoothL1 { beta: 4.0 }, &a, &b),
            (0.25 + 4.0 + 9.0) / 8.0 / 4.0,
        );
        close(
            value(Distance::LogSumQuartic { eps: 1e-8 }, &a, &b),
            (1e-8f64 + 0.0625 + 16.0 + 81.0).ln(),
        );
    }

    #[test]
    fn every_distance_has_exact_gradients() {
        for d in [
            Distance::Mse,
            Distance::SquaredL2,
            Distance::L1,
            Distance::SmoothL1 { beta: 0.5 },
            Distance::LogSumQuartic { eps: 1e-8 },
        ] {
            // Entries in [−1, 1); their differences avoid the kinks at 0 and ±β almost surely.
            let a = random_f64(&[4, 5], 1).unwrap();
            let b = random_f64(&[4, 5], 2).unwrap();
            assert_gradients(
                &format!("{d:?}"),
                |x| Ok(d.compute(&x[0], &x[1])?),
                &[a, b],
                1e-6,
                1e-6,
            );
        }
    }

    #[test]
    fn shape_mismatch_and_bad_parameters_are_errors() {
        let a = random_f64(&[2, 3], 1).unwrap();
        let b = random_f64(&[3, 2], 1).unwrap();
        assert!(Distance::Mse.compute(&a, &b).is_err());
        assert!(Distance::SmoothL1 { beta: 0.0 }.compute(&a, &a).is_err());
    }

    #[test]
    fn toml_names() {
        #[derive(Deserialize)]
        struct W {
            d: Distance,
        }
        let w: W = toml::from_str("d = { kind = \"smooth-l1\", beta = 0.5 }").unwrap();
        assert_eq!(w.d, Distance::SmoothL1 { beta: 0.5 });
        let w: W = toml::from_str("d = { kind = \"log-sum-quartic\" }").unwrap();
        assert_eq!(w.d, Distance::LogSumQuartic { eps: 1e-8 });
        let w: W = toml::from_str("d = { kind = \"mse\" }").unwrap();
        assert_eq!(w.d, Distance::Mse);
        assert!(toml::from_str::<W>("d = { kind = \"smooth-l1\", betta = 0.5 }").is_err());
    }
}
