//! Named, weighted loss terms: what a KD method returns and what the trainer logs.

use candle_core::Tensor;

use crate::{Error, Result};

/// One term of a loss: `weight · value`.
#[derive(Debug, Clone)]
pub struct LossTerm {
    /// Name for logs, e.g. `"fitnets"`, `"fitnets.1"` for the second feature pair.
    pub name: String,
    /// The factor the term enters the total with (the method's `alpha`).
    pub weight: f64,
    /// The unweighted scalar value, differentiable.
    pub value: Tensor,
}

/// The output of a KD method (mdistiller's dict of named losses, plus logging-only values).
#[derive(Debug, Clone, Default)]
pub struct LossTerms {
    /// Terms whose weighted sum is the method's loss.
    pub terms: Vec<LossTerm>,
    /// Values for logging only, not part of the loss (e.g. `"fitnets.transfer"`,
    /// `"fitnets.spectral"`, already multiplied by the term's weight so that, for a squared-L2
    /// distance, transfer + spectral = weight · value).
    pub diagnostics: Vec<(String, f64)>,
}

impl LossTerms {
    /// Adds a term.
    pub fn push(&mut self, name: impl Into<String>, weight: f64, value: Tensor) {
        self.terms.push(LossTerm {
            name: name.into(),
            weight,
            value,
        });
    }

    /// Adds a logging-only value.
    pub fn push_diagnostic(&mut self, name: impl Into<String>, value: f64) {
        self.diagnostics.push((name.into(), value));
    }

    /// `Σ_i weight_i · value_i`; an error when there is no term.
    pub fn total(&self) -> Result<Tensor> {
        let mut iter = self.terms.iter();
        let first = iter
            .next()
            .ok_or_else(|| Error::Config("a loss with no terms has no total".into()))?;
        let mut total = first.value.affine(first.weight, 0.0)?;
        for t in iter {
            total = (total + t.value.affine(t.weight, 0.0)?)?;
        }
        Ok(total)
    }

    /// `(name, weight · value)` of every term, as f64, for logs.
    pub fn weighted_values(&self) -> Result<Vec<(String, f64)>> {
        self.terms
            .iter()
            .map(|t| {
                let v = t
                    .value
                    .to_dtype(candle_core::DType::F64)?
                    .to_scalar::<f64>()?;
                Ok((t.name.clone(), t.weight * v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn total_is_the_weighted_sum_and_logged_values_add_up() {
        let mut terms = LossTerms::default();
        terms.push("a", 2.0, Tensor::new(1.5f64, &Device::Cpu).unwrap());
        terms.push("b", 0.5, Tensor::new(4.0f64, &Device::Cpu).unwrap());
        let total = terms.total().unwrap().to_scalar::<f64>().unwrap();
        assert_eq!(total, 5.0);
        let logged: f64 = terms
            .weighted_values()
            .unwrap()
            .iter()
            .map(|(_, v)| v)
            .sum();
        assert_eq!(logged, total);
        assert!(LossTerms::default().total().is_err());
    }
}
