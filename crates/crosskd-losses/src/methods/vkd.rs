//! VkD-style distillation (Miles et al., "VkD: improving knowledge distillation using orthogonal
//! projections"): an orthogonal projector (kept orthogonal by the polar retraction after each
//! step, see `crosskd_projectors::orthogonal`), layer normalisation of the teacher side and the
//! smooth-L1 distance.

use candle_nn::VarBuilder;
use crosskd_projectors::{Direction, FeatureNorm, ProjectorConfig, ProjectorForm};
use serde::{Deserialize, Serialize};

use super::{default_direction, default_weight, FeaturePair, ProjectedFeatureDistillation};
use crate::{Distance, Result};

/// Keys of `kind = "vkd"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VkdConfig {
    /// Projector direction (default `inverted`).
    #[serde(default = "default_direction")]
    pub direction: Direction,
    /// Weight `alpha` (default 1).
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Distance (default `smooth-l1` with β = 1).
    #[serde(default = "default_distance")]
    pub distance: Distance,
}

fn default_distance() -> Distance {
    Distance::SmoothL1 { beta: 1.0 }
}

impl Default for VkdConfig {
    fn default() -> Self {
        Self {
            direction: default_direction(),
            weight: 1.0,
            distance: default_distance(),
        }
    }
}

/// Builds the VkD method: orthogonal projector on dense and pooled pairs, layer-normed teacher.
pub fn build(
    c: &VkdConfig,
    pairs: &[FeaturePair],
    seed: u64,
    vb: VarBuilder,
) -> Result<ProjectedFeatureDistillation> {
    let projector = ProjectorConfig {
        bias: false,
        student_norm: FeatureNorm::None,
        teacher_norm: FeatureNorm::LayerNorm,
        seed: 0,
    };
    ProjectedFeatureDistillation::new(
        "vkd",
        c.weight,
        c.distance,
        c.direction,
        ProjectorForm::Orthogonal,
        ProjectorForm::Orthogonal,
        projector,
        pairs,
        seed,
        vb,
    )
}
