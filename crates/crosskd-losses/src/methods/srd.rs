//! SRD-style distillation (Miles & Mikolajczyk, "Understanding the role of the projector in
//! knowledge distillation"): a linear projector, batch normalisation without affine parameters on
//! both compared sides, and the log loss `ln(ε + Σ Δ⁴ / n)`.

use candle_nn::VarBuilder;
use crosskd_projectors::{Direction, FeatureNorm, ProjectorConfig, ProjectorForm};
use serde::{Deserialize, Serialize};

use super::{default_direction, default_weight, FeaturePair, ProjectedFeatureDistillation};
use crate::{Distance, Result};

/// Keys of `kind = "srd"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SrdConfig {
    /// Projector direction (default `inverted`).
    #[serde(default = "default_direction")]
    pub direction: Direction,
    /// Weight `alpha` (default 1).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Distance (default `log-sum-quartic` with ε = 1e-8).
    #[serde(default = "default_distance")]
    pub distance: Distance,
    /// Projector bias (default false; a bias is cancelled by the batch norm anyway).
    #[serde(default)]
    pub bias: bool,
}

fn default_distance() -> Distance {
    Distance::LogSumQuartic { eps: 1e-8 }
}

impl Default for SrdConfig {
    fn default() -> Self {
        Self {
            direction: default_direction(),
            weight: 1.0,
            distance: default_distance(),
            bias: false,
        }
    }
}

/// Builds the SRD method: batch norm on both sides.
pub fn build(
    c: &SrdConfig,
    pairs: &[FeaturePair],
    seed: u64,
    vb: VarBuilder,
) -> Result<ProjectedFeatureDistillation> {
    let projector = ProjectorConfig {
        bias: c.bias,
        student_norm: FeatureNorm::BatchNorm,
        teacher_norm: FeatureNorm::BatchNorm,
        seed: 0,
    };
    ProjectedFeatureDistillation::new(
        "srd",
        c.weight,
        c.distance,
        c.direction,
        ProjectorForm::Conv1x1,
        ProjectorForm::Linear,
        projector,
        pairs,
        seed,
        vb,
    )
}
