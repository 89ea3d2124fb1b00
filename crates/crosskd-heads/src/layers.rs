//! The convolution layer heads are built from, over `crosskd_ops::conv`.

use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use crosskd_ops::conv::Conv2dConfig;

/// A 2-D convolution with bias, parameters `weight: (out, in, k, k)` and `bias: (out)` (the
/// PyTorch `nn.Conv2d` names).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    config: Conv2dConfig,
}

/// Builds a `k × k` convolution `in_channels → out_channels` with PyTorch's default
/// initialisation: weight and bias uniform in `±1/√(in_channels·k²)`.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    config: Conv2dConfig,
    vb: VarBuilder,
) -> candle_core::Result<Conv2d> {
    let fan_in = (in_channels / config.groups.max(1)) * kernel * kernel;
    let bound = 1.0 / (fan_in as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let weight = vb.get_with_hints(
        (
            out_channels,
            in_channels / config.groups.max(1),
            kernel,
            kernel,
        ),
        "weight",
        init,
    )?;
    let bias = vb.get_with_hints(out_channels, "bias", init)?;
    Ok(Conv2d {
        weight,
        bias,
        config,
    })
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        Ok(crosskd_ops::conv::conv2d(
            xs,
            &self.weight,
            Some(&self.bias),
            self.config,
        )?)
    }
}

/// `3×3` convolution, padding 1, then ReLU, then `1×1` convolution: the layer stack every dense
/// head shares, named `hidden` and `out`.
#[derive(Debug, Clone)]
pub struct DenseStack {
    hidden: Conv2d,
    out: Conv2d,
}

/// Builds a [`DenseStack`] `in_channels → hidden_channels → out_channels`.
pub fn dense_stack(
    in_channels: usize,
    hidden_channels: usize,
    out_channels: usize,
    vb: VarBuilder,
) -> candle_core::Result<DenseStack> {
    let padded = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    Ok(DenseStack {
        hidden: conv2d(in_channels, hidden_channels, 3, padded, vb.pp("hidden"))?,
        out: conv2d(
            hidden_channels,
            out_channels,
            1,
            Conv2dConfig::default(),
            vb.pp("out"),
        )?,
    })
}

impl Module for DenseStack {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let hidden = crosskd_ops::activation::relu(&self.hidden.forward(xs)?)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        self.out.forward(&hidden)
    }
}
