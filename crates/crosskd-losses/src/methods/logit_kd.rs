//! Logit distillation (Hinton et al. 2015) for a student and teacher with the same label space:
//! `L = T² · (1/N) Σ_n Σ_k p_t log(p_t / p_s)`, `p = softmax(logits / T)`; the `T²` keeps the
//! gradient scale independent of the temperature.

use candle_core::Tensor;
use crosskd_ops::softmax::{log_softmax, softmax};
use serde::{Deserialize, Serialize};

use super::{DistillInputs, DistillMethod};
use crate::{Error, LossTerms, Result};

/// Keys of `kind = "logit-kd"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogitKdConfig {
    /// Weight of the term (default 1).
    #[serde(default = "super::default_weight")]
    pub weight: f64,
    /// Temperature `T > 0` (default 4).
    #[serde(default = "default_temperature")]
    pub temperature: f64,
}

fn default_temperature() -> f64 {
    4.0
}

impl Default for LogitKdConfig {
    fn default() -> Self {
        Self {
            weight: 1.0,
            temperature: default_temperature(),
        }
    }
}

/// The logit-KD method.
#[derive(Debug, Clone)]
pub struct LogitKd {
    config: LogitKdConfig,
}

impl LogitKd {
    /// Validates `T > 0` and a finite weight.
    pub fn new(config: LogitKdConfig) -> Result<Self> {
        if !crate::error::positive_finite(config.temperature) || !config.weight.is_finite() {
            return Err(Error::Config(format!(
                "logit-kd: temperature must be > 0 and weight finite, got T = {}, weight = {}",
                config.temperature, config.weight
            )));
        }
        Ok(Self { config })
    }
}

/// `T² · KL(p_t ‖ p_s)` averaged over the batch; logits `(N, K)`, teacher detached.
pub fn logit_kd_loss(
    student_logits: &Tensor,
    teacher_logits: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    if student_logits.rank() != 2 || student_logits.dims() != teacher_logits.dims() {
        return Err(Error::Shape {
            context: "logit KD, teacher logits".into(),
            expected: format!(
                "(N, K) logits equal in shape to the student's {:?}",
                student_logits.dims()
            ),
            got: teacher_logits.dims().to_vec(),
        });
    }
    let n = student_logits.dim(0)?;
    let inv_t = 1.0 / temperature;
    let t = teacher_logits.detach().affine(inv_t, 0.0)?;
    let p_t = softmax(&t, 1)?;
    let log_p_t = log_softmax(&t, 1)?;
    let log_p_s = log_softmax(&student_logits.affine(inv_t, 0.0)?, 1)?;
    let kl = (p_t * (log_p_t - log_p_s)?)?.sum_all()?;
    Ok(kl.affine(temperature * temperature / n as f64, 0.0)?)
}

impl DistillMethod for LogitKd {
    fn name(&self) -> &str {
        "logit-kd"
    }

    fn forward(&self, inputs: &DistillInputs<'_>) -> Result<LossTerms> {
        let (Some(s), Some(t)) = (inputs.student_logits, inputs.teacher_logits) else {
            return Err(Error::MissingInput {
                method: "logit-kd".into(),
                what: "student and teacher logits".into(),
            });
        };
        let mut out = LossTerms::default();
        out.push(
            "logit-kd",
            self.config.weight,
            logit_kd_loss(s, t, self.config.temperature)?,
        );
        Ok(out)
    }
}
