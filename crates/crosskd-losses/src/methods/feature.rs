//! The shared machinery of projector-based methods (FitNets, SRD, VkD): one projector per feature
//! pair, a distance, a weight.

use candle_nn::VarBuilder;
use crosskd_projectors::{Direction, Projector, ProjectorConfig, ProjectorForm};

use super::{check_pairs, DistillInputs, DistillMethod, FeaturePair};
use crate::{Distance, Error, LossTerms, Result};

/// Distillation by comparing projected features: term `name` (or `name.i` for pair `i > 0`) is
/// `D(side_s, side_t)` of projector `i` ([`Projector::distill`]); for squared-L2 distances the
/// diagnostics `name.transfer` and `name.spectral` (weighted, summed over pairs) are logged too.
#[derive(Debug, Clone)]
pub struct ProjectedFeatureDistillation {
    name: String,
    weight: f64,
    distance: Distance,
    projectors: Vec<Projector>,
}

impl ProjectedFeatureDistillation {
    /// One projector per pair; dense pairs get `dense_form`, pooled pairs `pooled_form`. Projector
    /// `i` is initialised with seed `seed + 2i` (its bias with `seed + 2i + 1`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        weight: f64,
        distance: Distance,
        direction: Direction,
        dense_form: ProjectorForm,
        pooled_form: ProjectorForm,
        projector: ProjectorConfig,
        pairs: &[FeaturePair],
        seed: u64,
        vb: VarBuilder,
    ) -> Result<Self> {
        distance.validate()?;
        if !weight.is_finite() {
            return Err(Error::Config(format!(
                "distill.weight of {name} must be finite, got {weight}"
            )));
        }
        if pairs.is_empty() {
            return Err(Error::Config(format!(
                "{name} needs at least one feature pair"
            )));
        }
        let vb = vb.pp("projectors");
        let projectors = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let form = if p.dense { dense_form } else { pooled_form };
                let cfg = ProjectorConfig {
                    seed: seed.wrapping_add(2 * i as u64),
                    ..projector
                };
                Projector::new(direction, form, p.d_teacher, p.d_student, cfg, vb.pp(i))
            })
            .collect::<crosskd_projectors::Result<Vec<_>>>()?;
        Ok(Self {
            name: name.to_string(),
            weight,
            distance,
            projectors,
        })
    }

    /// The distance.
    pub fn distance(&self) -> Distance {
        self.distance
    }

    /// The weight (alpha).
    pub fn weight(&self) -> f64 {
        self.weight
    }
}

impl DistillMethod for ProjectedFeatureDistillation {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&self, inputs: &DistillInputs<'_>) -> Result<LossTerms> {
        check_pairs(&self.name, inputs, self.projectors.len())?;
        let mut out = LossTerms::default();
        let (mut transfer, mut spectral, mut split) = (0.0, 0.0, false);
        for (i, p) in self.projectors.iter().enumerate() {
            let terms = p.distill(
                &inputs.student_features[i],
                &inputs.teacher_features[i],
                &self.distance,
            )?;
            let name = if i == 0 {
                self.name.clone()
            } else {
                format!("{}.{i}", self.name)
            };
            out.push(name, self.weight, terms.total);
            if let (Some(t), Some(s)) = (terms.transfer, terms.spectral) {
                split = true;
                transfer +=
                    self.weight * t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                spectral +=
                    self.weight * s.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            }
        }
        if split {
            out.push_diagnostic(format!("{}.transfer", self.name), transfer);
            out.push_diagnostic(format!("{}.spectral", self.name), spectral);
        }
        Ok(out)
    }

    fn projectors(&self) -> &[Projector] {
        &self.projectors
    }
}
