//! Attention transfer (Zagoruyko & Komodakis 2017), no projector: the spatial attention map of a
//! feature `Z ∈ R^{N×C×H×W}` is `a(Z) = q / sqrt(‖q‖² + ε²)` with `q[n, h·W + w] = mean_c
//! |Z[n,c,h,w]|^p`, and the loss of one pair is `mean_{n,j} (a(Z_s) − a(Z_t))²`. A teacher map of a
//! different spatial size is resized to the student's (bilinear) before taking its attention.

use candle_core::Tensor;
use crosskd_ops::resize::resize_bilinear;
use serde::{Deserialize, Serialize};

use super::{check_pairs, DistillInputs, DistillMethod};
use crate::{Error, LossTerms, Result};

/// ε of the attention-map normalisation.
pub const ATTENTION_EPS: f64 = 1e-8;

/// Keys of `kind = "attention-transfer"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AttentionTransferConfig {
    /// Weight β of the term, summed over pairs (default 1000, as in the AT paper's code, where it
    /// compensates the small size of normalised maps).
    #[serde(default = "default_at_weight")]
    pub weight: f64,
    /// Exponent `p ≥ 1` of the channel statistic (default 2).
    #[serde(default = "default_p")]
    pub p: f64,
}

fn default_at_weight() -> f64 {
    1000.0
}

fn default_p() -> f64 {
    2.0
}

impl Default for AttentionTransferConfig {
    fn default() -> Self {
        Self {
            weight: default_at_weight(),
            p: default_p(),
        }
    }
}

/// The attention-transfer method.
#[derive(Debug, Clone)]
pub struct AttentionTransfer {
    config: AttentionTransferConfig,
}

impl AttentionTransfer {
    /// Validates `p ≥ 1` and a finite weight.
    pub fn new(config: AttentionTransferConfig) -> Result<Self> {
        if !config.p.is_finite() || config.p < 1.0 || !config.weight.is_finite() {
            return Err(Error::Config(format!(
                "attention-transfer: p must be ≥ 1 and weight finite, got p = {}, weight = {}",
                config.p, config.weight
            )));
        }
        Ok(Self { config })
    }
}

/// `a(Z)`: `(N, C, H, W) → (N, H·W)`, rows of unit norm.
pub fn attention_map(z: &Tensor, p: f64) -> Result<Tensor> {
    if z.rank() != 4 {
        return Err(Error::Shape {
            context: "attention map".into(),
            expected: "a dense feature (N, C, H, W)".into(),
            got: z.dims().to_vec(),
        });
    }
    let (n, _, h, w) = z.dims4()?;
    let abs = z.abs()?;
    let powered = if p == 2.0 { abs.sqr()? } else { abs.powf(p)? };
    let q = powered.mean(1)?.reshape((n, h * w))?;
    let norm = q
        .sqr()?
        .sum_keepdim(1)?
        .affine(1.0, ATTENTION_EPS * ATTENTION_EPS)?
        .sqrt()?;
    Ok(q.broadcast_div(&norm)?)
}

/// The attention-transfer loss of one pair (teacher detached and resized if needed).
pub fn attention_transfer_loss(z_s: &Tensor, z_t: &Tensor, p: f64) -> Result<Tensor> {
    let mut z_t = z_t.detach();
    if z_s.rank() != 4 || z_t.rank() != 4 || z_s.dim(0)? != z_t.dim(0)? {
        return Err(Error::Shape {
            context: "attention transfer, teacher feature".into(),
            expected: format!(
                "a dense map (N, C, H, W) with the student's batch size (student {:?})",
                z_s.dims()
            ),
            got: z_t.dims().to_vec(),
        });
    }
    let (_, _, h, w) = z_s.dims4()?;
    if (z_t.dim(2)?, z_t.dim(3)?) != (h, w) {
        z_t = resize_bilinear(&z_t, h, w)?;
    }
    let diff = (attention_map(z_s, p)? - attention_map(&z_t, p)?)?;
    Ok(diff.sqr()?.mean_all()?)
}

impl DistillMethod for AttentionTransfer {
    fn name(&self) -> &str {
        "attention-transfer"
    }

    fn forward(&self, inputs: &DistillInputs<'_>) -> Result<LossTerms> {
        check_pairs("attention-transfer", inputs, 1)?;
        let mut out = LossTerms::default();
        for (i, (s, t)) in inputs
            .student_features
            .iter()
            .zip(inputs.teacher_features)
            .enumerate()
        {
            let name = if i == 0 {
                "attention-transfer".to_string()
            } else {
                format!("attention-transfer.{i}")
            };
            out.push(
                name,
                self.config.weight,
                attention_transfer_loss(s, t, self.config.p)?,
            );
        }
        Ok(out)
    }
}
