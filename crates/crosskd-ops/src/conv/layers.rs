//! Convolution layers with PyTorch parameter names and initialisation.
//!
//! Parameters are fetched from the `VarBuilder` as `weight` and `bias`, exactly as in a PyTorch
//! `state_dict`, so torchvision checkpoints load by name. When the builder creates fresh
//! variables, they get PyTorch's default initialisation: `kaiming_uniform_(a = sqrt(5))` for the
//! weight, which is `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, and the same bound for the bias.

use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

use super::{conv2d, conv_transpose2d, Conv2dConfig, ConvTranspose2dConfig};
use crate::{Error, Result};

/// PyTorch's default weight and bias initialisation for a layer with this fan-in:
/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (kaiming-uniform with `a = sqrt(5)` reduces to this).
fn pytorch_default_init(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

fn check_groups(op: &'static str, in_c: usize, out_c: usize, groups: usize) -> Result<()> {
    if groups == 0 || !in_c.is_multiple_of(groups) || !out_c.is_multiple_of(groups) {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "groups = {groups} must be positive and divide in_channels = {in_c} and out_channels = {out_c}"
            ),
        });
    }
    Ok(())
}

/// A 2-D convolution layer (`nn.Conv2d`): `weight: (out_c, in_c/groups, k, k)`, optional `bias: (out_c)`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv2dConfig,
}

impl Conv2d {
    /// A layer from existing tensors (no shape check beyond what the forward pass does).
    pub fn new(weight: Tensor, bias: Option<Tensor>, cfg: Conv2dConfig) -> Self {
        Self { weight, bias, cfg }
    }

    /// The weight, `(out_c, in_c/groups, kH, kW)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `(out_c)`, if the layer has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The hyper-parameters.
    pub fn config(&self) -> Conv2dConfig {
        self.cfg
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(conv2d(x, &self.weight, self.bias.as_ref(), self.cfg)?)
    }
}

/// Builds a [`Conv2d`] with a square `kernel`, parameters `weight` (and `bias` when `bias` is true)
/// taken from `vb`, initialised as PyTorch does when they are new.
pub fn conv2d_layer(
    in_c: usize,
    out_c: usize,
    kernel: usize,
    cfg: Conv2dConfig,
    bias: bool,
    vb: VarBuilder,
) -> Result<Conv2d> {
    check_groups("conv2d_layer", in_c, out_c, cfg.groups)?;
    let fan_in = in_c / cfg.groups * kernel * kernel;
    let init = pytorch_default_init(fan_in);
    let weight = vb.get_with_hints((out_c, in_c / cfg.groups, kernel, kernel), "weight", init)?;
    let bias = if bias {
        Some(vb.get_with_hints(out_c, "bias", init)?)
    } else {
        None
    };
    Ok(Conv2d::new(weight, bias, cfg))
}

/// A 2-D transposed convolution layer (`nn.ConvTranspose2d`): `weight: (in_c, out_c/groups, k, k)`,
/// optional `bias: (out_c)`.
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: ConvTranspose2dConfig,
}

impl ConvTranspose2d {
    /// A layer from existing tensors (no shape check beyond what the forward pass does).
    pub fn new(weight: Tensor, bias: Option<Tensor>, cfg: ConvTranspose2dConfig) -> Self {
        Self { weight, bias, cfg }
    }

    /// The weight, `(in_c, out_c/groups, kH, kW)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `(out_c)`, if the layer has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The hyper-parameters.
    pub fn config(&self) -> ConvTranspose2dConfig {
        self.cfg
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Ok(conv_transpose2d(
            x,
            &self.weight,
            self.bias.as_ref(),
            self.cfg,
        )?)
    }
}

/// Builds a [`ConvTranspose2d`] with a square `kernel`, parameters `weight` (and `bias`) taken from
/// `vb`. PyTorch computes the fan-in of a transposed convolution from the weight's second
/// dimension: `fan_in = out_c/groups · k · k`; the initialisation follows it.
pub fn conv_transpose2d_layer(
    in_c: usize,
    out_c: usize,
    kernel: usize,
    cfg: ConvTranspose2dConfig,
    bias: bool,
    vb: VarBuilder,
) -> Result<ConvTranspose2d> {
    check_groups("conv_transpose2d_layer", in_c, out_c, cfg.groups)?;
    let fan_in = out_c / cfg.groups * kernel * kernel;
    let init = pytorch_default_init(fan_in);
    let weight = vb.get_with_hints((in_c, out_c / cfg.groups, kernel, kernel), "weight", init)?;
    let bias = if bias {
        Some(vb.get_with_hints(out_c, "bias", init)?)
    } else {
        None
    };
    Ok(ConvTranspose2d::new(weight, bias, cfg))
}
