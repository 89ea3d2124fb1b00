//! Normalisation: batch norm (train and eval), group norm and layer norm, as functions and as
//! layers whose parameter names match PyTorch's state dicts.
//!
//! candle 0.11.1's fused `LayerNorm`/`RmsNorm` record no backward at all, so the input silently
//! gets no gradient; `candle_nn::BatchNorm` keeps its running statistics outside the `VarMap`, so
//! they are not saved with checkpoints. Everything here is checked against finite differences
//! (`tests/ops_norm.rs`).
//!
//! On the CPU (f32, f64) the standardisation step runs as one hand-written kernel (`cpu.rs`) with a
//! hand-written backward; elsewhere it is a composition of candle primitives ([`generic`]). The
//! affine step is `crate::channel`'s per-channel kernel on the CPU, broadcast arithmetic elsewhere.
//!
//! Depends on `channel`, `reduce`, `kernel` and `activation`; not on `conv` or `fused` (the fused
//! conv-BN-ReLU methods of [`BatchNorm2d`] live in the crate's `layers` module, above both).
//!
//! # Running statistics
//! [`BatchNorm2d`] asks its `VarBuilder` for `running_mean`, `running_var` and
//! `num_batches_tracked` (with constant initialisers), exactly like its trainable parameters. When
//! the builder is backed by a `VarMap`, the tensor it returns *is* the map's variable (same
//! storage), so the layer wraps it in a [`Var`] with `Var::from_tensor` (which does not copy a
//! tensor that is already a variable) and updates it in place with `Var::set`: the update is then
//! visible through the `VarMap` and saved with it. With a read-only builder (safetensors) the
//! statistics are a private copy owned by the layer. Because they live in the `VarMap`, optimisers
//! must skip them: use [`is_buffer`].

use std::sync::{Arc, Mutex};

use candle_core::{Tensor, Var};
use candle_nn::{Init, VarBuilder};

use crate::channel::{channels, check_affine, use_cpu_kernel};
use crate::{Error, Result};

pub(crate) mod cpu;

/// Kept at its old path: callers added conv biases through `norm` before it moved to `channel`.
pub use crate::channel::add_channel_bias;

/// Standardises `x` viewed as `(A, C, B)`: for each `c`, over all `a` and `b`,
/// `x̂ = (x − μ_c) / sqrt(σ²_c + eps)` with the biased variance `σ²_c`. Returns `x̂` and the
/// detached `(μ, σ²)` of shape `(C)`. Runs the CPU kernel when it applies and `allow_kernel`.
fn standardize(
    x: &Tensor,
    (a, c, b): (usize, usize, usize),
    eps: f64,
    allow_kernel: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    if allow_kernel && use_cpu_kernel(x) {
        let stats = Arc::new(Mutex::new(cpu::Stats::default()));
        let op = cpu::Standardize {
            a,
            c,
            b,
            eps,
            stats: stats.clone(),
        };
        let xhat = x.contiguous()?.apply_op1(op)?;
        let (mean, var) = stats_tensors(&stats, c, x)?;
        return Ok((xhat, mean, var));
    }
    let x3 = x.reshape((a, c, b))?;
    let m = (a * b) as f64;
    let mean = x3.sum_keepdim(2)?.sum_keepdim(0)?.affine(1.0 / m, 0.0)?;
    let centered = x3.broadcast_sub(&mean)?;
    let var = centered
        .sqr()?
        .sum_keepdim(2)?
        .sum_keepdim(0)?
        .affine(1.0 / m, 0.0)?;
    let inv_std = var.affine(1.0, eps)?.sqrt()?.recip()?;
    let xhat = centered.broadcast_mul(&inv_std)?.reshape(x.shape())?;
    Ok((
        xhat,
        mean.flatten_all()?.detach(),
        var.flatten_all()?.detach(),
    ))
}

/// Training batch norm with weight and bias (and a ReLU when `relu`) as one CPU op; returns
/// `(y, μ, σ²)` like [`standardize`].
fn fused_batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    (a, c, b): (usize, usize, usize),
    eps: f64,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let stats = Arc::new(Mutex::new(cpu::Stats::default()));
    let op = cpu::BatchNormAffine {
        shape: cpu::Standardize {
            a,
            c,
            b,
            eps,
            stats: stats.clone(),
        },
        relu,
    };
    let y = x
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    let (mean, var) = stats_tensors(&stats, c, x)?;
    Ok((y, mean, var))
}

/// The `(μ, σ²)` a CPU kernel left in `stats`, as tensors of `x`'s dtype and device.
pub(crate) fn stats_tensors(
    stats: &Mutex<cpu::Stats>,
    c: usize,
    x: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let stats = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mean = Tensor::from_vec(stats.mean, c, x.device())?.to_dtype(x.dtype())?;
    let var = Tensor::from_vec(stats.var, c, x.device())?.to_dtype(x.dtype())?;
    Ok((mean, var))
}

/// `y = x̂ · weight + bias` with the parameters broadcast along `dim` of `x̂`.
fn affine_along(
    xhat: &Tensor,
    dim: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    allow_kernel: bool,
) -> Result<Tensor> {
    let len = xhat.dim(dim)?;
    if let (true, Some(w), Some(b)) = (allow_kernel && use_cpu_kernel(xhat), weight, bias) {
        if w.dtype() == xhat.dtype() && b.dtype() == xhat.dtype() {
            let dims = xhat.dims();
            let op = crate::channel::cpu::ChannelAffine {
                a: dims[..dim].iter().product(),
                c: len,
                b: dims[dim + 1..].iter().product(),
            };
            return Ok(xhat
                .contiguous()?
                .apply_op3(&w.contiguous()?, &b.contiguous()?, op)?);
        }
    }
    let mut shape = vec![1usize; xhat.rank()];
    shape[dim] = len;
    let mut y = xhat.clone();
    if let Some(w) = weight {
        y = y.broadcast_mul(&w.reshape(shape.as_slice())?)?;
    }
    if let Some(b) = bias {
        y = y.broadcast_add(&b.reshape(shape.as_slice())?)?;
    }
    Ok(y)
}

/// Batch normalisation with batch statistics (training mode), over every dimension but 1:
/// `y = (x − μ_c) / sqrt(σ²_c + eps) · weight_c + bias_c`, where `μ_c`, `σ²_c` are the mean and
/// biased variance of channel `c` over N and all spatial positions. Works for `(N, C)` and
/// `(N, C, H, W)` (any rank ≥ 2).
///
/// Returns `(y, μ, s²)` where `s² = σ² · m/(m − 1)` is the *unbiased* variance (what PyTorch puts
/// into `running_var`); `μ` and `s²` are detached (they are statistics for the running averages,
/// not part of the autograd graph). Needs more than one value per channel, like PyTorch.
pub fn batch_norm_train(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    batch_norm_train_impl(x, weight, bias, eps, true, false)
}

/// [`batch_norm_train`] followed by a ReLU, `relu(bn(x))`, with the same statistics returned. On
/// the CPU (f32/f64, with weight and bias) both run as one op: one pass forward, two backward.
pub fn batch_norm_relu_train(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    batch_norm_train_impl(x, weight, bias, eps, true, true)
}

fn batch_norm_train_impl(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    allow_kernel: bool,
    relu: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "batch_norm_train";
    let (n, c, rest) = channels(op, x)?;
    check_affine(op, "weight", weight, c)?;
    check_affine(op, "bias", bias, c)?;
    let m = n * rest;
    if m < 2 {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "expected more than 1 value per channel in training, got input shape {:?}",
                x.dims()
            ),
        });
    }
    let (y, mean, var) = match (weight, bias) {
        (Some(w), Some(b))
            if allow_kernel
                && use_cpu_kernel(x)
                && w.dtype() == x.dtype()
                && b.dtype() == x.dtype() =>
        {
            fused_batch_norm(x, w, b, (n, c, rest), eps, relu)?
        }
        _ => {
            let (xhat, mean, var) = standardize(x, (n, c, rest), eps, allow_kernel)?;
            let y = affine_along(&xhat, 1, weight, bias, allow_kernel)?;
            let y = if relu {
                crate::activation::relu(&y)?
            } else {
                y
            };
            (y, mean, var)
        }
    };
    let unbiased = var.affine(m as f64 / (m - 1) as f64, 0.0)?;
    Ok((y, mean, unbiased))
}

/// Batch normalisation with fixed statistics (evaluation mode):
/// `y = (x − running_mean_c) / sqrt(running_var_c + eps) · weight_c + bias_c`, channel = dim 1.
pub fn batch_norm_eval(
    x: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    let op = "batch_norm_eval";
    let (_, c, _) = channels(op, x)?;
    check_affine(op, "running_mean", Some(running_mean), c)?;
    check_affine(op, "running_var", Some(running_var), c)?;
    check_affine(op, "weight", weight, c)?;
    check_affine(op, "bias", bias, c)?;
    // The per-channel vectors are computed first (C elements), so `x` is read once, by the
    // channel-affine kernel on the CPU, instead of by four broadcast ops.
    let (scale, shift) = eval_scale_shift(running_mean, running_var, weight, bias, eps)?;
    affine_along(x, 1, Some(&scale), Some(&shift), true)
}

/// Batch norm with fixed statistics as one affine map per channel, `y = x·s + t`:
/// `s = weight / sqrt(running_var + eps)` and `t = bias − running_mean·s` (weight 1 and bias 0
/// when absent). Differentiable in all four vectors.
pub fn eval_scale_shift(
    running_mean: &Tensor,
    running_var: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    let inv_std = running_var.affine(1.0, eps)?.sqrt()?.recip()?;
    let scale = match weight {
        Some(w) => (inv_std * w)?,
        None => inv_std,
    };
    let shifted = (running_mean * &scale)?.neg()?;
    let shift = match bias {
        Some(b) => (shifted + b)?,
        None => shifted,
    };
    Ok((scale, shift))
}

/// Group normalisation: the C channels of `x: (N, C, ...)` are split into `num_groups` groups and
/// each `(n, group)` is standardised over its channels and spatial positions,
/// `y = (x − μ_{n,g}) / sqrt(σ²_{n,g} + eps) · weight_c + bias_c` (biased variance; PyTorch
/// `group_norm`).
pub fn group_norm(
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    group_norm_impl(x, num_groups, weight, bias, eps, true)
}

fn group_norm_impl(
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    allow_kernel: bool,
) -> Result<Tensor> {
    let op = "group_norm";
    let (n, c, rest) = channels(op, x)?;
    if num_groups == 0 || c % num_groups != 0 {
        return Err(Error::InvalidArgument {
            op,
            message: format!("{c} channels cannot be split into {num_groups} groups"),
        });
    }
    check_affine(op, "weight", weight, c)?;
    check_affine(op, "bias", bias, c)?;
    let (xhat, _, _) = standardize(
        x,
        (1, n * num_groups, (c / num_groups) * rest),
        eps,
        allow_kernel,
    )?;
    affine_along(&xhat, 1, weight, bias, allow_kernel)
}

/// Layer normalisation over the last dimension `D`:
/// `y = (x − μ) / sqrt(σ²_biased + eps) · weight + bias` with `weight`, `bias` of shape `(D)`.
pub fn layer_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    layer_norm_impl(x, weight, bias, eps, true)
}

fn layer_norm_impl(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    allow_kernel: bool,
) -> Result<Tensor> {
    let op = "layer_norm";
    if x.rank() == 0 {
        return Err(Error::Shape {
            op,
            expected: "an input of rank ≥ 1".into(),
            got: vec![],
        });
    }
    let d = x.dim(x.rank() - 1)?;
    check_affine(op, "weight", weight, d)?;
    check_affine(op, "bias", bias, d)?;
    let rows = x.elem_count() / d.max(1);
    let (xhat, _, _) = standardize(x, (1, rows, d), eps, allow_kernel)?;
    affine_along(&xhat, x.rank() - 1, weight, bias, allow_kernel)
}

/// True for the names of batch-norm buffers (`…running_mean`, `…running_var`,
/// `…num_batches_tracked`): variables saved with a model but never updated by an optimiser.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("num_batches_tracked")
}

/// Settings of [`BatchNorm2d`] (PyTorch defaults: `eps = 1e-5`, `momentum = 0.1`, `affine = true`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Running-average factor: `running = (1 − momentum)·running + momentum·batch`.
    pub momentum: f64,
    /// Whether the layer has a learnable per-channel `weight` and `bias`.
    pub affine: bool,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            eps: 1e-5,
            momentum: 0.1,
            affine: true,
        }
    }
}

/// Batch normalisation layer (PyTorch `nn.BatchNorm2d` with `track_running_stats = true`; also
/// accepts `(N, C)` inputs like `BatchNorm1d`). Parameters `weight`, `bias`; buffers
/// `running_mean`, `running_var`, `num_batches_tracked` (see the module docs for how they are
/// stored and updated).
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    running_mean: Var,
    running_var: Var,
    num_batches_tracked: Var,
    num_features: usize,
    config: BatchNormConfig,
}

/// Fetches a buffer from `vb` as a [`Var`] that shares storage with the builder's variable when
/// there is one. A missing `num_batches_tracked` (old PyTorch checkpoints lack it) falls back to a
/// private zero.
fn buffer_var(
    vb: &VarBuilder,
    shape: &[usize],
    name: &str,
    init: f64,
    optional: bool,
) -> Result<Var> {
    match vb.get_with_hints(shape, name, Init::Const(init)) {
        Ok(t) => Ok(Var::from_tensor(&t)?),
        Err(_) if optional && !vb.contains_tensor(name) => Ok(Var::from_tensor(
            &Tensor::full(init, shape, vb.device())?.to_dtype(vb.dtype())?,
        )?),
        Err(e) => Err(e.into()),
    }
}

/// Builds a [`BatchNorm2d`] with `num_features` channels; parameters at `vb` under PyTorch names.
pub fn batch_norm2d(
    num_features: usize,
    config: BatchNormConfig,
    vb: VarBuilder,
) -> Result<BatchNorm2d> {
    if config.eps.is_nan() || config.eps <= 0.0 || !(0.0..=1.0).contains(&config.momentum) {
        return Err(Error::InvalidArgument {
            op: "batch_norm2d",
            message: format!("eps must be > 0 and momentum in [0, 1], got {config:?}"),
        });
    }
    let (weight, bias) = if config.affine {
        (
            Some(vb.get_with_hints(num_features, "weight", Init::Const(1.0))?),
            Some(vb.get_with_hints(num_features, "bias", Init::Const(0.0))?),
        )
    } else {
        (None, None)
    };
    Ok(BatchNorm2d {
        weight,
        bias,
        running_mean: buffer_var(&vb, &[num_features], "running_mean", 0.0, false)?,
        running_var: buffer_var(&vb, &[num_features], "running_var", 1.0, false)?,
        num_batches_tracked: buffer_var(&vb, &[], "num_batches_tracked", 0.0, true)?,
        num_features,
        config,
    })
}

impl BatchNorm2d {
    /// The running mean (shape `(C)`), as currently stored.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running (unbiased) variance (shape `(C)`), as currently stored.
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// How many training batches have updated the running statistics.
    pub fn num_batches_tracked(&self) -> &Tensor {
        self.num_batches_tracked.as_tensor()
    }

    /// The layer's settings.
    pub fn config(&self) -> BatchNormConfig {
        self.config
    }

    /// The affine `(weight, bias)`, both present or both absent (`config().affine`); for the
    /// fused conv-BN-ReLU methods, which live above `norm` (the crate's `layers` module).
    pub(crate) fn affine_params(&self) -> Option<(&Tensor, &Tensor)> {
        self.weight.as_ref().zip(self.bias.as_ref())
    }

    /// Training-mode forward: normalises with batch statistics and updates the running ones,
    /// `running ← (1 − momentum)·running + momentum·batch` (variance: unbiased).
    pub fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        self.train_step(x, batch_norm_train)
    }

    /// `relu(self.forward_t(x, train))`; in training, normalisation and ReLU run as one op.
    pub fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.train_step(x, batch_norm_relu_train)
        } else {
            crate::activation::relu(&self.forward_eval(x)?)
        }
    }

    fn train_step(&self, x: &Tensor, normalise: TrainingNorm) -> Result<Tensor> {
        self.update_running(normalise(
            x,
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.config.eps,
        )?)
    }

    /// Folds the batch statistics of a training step into the running ones; returns `y`.
    pub(crate) fn update_running(
        &self,
        (y, mean, var): (Tensor, Tensor, Tensor),
    ) -> Result<Tensor> {
        let m = self.config.momentum;
        let update = |stat: &Var, batch: &Tensor| -> Result<()> {
            let old = stat.as_tensor().detach();
            let new = (old.affine(1.0 - m, 0.0)? + batch.to_dtype(old.dtype())?.affine(m, 0.0)?)?;
            stat.set(&new)?;
            Ok(())
        };
        update(&self.running_mean, &mean)?;
        update(&self.running_var, &var)?;
        let count = self
            .num_batches_tracked
            .as_tensor()
            .detach()
            .affine(1.0, 1.0)?;
        self.num_batches_tracked.set(&count)?;
        Ok(y)
    }

    /// Evaluation-mode forward: normalises with the (detached) running statistics.
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        batch_norm_eval(
            x,
            &self.running_mean.as_tensor().detach().to_dtype(dtype)?,
            &self.running_var.as_tensor().detach().to_dtype(dtype)?,
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.config.eps,
        )
    }

    /// The evaluation-mode norm as `(s, t)` of `y = x·s + t` per channel, in `dtype` (see
    /// [`eval_scale_shift`]).
    pub fn eval_scale_shift(&self, dtype: candle_core::DType) -> Result<(Tensor, Tensor)> {
        let weight = self
            .weight
            .as_ref()
            .map(|w| w.to_dtype(dtype))
            .transpose()?;
        let bias = self.bias.as_ref().map(|b| b.to_dtype(dtype)).transpose()?;
        eval_scale_shift(
            &self.running_mean.as_tensor().detach().to_dtype(dtype)?,
            &self.running_var.as_tensor().detach().to_dtype(dtype)?,
            weight.as_ref(),
            bias.as_ref(),
            self.config.eps,
        )
    }

    /// Number of channels.
    pub fn num_features(&self) -> usize {
        self.num_features
    }
}

impl candle_nn::ModuleT for BatchNorm2d {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let y = if train {
            self.forward_train(x)
        } else {
            self.forward_eval(x)
        };
        Ok(y?)
    }
}

/// A training-mode batch norm function: `(x, weight, bias, eps) -> (y, batch mean, unbiased var)`.
type TrainingNorm =
    fn(&Tensor, Option<&Tensor>, Option<&Tensor>, f64) -> Result<(Tensor, Tensor, Tensor)>;

/// Group normalisation layer (PyTorch `nn.GroupNorm`, affine), parameters `weight` (ones) and
/// `bias` (zeros) of shape `(C)`.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    num_groups: usize,
    eps: f64,
}

/// Builds a [`GroupNorm`] over `num_channels` channels split into `num_groups` groups.
pub fn group_norm_layer(
    num_groups: usize,
    num_channels: usize,
    eps: f64,
    vb: VarBuilder,
) -> Result<GroupNorm> {
    if num_groups == 0 || !num_channels.is_multiple_of(num_groups) {
        return Err(Error::InvalidArgument {
            op: "group_norm_layer",
            message: format!("{num_channels} channels cannot be split into {num_groups} groups"),
        });
    }
    Ok(GroupNorm {
        weight: vb.get_with_hints(num_channels, "weight", Init::Const(1.0))?,
        bias: vb.get_with_hints(num_channels, "bias", Init::Const(0.0))?,
        num_groups,
        eps,
    })
}

impl candle_nn::Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(group_norm(
            x,
            self.num_groups,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
        )?)
    }
}

/// Layer normalisation layer over the last dimension (PyTorch `nn.LayerNorm(dim)`), with
/// parameters `weight` (ones) and `bias` (zeros) of shape `(dim)` when `affine`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    eps: f64,
}

/// Builds a [`LayerNorm`] over a last dimension of size `dim`.
pub fn layer_norm_layer(dim: usize, eps: f64, affine: bool, vb: VarBuilder) -> Result<LayerNorm> {
    let (weight, bias) = if affine {
        (
            Some(vb.get_with_hints(dim, "weight", Init::Const(1.0))?),
            Some(vb.get_with_hints(dim, "bias", Init::Const(0.0))?),
        )
    } else {
        (None, None)
    };
    Ok(LayerNorm { weight, bias, eps })
}

impl candle_nn::Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(layer_norm(
            x,
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.eps,
        )?)
    }
}

/// The normalisation functions built from candle primitives only (used on devices and dtypes
/// without the CPU kernel); public so the tests can check them on CPU.
pub mod generic {
    use super::*;

    /// [`super::batch_norm_train`] from candle primitives.
    pub fn batch_norm_train(
        x: &Tensor,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        batch_norm_train_impl(x, weight, bias, eps, false, false)
    }

    /// [`super::batch_norm_relu_train`] from candle primitives (and the separate ReLU).
    pub fn batch_norm_relu_train(
        x: &Tensor,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        batch_norm_train_impl(x, weight, bias, eps, false, true)
    }

    /// [`super::group_norm`] from candle primitives.
    pub fn group_norm(
        x: &Tensor,
        num_groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        group_norm_impl(x, num_groups, weight, bias, eps, false)
    }

    /// [`super::layer_norm`] from candle primitives.
    pub fn layer_norm(
        x: &Tensor,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        layer_norm_impl(x, weight, bias, eps, false)
    }
}
