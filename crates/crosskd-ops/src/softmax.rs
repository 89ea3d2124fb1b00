//! Softmax, log-softmax and cross-entropy (PyTorch semantics: class weights, ignore index, label
//! smoothing).
//!
//! candle 0.11.1's fused `candle_nn::ops::softmax_last_dim` records no backward, so gradients
//! silently stop at it. These versions are compositions of candle primitives (max, exp, sums,
//! gather), whose backward passes are correct on every device (`tests/ops_softmax.rs`).

use candle_core::shape::Dim;
use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// `softmax(x)_i = exp(x_i − m) / Σ_j exp(x_j − m)` along `dim`, with `m = max_j x_j` subtracted
/// for numerical stability (the shift cancels, so it is detached from the graph).
pub fn softmax<D: Dim>(x: &Tensor, dim: D) -> Result<Tensor> {
    let dim = dim.to_index(x.shape(), "softmax")?;
    let shifted = x.broadcast_sub(&x.max_keepdim(dim)?.detach())?;
    let e = shifted.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(dim)?)?)
}

/// `log_softmax(x)_i = (x_i − m) − log Σ_j exp(x_j − m)` along `dim`, `m = max_j x_j` (stable for
/// large logits; never takes the log of a rounded-to-zero probability).
pub fn log_softmax<D: Dim>(x: &Tensor, dim: D) -> Result<Tensor> {
    let dim = dim.to_index(x.shape(), "log_softmax")?;
    let shifted = x.broadcast_sub(&x.max_keepdim(dim)?.detach())?;
    let log_sum = shifted.exp()?.sum_keepdim(dim)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum)?)
}

/// Options of [`cross_entropy`]; the default is plain mean cross-entropy.
#[derive(Debug, Clone, Default)]
pub struct CrossEntropyOptions {
    /// Per-class weights `w` of shape `(C)` (PyTorch `weight`).
    pub class_weights: Option<Tensor>,
    /// Targets equal to this value contribute nothing, to the loss or to the normaliser.
    pub ignore_index: Option<u32>,
    /// PyTorch `label_smoothing` `ε ∈ [0, 1]`.
    pub label_smoothing: f64,
}

/// Mean cross-entropy with PyTorch's `F.cross_entropy(reduction="mean")` semantics.
///
/// `logits`: `(N, C)` or `(N, C, d1, …)` (e.g. `(N, C, H, W)` for segmentation); `targets`: u32
/// class indices of shape `(N)` or `(N, d1, …)`. With `p = log_softmax(logits)` over classes,
/// `w_i = w[t_i]` (1 without class weights) and `m_i = [t_i ≠ ignore_index]`:
///
/// `loss = Σ_i m_i·((1 − ε)·w_i·(−p_{i,t_i}) + (ε/C)·Σ_c w_c·(−p_{i,c})) / Σ_i m_i·w_i`.
///
/// Unlike PyTorch, a batch whose targets are all ignored gives 0 (not NaN), with zero gradient.
pub fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    opts: &CrossEntropyOptions,
) -> Result<Tensor> {
    let op = "cross_entropy";
    if logits.rank() < 2 {
        return Err(Error::Shape {
            op,
            expected: "logits of rank ≥ 2 (N, C, ...)".into(),
            got: logits.dims().to_vec(),
        });
    }
    let (n, c) = (logits.dim(0)?, logits.dim(1)?);
    let mut expected_targets = vec![n];
    expected_targets.extend_from_slice(&logits.dims()[2..]);
    if targets.dims() != expected_targets.as_slice() {
        return Err(Error::Shape {
            op,
            expected: format!(
                "targets of shape {expected_targets:?} for logits {:?}",
                logits.dims()
            ),
            got: targets.dims().to_vec(),
        });
    }
    if targets.dtype() != DType::U32 {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "targets must be u32 class indices, got {:?}",
                targets.dtype()
            ),
        });
    }
    if !(0.0..=1.0).contains(&opts.label_smoothing) {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "label_smoothing must be in [0, 1], got {}",
                opts.label_smoothing
            ),
        });
    }
    let dtype = logits.dtype();
    let dev = logits.device();
    let weights = match &opts.class_weights {
        Some(w) if w.dims() != [c] => {
            return Err(Error::Shape {
                op,
                expected: format!("class_weights of shape ({c})"),
                got: w.dims().to_vec(),
            })
        }
        Some(w) => Some(w.to_dtype(dtype)?),
        None => None,
    };
    let rows = targets.elem_count();
    if rows == 0 {
        return Ok(Tensor::zeros((), dtype, dev)?);
    }

    // Classes last: (M, C) with one row per prediction.
    let z = if logits.rank() == 2 {
        logits.clone()
    } else {
        logits
            .flatten_from(2)?
            .transpose(1, 2)?
            .reshape((rows, c))?
    };
    let t = targets.flatten_all()?;
    let keep = match opts.ignore_index {
        Some(ignore) => t.ne(ignore)?,
        None => Tensor::ones(rows, DType::U8, dev)?,
    };
    let safe_t = keep.where_cond(&t, &Tensor::zeros(rows, DType::U32, dev)?)?;
    let largest = safe_t.max_all()?.to_scalar::<u32>()?;
    if largest as usize >= c {
        return Err(Error::InvalidArgument {
            op,
            message: format!("target class {largest} out of range for {c} classes"),
        });
    }
    let keep = keep.to_dtype(dtype)?;

    let logp = log_softmax(&z, 1)?;
    let picked = logp.gather(&safe_t.unsqueeze(1)?, 1)?.squeeze(1)?;
    let row_weight = match &weights {
        Some(w) => (w.index_select(&safe_t, 0)? * &keep)?,
        None => keep.clone(),
    };
    let denom = row_weight.sum_all()?;
    let mut numer = (row_weight * picked)?.sum_all()?.neg()?;
    let eps = opts.label_smoothing;
    if eps > 0.0 {
        let per_row = match &weights {
            Some(w) => logp.broadcast_mul(&w.unsqueeze(0)?)?.sum(1)?,
            None => logp.sum(1)?,
        };
        let smooth = (per_row * &keep)?.sum_all()?.neg()?;
        numer = (numer.affine(1.0 - eps, 0.0)? + smooth.affine(eps / c as f64, 0.0)?)?;
    }
    // An all-ignored batch has numerator and denominator exactly 0: divide by 1 instead.
    let empty = denom.eq(0.0)?.to_dtype(dtype)?;
    Ok((numer / (denom + empty)?)?)
}
