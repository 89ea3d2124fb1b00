//! FitNets-style hint regression (Romero et al. 2015): `D(Z_s P, Z_t)` or, inverted, `D(Z_s, Z_t P)`.

use candle_nn::VarBuilder;
use crosskd_projectors::{Direction, FeatureNorm, ProjectorConfig, ProjectorForm};
use serde::{Deserialize, Serialize};

use super::{default_direction, default_weight, FeaturePair, ProjectedFeatureDistillation};
use crate::{Distance, Result};

/// Keys of `kind = "fitnets"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FitnetsConfig {
    /// Projector direction (default `inverted`, the method of this project).
    #[serde(default = "default_direction")]
    pub direction: Direction,
    /// Weight `alpha` of the term (default 1).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Distance (default `mse`).
    #[serde(default = "default_distance")]
    pub distance: Distance,
    /// Projector bias (default false).
    #[serde(default)]
    pub bias: bool,
    /// Student-side normalisation (default none).
    #[serde(default)]
    pub student_norm: FeatureNorm,
    /// Teacher-side normalisation (default none).
    #[serde(default)]
    pub teacher_norm: FeatureNorm,
}

fn default_distance() -> Distance {
    Distance::Mse
}

impl Default for FitnetsConfig {
    fn default() -> Self {
        Self {
            direction: default_direction(),
            weight: 1.0,
            distance: default_distance(),
            bias: false,
            student_norm: FeatureNorm::None,
            teacher_norm: FeatureNorm::None,
        }
    }
}

/// Builds the FitNets method (1×1 convolution on dense pairs, linear on pooled pairs).
pub fn build(
    c: &FitnetsConfig,
    pairs: &[FeaturePair],
    seed: u64,
    vb: VarBuilder,
) -> Result<ProjectedFeatureDistillation> {
    let projector = ProjectorConfig {
        bias: c.bias,
        student_norm: c.student_norm,
        teacher_norm: c.teacher_norm,
        seed: 0,
    };
    ProjectedFeatureDistillation::new(
        "fitnets",
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
