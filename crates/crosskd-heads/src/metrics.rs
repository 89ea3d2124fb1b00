//! The common interface of task metrics.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::{HeadsError, Result};

/// The metric a trainer ranks checkpoints by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryMetric {
    /// Its key in [`TaskMetrics::compute`].
    pub name: &'static str,
    /// Whether larger values are better (accuracy) or worse (error).
    pub higher_is_better: bool,
}

impl PrimaryMetric {
    /// Whether `candidate` is strictly better than `incumbent` under this metric.
    pub fn improves(&self, candidate: f64, incumbent: f64) -> bool {
        if self.higher_is_better {
            candidate > incumbent
        } else {
            candidate < incumbent
        }
    }
}

/// Metrics of one task, accumulated exactly over batches.
///
/// Implementations keep sums and counts (never averages of batch averages), and add per-pixel or
/// per-image terms one at a time in input order, so feeding a data set in one batch or in several
/// gives bit-identical results.
pub trait TaskMetrics: Send {
    /// Adds one batch. `valid` (optional, same pixels as `target`, non-zero = use) restricts the
    /// pixels that count, for tasks that support it.
    fn update(
        &mut self,
        prediction: &Tensor,
        target: &Tensor,
        valid: Option<&Tensor>,
    ) -> Result<()>;
    /// The metrics so far by name; empty before the first counted pixel or sample.
    fn compute(&self) -> BTreeMap<String, f64>;
    /// Forgets everything accumulated.
    fn reset(&mut self);
    /// The metric to keep the best checkpoint by.
    fn primary(&self) -> PrimaryMetric;
}

/// A tensor's elements as f64, row-major.
pub(crate) fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
}

/// A per-pixel mask as booleans (non-zero = valid), checked to have `n` elements.
pub(crate) fn mask_vec(what: &str, valid: Option<&Tensor>, n: usize) -> Result<Option<Vec<bool>>> {
    let Some(valid) = valid else { return Ok(None) };
    if valid.elem_count() != n {
        return Err(HeadsError::Shape {
            what: format!("{what}: valid mask"),
            expected: format!("{n} elements, one per target pixel"),
            got: valid.dims().to_vec(),
        });
    }
    Ok(Some(
        to_f64_vec(valid)?.into_iter().map(|v| v != 0.0).collect(),
    ))
}

/// Dims with the channel axis of a single-channel `(N, 1, H, W)` map removed, so that a
/// `(N, 1, H, W)` prediction and an `(N, H, W)` target compare equal.
pub(crate) fn squeeze_channel(dims: &[usize]) -> Vec<usize> {
    if dims.len() == 4 && dims[1] == 1 {
        vec![dims[0], dims[2], dims[3]]
    } else {
        dims.to_vec()
    }
}
