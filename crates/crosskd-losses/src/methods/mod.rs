//! Knowledge-distillation methods behind one trait, and the registry that builds them from config.
//!
//! Every method takes the tapped student and teacher features (and logits, for logit KD) and
//! returns named loss terms ([`LossTerms`]). Methods with a projector accept either
//! [`crosskd_projectors::Direction`] through their `direction` key: that is the whole switch
//! between the standard and the inverted projector. Adding a method: one file here plus one
//! variant of [`MethodConfig`] and one line in [`build_method`].

use candle_core::Tensor;
use candle_nn::VarBuilder;
use crosskd_projectors::Projector;
use serde::{Deserialize, Serialize};

use crate::{LossTerms, Result};

pub mod attention;
pub mod feature;
pub mod fitnets;
pub mod logit_kd;
pub mod srd;
pub mod vkd;

pub use attention::{AttentionTransfer, AttentionTransferConfig};
pub use feature::ProjectedFeatureDistillation;
pub use fitnets::FitnetsConfig;
pub use logit_kd::{LogitKd, LogitKdConfig};
pub use srd::SrdConfig;
pub use vkd::VkdConfig;

/// What a method sees at each step. Feature pair `i` is `(student_features[i],
/// teacher_features[i])`; the teacher tensors may carry a graph, methods detach them.
#[derive(Debug, Clone, Copy)]
pub struct DistillInputs<'a> {
    /// Tapped student features, `(N, C, H, W)` or `(N, C)`.
    pub student_features: &'a [Tensor],
    /// Tapped teacher features, paired by index with the student's.
    pub teacher_features: &'a [Tensor],
    /// Student logits `(N, K)`, for methods that need them.
    pub student_logits: Option<&'a Tensor>,
    /// Teacher logits `(N, K)`, for methods that need them.
    pub teacher_logits: Option<&'a Tensor>,
}

/// The widths of one tapped feature pair, known when the method is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeaturePair {
    /// Teacher channels `d_t`.
    pub d_teacher: usize,
    /// Student channels `d_s`.
    pub d_student: usize,
    /// `true` for dense maps `(N, C, H, W)` (1×1-convolution projector), `false` for pooled `(N, C)`.
    pub dense: bool,
}

/// A knowledge-distillation method (mdistiller's `Distiller`, without the models).
pub trait DistillMethod: Send + Sync + std::fmt::Debug {
    /// The method's name, used as the prefix of its terms.
    fn name(&self) -> &str;

    /// The named loss terms for one batch.
    fn forward(&self, inputs: &DistillInputs<'_>) -> Result<LossTerms>;

    /// The method's projectors (their weights are trained with the student).
    fn projectors(&self) -> &[Projector] {
        &[]
    }

    /// Called by the trainer after every optimiser step: re-orthogonalises orthogonal projectors.
    fn after_step(&self) -> Result<()> {
        for p in self.projectors() {
            p.retract()?;
        }
        Ok(())
    }
}

/// The `[distill]` section of a run config: `kind` selects the method, the other keys are the
/// method's (see each config struct for keys and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MethodConfig {
    /// FitNets hint regression ([`FitnetsConfig`]).
    Fitnets(FitnetsConfig),
    /// SRD: batch norm on both sides and the log loss ([`SrdConfig`]).
    Srd(SrdConfig),
    /// VkD: orthogonal projector, layer-normed teacher, smooth L1 ([`VkdConfig`]).
    Vkd(VkdConfig),
    /// Attention transfer, no projector ([`AttentionTransferConfig`]).
    AttentionTransfer(AttentionTransferConfig),
    /// Logit KD with temperature ([`LogitKdConfig`]).
    LogitKd(LogitKdConfig),
}

/// Builds the configured method. `pairs` gives the widths of each tapped feature pair (unused by
/// logit KD); projector `i` takes its parameters from `vb.pp("projectors").pp(i)` and is
/// initialised from `seed` (derive it from the run seed).
pub fn build_method(
    config: &MethodConfig,
    pairs: &[FeaturePair],
    seed: u64,
    vb: VarBuilder,
) -> Result<Box<dyn DistillMethod>> {
    Ok(match config {
        MethodConfig::Fitnets(c) => Box::new(fitnets::build(c, pairs, seed, vb)?),
        MethodConfig::Srd(c) => Box::new(srd::build(c, pairs, seed, vb)?),
        MethodConfig::Vkd(c) => Box::new(vkd::build(c, pairs, seed, vb)?),
        MethodConfig::AttentionTransfer(c) => Box::new(AttentionTransfer::new(c.clone())?),
        MethodConfig::LogitKd(c) => Box::new(LogitKd::new(c.clone())?),
    })
}

/// Errors unless there are as many student as teacher features and at least `at_least`.
pub(crate) fn check_pairs(method: &str, inputs: &DistillInputs<'_>, at_least: usize) -> Result<()> {
    let (s, t) = (inputs.student_features.len(), inputs.teacher_features.len());
    if s != t || s < at_least {
        return Err(crate::Error::MissingInput {
            method: method.to_string(),
            what: format!("{at_least} or more student/teacher feature pairs (got {s} student and {t} teacher features)"),
        });
    }
    Ok(())
}

pub(crate) fn default_weight() -> f64 {
    1.0
}

pub(crate) fn default_direction() -> crosskd_projectors::Direction {
    crosskd_projectors::Direction::Inverted
}
