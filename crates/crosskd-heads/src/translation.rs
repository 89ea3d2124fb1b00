//! Image-to-image translation: an RGB head with outputs in `[-1, 1]`, and L1, PSNR and SSIM.

use std::collections::BTreeMap;

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::layers::{dense_stack, DenseStack};
use crate::metrics::{to_f64_vec, PrimaryMetric, TaskMetrics};
use crate::{HeadsError, Result};

/// Settings of a [`TranslationHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslationHeadConfig {
    /// Channels of the decoder feature the head reads.
    pub in_channels: usize,
    /// Channels of the hidden `3×3` convolution.
    pub hidden_channels: usize,
}

/// `(N, C, H, W)` feature → `(N, 3, H, W)` RGB in `[-1, 1]`: `tanh` of a `3×3` conv, ReLU,
/// `1×1` conv stack (parameters `hidden.{weight,bias}`, `out.{weight,bias}`).
#[derive(Debug, Clone)]
pub struct TranslationHead {
    stack: DenseStack,
}

/// Builds a [`TranslationHead`].
pub fn translation_head(config: &TranslationHeadConfig, vb: VarBuilder) -> Result<TranslationHead> {
    if config.in_channels == 0 || config.hidden_channels == 0 {
        return Err(HeadsError::Config(format!(
            "translation head channels must be positive, got {config:?}"
        )));
    }
    Ok(TranslationHead {
        stack: dense_stack(config.in_channels, config.hidden_channels, 3, vb)?,
    })
}

impl Module for TranslationHead {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.stack.forward(xs)?.tanh()
    }
}

/// Side of the SSIM Gaussian window.
pub const SSIM_WINDOW: usize = 11;
/// Standard deviation of the SSIM Gaussian window, pixels.
pub const SSIM_SIGMA: f64 = 1.5;
/// PSNR reported for an image reproduced exactly (`MSE ≤ 1e-10`), instead of `+∞`, so that means
/// and JSON logs stay finite.
pub const PSNR_CAP_DB: f64 = 100.0;

/// Translation metrics on images mapped from `[-1, 1]` to `[0, 1]` by `x ↦ clamp((x + 1)/2, 0, 1)`
/// (data range `L = 1`):
/// - `l1` = mean `|p − t|` over every value of every image (pooled);
/// - `psnr` = mean over images of `10·log₁₀(1 / MSE_i)`, `MSE_i` the image's mean squared error
///   (capped at [`PSNR_CAP_DB`]);
/// - `ssim` = mean over images of the image's SSIM (Wang et al. 2004): an 11×11 Gaussian window
///   (σ = 1.5, normalised), `C1 = (0.01·L)²`, `C2 = (0.03·L)²`, population (not sample) variances,
///   computed only where the window lies inside the image ("valid" region, no padding, like
///   pytorch-msssim and skimage's cropped mean), averaged over channels and positions.
///
/// Images must be at least 11×11. Masks are not supported.
#[derive(Debug, Clone, PartialEq)]
pub struct TranslationMetrics {
    values: u64,
    abs_err: f64,
    images: u64,
    psnr: f64,
    ssim: f64,
}

impl Default for TranslationMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl TranslationMetrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self {
            values: 0,
            abs_err: 0.0,
            images: 0,
            psnr: 0.0,
            ssim: 0.0,
        }
    }

    /// Number of images accumulated.
    pub fn images(&self) -> u64 {
        self.images
    }
}

/// The normalised 1-D Gaussian `g_i ∝ exp(−(i − 5)² / (2σ²))`, `i = 0..11`.
fn gaussian_1d() -> Vec<f64> {
    let centre = (SSIM_WINDOW / 2) as f64;
    let g: Vec<f64> = (0..SSIM_WINDOW)
        .map(|i| (-((i as f64 - centre).powi(2)) / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp())
        .collect();
    let total: f64 = g.iter().sum();
    g.into_iter().map(|v| v / total).collect()
}

/// SSIM of one image pair, `(C, H, W)` values in `[0, 1]` laid out channel-major. The 2-D
/// Gaussian window is the outer product of [`gaussian_1d`] with itself, so each local moment is
/// filtered along rows, then along columns, on the host: a few hundred small tensor ops per image
/// made evaluation cost more than training on the reproduction's translation cells.
fn ssim_image(x: &[f64], y: &[f64], channels: usize, h: usize, w: usize) -> f64 {
    let g = gaussian_1d();
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let (out_h, out_w) = (h + 1 - SSIM_WINDOW, w + 1 - SSIM_WINDOW);
    let plane = h * w;
    // Row-filtered [x, y, x², y², xy] of one channel, `h × out_w`.
    let mut rows = vec![[0.0f64; 5]; h * out_w];
    let mut total = 0.0;
    for c in 0..channels {
        let (xc, yc) = (
            &x[c * plane..(c + 1) * plane],
            &y[c * plane..(c + 1) * plane],
        );
        for r in 0..h {
            for j in 0..out_w {
                let mut m = [0.0f64; 5];
                for (k, gk) in g.iter().enumerate() {
                    let (a, b) = (xc[r * w + j + k], yc[r * w + j + k]);
                    m[0] += gk * a;
                    m[1] += gk * b;
                    m[2] += gk * a * a;
                    m[3] += gk * b * b;
                    m[4] += gk * a * b;
                }
                rows[r * out_w + j] = m;
            }
        }
        for i in 0..out_h {
            for j in 0..out_w {
                let mut m = [0.0f64; 5];
                for (k, gk) in g.iter().enumerate() {
                    let row = &rows[(i + k) * out_w + j];
                    for (acc, v) in m.iter_mut().zip(row) {
                        *acc += gk * v;
                    }
                }
                let [mx, my, sxx, syy, sxy] = m;
                let (var_x, var_y, cov) = (sxx - mx * mx, syy - my * my, sxy - mx * my);
                total += (2.0 * mx * my + c1) * (2.0 * cov + c2)
                    / ((mx * mx + my * my + c1) * (var_x + var_y + c2));
            }
        }
    }
    total / (channels * out_h * out_w) as f64
}

impl TaskMetrics for TranslationMetrics {
    /// `prediction`, `target`: `(N, C, H, W)` in `[-1, 1]`, `H, W ≥ 11`; `valid` must be `None`.
    fn update(
        &mut self,
        prediction: &Tensor,
        target: &Tensor,
        valid: Option<&Tensor>,
    ) -> Result<()> {
        if valid.is_some() {
            return Err(HeadsError::InvalidValue {
                what: "translation metrics".into(),
                message: "a valid-pixel mask was given; SSIM over masked windows is undefined"
                    .into(),
            });
        }
        let dims = target.dims();
        if prediction.dims() != dims
            || dims.len() != 4
            || dims[2] < SSIM_WINDOW
            || dims[3] < SSIM_WINDOW
        {
            return Err(HeadsError::Shape {
                what: "translation metrics: prediction and target".into(),
                expected: format!(
                    "equal shapes (N, C, H, W) with H, W ≥ {SSIM_WINDOW}; target is {dims:?}"
                ),
                got: prediction.dims().to_vec(),
            });
        }
        let to_unit = |t: &Tensor| -> Result<Tensor> {
            Ok(((t.to_dtype(DType::F64)? + 1.0)? * 0.5)?.clamp(0.0, 1.0)?)
        };
        let (p, t) = (
            to_f64_vec(&to_unit(prediction)?)?,
            to_f64_vec(&to_unit(target)?)?,
        );
        let (channels, h, w) = (dims[1], dims[2], dims[3]);
        let per_image = channels * h * w;
        // One image at a time, so results cannot depend on how images are grouped into batches.
        for (pv, tv) in p.chunks_exact(per_image).zip(t.chunks_exact(per_image)) {
            let mut sq = 0.0;
            for (a, b) in pv.iter().zip(tv) {
                self.abs_err += (a - b).abs();
                sq += (a - b) * (a - b);
            }
            self.values += pv.len() as u64;
            let mse = sq / pv.len() as f64;
            self.psnr += if mse <= 1e-10 {
                PSNR_CAP_DB
            } else {
                (10.0 * (1.0 / mse).log10()).min(PSNR_CAP_DB)
            };
            self.ssim += ssim_image(pv, tv, channels, h, w);
            self.images += 1;
        }
        Ok(())
    }

    fn compute(&self) -> BTreeMap<String, f64> {
        if self.images == 0 {
            return BTreeMap::new();
        }
        let n = self.images as f64;
        BTreeMap::from([
            ("l1".to_owned(), self.abs_err / self.values as f64),
            ("psnr".to_owned(), self.psnr / n),
            ("ssim".to_owned(), self.ssim / n),
        ])
    }

    fn reset(&mut self) {
        *self = Self::new();
    }

    /// `ssim`, higher is better.
    fn primary(&self) -> PrimaryMetric {
        PrimaryMetric {
            name: "ssim",
            higher_is_better: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use candle_nn::VarMap;
    use crosskd_ops::gradcheck::{assert_gradients, random_f64};

    use super::*;

    fn constant(value: f64, shape: &[usize]) -> Tensor {
        Tensor::full(value, shape, &Device::Cpu).unwrap()
    }

    /// SSIM by direct summation over 2-D windows, written independently of the separable path.
    fn ssim_reference(x: &[f64], y: &[f64], c: usize, h: usize, w: usize) -> f64 {
        let g = gaussian_1d();
        let (c1, c2) = (1e-4, 9e-4);
        let mut total = 0.0;
        let mut count = 0.0;
        for ch in 0..c {
            for i in 0..=h - SSIM_WINDOW {
                for j in 0..=w - SSIM_WINDOW {
                    let (mut mx, mut my, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                    for a in 0..SSIM_WINDOW {
                        for b in 0..SSIM_WINDOW {
                            let k = g[a] * g[b];
                            let idx = ch * h * w + (i + a) * w + (j + b);
                            mx += k * x[idx];
                            my += k * y[idx];
                            sxx += k * x[idx] * x[idx];
                            syy += k * y[idx] * y[idx];
                            sxy += k * x[idx] * y[idx];
                        }
                    }
                    let (vx, vy, cv) = (sxx - mx * mx, syy - my * my, sxy - mx * my);
                    total += (2.0 * mx * my + c1) * (2.0 * cv + c2)
                        / ((mx * mx + my * my + c1) * (vx + vy + c2));
                    count += 1.0;
                }
            }
        }
        total / count
    }

    #[test]
    fn head_is_bounded_and_differentiable() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let head = translation_head(
            &TranslationHeadConfig {
                in_channels: 2,
                hidden_channels: 3,
            },
            vb,
        )
        .unwrap();
        let x = random_f64(&[1, 2, 3, 3], 9).unwrap();
        let y = head.forward(&(&x * 50.0).unwrap()).unwrap();
        assert_eq!(y.dims(), &[1, 3, 3, 3]);
        assert!(y
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .all(|v| (-1.0..=1.0).contains(v)));
        assert_gradients(
            "translation head wrt input",
            |a| head.forward(&a[0]),
            &[x],
            1e-6,
            1e-7,
        );
    }

    #[test]
    fn gaussian_window_is_normalised_and_symmetric() {
        let g = gaussian_1d();
        assert!((g.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert_eq!(g[0], g[10]);
        // Ratio of centre to neighbour is exp(1 / (2·1.5²)) = exp(2/9).
        assert!((g[5] / g[4] - (2.0f64 / 9.0).exp()).abs() < 1e-14);
    }

    #[test]
    fn constant_images_match_hand_computation() {
        // Prediction −0.5 → 0.25 on [0, 1]; target 0 → 0.5. Every value differs by 0.25.
        //   l1 = 0.25; MSE = 0.0625 → psnr = 10·log10(16) = 40·log10(2).
        //   Constant images have zero variance and covariance, so
        //   ssim = (2·0.25·0.5 + C1) / (0.25² + 0.5² + C1) = (0.25 + 1e-4) / (0.3125 + 1e-4).
        let mut m = TranslationMetrics::new();
        m.update(
            &constant(-0.5, &[1, 3, 12, 11]),
            &constant(0.0, &[1, 3, 12, 11]),
            None,
        )
        .unwrap();
        let r = m.compute();
        assert!((r["l1"] - 0.25).abs() < 1e-15);
        assert!((r["psnr"] - 40.0 * 2f64.log10()).abs() < 1e-12);
        assert!((r["ssim"] - 0.2501 / 0.3126).abs() < 1e-12, "{}", r["ssim"]);
    }

    #[test]
    fn identical_images_have_ssim_one_and_capped_psnr() {
        let x = random_f64(&[2, 3, 11, 14], 4).unwrap();
        let mut m = TranslationMetrics::new();
        m.update(&x, &x, None).unwrap();
        let r = m.compute();
        assert!((r["ssim"] - 1.0).abs() < 1e-12);
        assert_eq!(r["psnr"], PSNR_CAP_DB);
        assert_eq!(r["l1"], 0.0);
    }

    /// The values of `x` (in [-1, 1]) mapped to [0, 1] as the metric reads them.
    fn unit(x: &Tensor) -> Vec<f64> {
        to_f64_vec(x)
            .unwrap()
            .iter()
            .map(|v| ((v + 1.0) / 2.0).clamp(0.0, 1.0))
            .collect()
    }

    #[test]
    fn ssim_matches_direct_window_summation() {
        let (c, h, w) = (3, 13, 12);
        let p = random_f64(&[1, c, h, w], 21).unwrap();
        let t = (&p * 0.6)
            .unwrap()
            .add(&(random_f64(&[1, c, h, w], 22).unwrap() * 0.4).unwrap())
            .unwrap();
        let mut m = TranslationMetrics::new();
        m.update(&p, &t, None).unwrap();
        let expected = ssim_reference(&unit(&p), &unit(&t), c, h, w);
        assert!((m.compute()["ssim"] - expected).abs() < 1e-12);
    }

    #[test]
    fn ssim_of_a_batch_is_the_mean_of_its_images() {
        let (n, c, h, w) = (3, 2, 12, 14);
        let p = random_f64(&[n, c, h, w], 31).unwrap();
        let t = random_f64(&[n, c, h, w], 32).unwrap();
        let (pu, tu) = (unit(&p), unit(&t));
        let per = c * h * w;
        let expected = (0..n)
            .map(|i| {
                let r = i * per..(i + 1) * per;
                ssim_reference(&pu[r.clone()], &tu[r], c, h, w)
            })
            .sum::<f64>()
            / n as f64;
        let mut m = TranslationMetrics::new();
        m.update(&p, &t, None).unwrap();
        assert!((m.compute()["ssim"] - expected).abs() < 1e-12);
    }

    #[test]
    fn psnr_is_a_mean_over_images() {
        // Image A differs by 0.25 everywhere on [0, 1] (psnr 40·log10 2); image B by 0.5
        // (MSE 0.25, psnr 20·log10 2). Mean = 30·log10 2; l1 pools values: (0.25 + 0.5) / 2.
        let pred = Tensor::cat(
            &[
                constant(-0.5, &[1, 1, 11, 11]),
                constant(-1.0, &[1, 1, 11, 11]),
            ],
            0,
        )
        .unwrap();
        let target = constant(0.0, &[2, 1, 11, 11]);
        let mut m = TranslationMetrics::new();
        m.update(&pred, &target, None).unwrap();
        let r = m.compute();
        assert!((r["psnr"] - 30.0 * 2f64.log10()).abs() < 1e-12);
        assert!((r["l1"] - 0.375).abs() < 1e-15);
    }

    #[test]
    fn two_batches_equal_one_batch_exactly() {
        let p = random_f64(&[3, 3, 11, 12], 31).unwrap();
        let t = random_f64(&[3, 3, 11, 12], 32).unwrap();
        let mut whole = TranslationMetrics::new();
        whole.update(&p, &t, None).unwrap();
        let mut split = TranslationMetrics::new();
        split
            .update(
                &p.narrow(0, 0, 2).unwrap(),
                &t.narrow(0, 0, 2).unwrap(),
                None,
            )
            .unwrap();
        split
            .update(
                &p.narrow(0, 2, 1).unwrap(),
                &t.narrow(0, 2, 1).unwrap(),
                None,
            )
            .unwrap();
        assert_eq!(whole.compute(), split.compute());
        assert_eq!(whole.images(), 3);
    }

    #[test]
    fn rejects_small_images_and_masks() {
        let mut m = TranslationMetrics::new();
        let small = constant(0.0, &[1, 3, 10, 20]);
        assert!(m.update(&small, &small, None).is_err());
        let ok = constant(0.0, &[1, 3, 11, 11]);
        assert!(m.update(&ok, &ok, Some(&ok)).is_err());
        assert!(m.compute().is_empty());
    }
}
