//! Image-to-image translation loss: L1 plus an optional SSIM term.
//!
//! SSIM (Wang et al. 2004) with a uniform `k×k` window (stride 1, no padding), computed per
//! channel and averaged over all window positions, channels and images:
//!
//! `SSIM = mean [(2 μ_x μ_y + C1)(2 σ_xy + C2)] / [(μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2)]`,
//!
//! with window means `μ`, (biased) window variances and covariance `σ`, `C1 = (0.01 L)²`,
//! `C2 = (0.03 L)²` and `L` the data range. Window averages use `crosskd_ops::pool::avg_pool2d`.

use candle_core::Tensor;
use crosskd_ops::pool::avg_pool2d;
use serde::{Deserialize, Serialize};

use crate::error::same_shape;
use crate::{Error, Result};

/// SSIM settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct SsimConfig {
    /// Window side `k` (default 7, like scikit-image's uniform window).
    pub window: usize,
    /// Data range `L` of the images (default 2, for images in [−1, 1]).
    pub data_range: f64,
}

impl Default for SsimConfig {
    fn default() -> Self {
        Self {
            window: 7,
            data_range: 2.0,
        }
    }
}

/// The translation loss: `mean|ŷ − y| + ssim_weight · (1 − SSIM(ŷ, y))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TranslationLossConfig {
    /// Weight of the SSIM term (default 0: plain L1).
    pub ssim_weight: f64,
    /// SSIM settings.
    pub ssim: SsimConfig,
}

impl Default for TranslationLossConfig {
    fn default() -> Self {
        Self {
            ssim_weight: 0.0,
            ssim: SsimConfig::default(),
        }
    }
}

/// Mean SSIM of two `(N, C, H, W)` images (see the module documentation); differentiable in both.
pub fn ssim(x: &Tensor, y: &Tensor, cfg: SsimConfig) -> Result<Tensor> {
    same_shape("SSIM", "second image", x, y)?;
    let k = cfg.window;
    if x.rank() != 4 || k == 0 || x.dim(2)? < k || x.dim(3)? < k {
        return Err(Error::Shape {
            context: "SSIM, first image".into(),
            expected: format!("(N, C, H, W) with H, W ≥ window {k}"),
            got: x.dims().to_vec(),
        });
    }
    let mean = |t: &Tensor| -> Result<Tensor> { Ok(avg_pool2d(t, (k, k), (1, 1), (0, 0), true)?) };
    let (c1, c2) = (
        (0.01 * cfg.data_range).powi(2),
        (0.03 * cfg.data_range).powi(2),
    );
    let mu_x = mean(x)?;
    let mu_y = mean(y)?;
    let mu_xx = mu_x.sqr()?;
    let mu_yy = mu_y.sqr()?;
    let mu_xy = (&mu_x * &mu_y)?;
    let var_x = (mean(&x.sqr()?)? - &mu_xx)?;
    let var_y = (mean(&y.sqr()?)? - &mu_yy)?;
    let cov = (mean(&(x * y)?)? - &mu_xy)?;
    let num = (mu_xy.affine(2.0, c1)? * cov.affine(2.0, c2)?)?;
    let den = ((mu_xx + mu_yy)?.affine(1.0, c1)? * (var_x + var_y)?.affine(1.0, c2)?)?;
    Ok((num / den)?.mean_all()?)
}

/// `mean|ŷ − y| + w·(1 − SSIM(ŷ, y))` for `(N, C, H, W)` images; the SSIM term is skipped at `w = 0`.
pub fn translation_loss(
    pred: &Tensor,
    target: &Tensor,
    cfg: TranslationLossConfig,
) -> Result<Tensor> {
    same_shape("translation loss", "target", pred, target)?;
    let l1 = (pred - target)?.abs()?.mean_all()?;
    if cfg.ssim_weight == 0.0 {
        return Ok(l1);
    }
    let s = ssim(pred, target, cfg.ssim)?;
    Ok((l1 + s.affine(-cfg.ssim_weight, cfg.ssim_weight)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};

    #[test]
    fn ssim_of_an_image_with_itself_is_one_and_lower_otherwise() {
        let x = random_f64(&[2, 3, 8, 9], 1).unwrap();
        let y = random_f64(&[2, 3, 8, 9], 2).unwrap();
        let cfg = SsimConfig::default();
        let same = ssim(&x, &x, cfg).unwrap().to_scalar::<f64>().unwrap();
        let other = ssim(&x, &y, cfg).unwrap().to_scalar::<f64>().unwrap();
        assert!((same - 1.0).abs() < 1e-12);
        assert!(other < 0.5);
    }

    #[test]
    fn ssim_of_one_window_matches_the_formula() {
        // A 3×3 image with a 3×3 window: one position, statistics over all 9 pixels.
        let x = random_f64(&[1, 1, 3, 3], 3).unwrap();
        let y = random_f64(&[1, 1, 3, 3], 4).unwrap();
        let cfg = SsimConfig {
            window: 3,
            data_range: 1.0,
        };
        let got = ssim(&x, &y, cfg).unwrap().to_scalar::<f64>().unwrap();
        let a: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
        let m = |v: &[f64]| v.iter().sum::<f64>() / 9.0;
        let (ma, mb) = (m(&a), m(&b));
        let va = a.iter().map(|v| (v - ma).powi(2)).sum::<f64>() / 9.0;
        let vb = b.iter().map(|v| (v - mb).powi(2)).sum::<f64>() / 9.0;
        let cov = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - ma) * (q - mb))
            .sum::<f64>()
            / 9.0;
        let (c1, c2) = (1e-4, 9e-4);
        let expect =
            (2.0 * ma * mb + c1) * (2.0 * cov + c2) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
        assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
    }

    #[test]
    fn translation_loss_has_exact_gradients() {
        let target = random_f64(&[1, 2, 5, 6], 5).unwrap();
        let cfg = TranslationLossConfig {
            ssim_weight: 0.85,
            ssim: SsimConfig {
                window: 3,
                data_range: 2.0,
            },
        };
        let pred = random_f64(&[1, 2, 5, 6], 6).unwrap();
        assert_gradients(
            "translation L1 + SSIM",
            |a| Ok(translation_loss(&a[0], &target, cfg)?),
            &[pred],
            1e-6,
            1e-6,
        );
    }
}
