//! Small building blocks shared by the architectures: a convolution layer over
//! `crosskd_ops::conv::conv2d`, a train/eval-aware normalisation, and shape arithmetic.

use candle_core::Tensor;
use candle_nn::{Init, ModuleT, VarBuilder};
use crosskd_ops::conv::Conv2dConfig;
use crosskd_ops::norm::{batch_norm2d, group_norm_layer, BatchNorm2d, BatchNormConfig, GroupNorm};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A 2-D convolution with PyTorch parameter names `weight` `(C_out, C_in/groups, k, k)` and
/// optional `bias` `(C_out)`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    config: Conv2dConfig,
}

/// Builds a [`Conv2d`]; new weights are Kaiming-normal (fan-in, ReLU gain), biases zero.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    config: Conv2dConfig,
    bias: bool,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let weight = vb.get_with_hints(
        (
            out_channels,
            in_channels / config.groups.max(1),
            kernel,
            kernel,
        ),
        "weight",
        candle_nn::init::DEFAULT_KAIMING_NORMAL,
    )?;
    let bias = if bias {
        Some(vb.get_with_hints(out_channels, "bias", Init::Const(0.0))?)
    } else {
        None
    };
    Ok(Conv2d {
        weight,
        bias,
        config,
    })
}

impl Conv2d {
    /// `y = conv2d(x, weight) + bias`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(crosskd_ops::conv::conv2d(
            x,
            &self.weight,
            self.bias.as_ref(),
            self.config,
        )?)
    }
}

/// Which normalisation a student uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NormKind {
    /// Batch normalisation (running statistics in eval mode).
    #[default]
    Batch,
    /// Group normalisation (same in train and eval; suits small batches).
    Group,
}

/// A normalisation layer that behaves according to the train flag.
#[derive(Debug, Clone)]
pub enum Norm {
    /// Batch norm.
    Batch(BatchNorm2d),
    /// Group norm.
    Group(GroupNorm),
}

/// Builds a [`Norm`] over `channels` (PyTorch defaults: eps `1e-5`, momentum `0.1`).
pub fn norm(kind: NormKind, channels: usize, groups: usize, vb: VarBuilder) -> Result<Norm> {
    Ok(match kind {
        NormKind::Batch => Norm::Batch(batch_norm2d(channels, BatchNormConfig::default(), vb)?),
        NormKind::Group => Norm::Group(group_norm_layer(groups, channels, 1e-5, vb)?),
    })
}

impl Norm {
    /// Normalises `x`; batch norm uses batch statistics (and updates its running ones) when `train`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(match self {
            Norm::Batch(bn) => bn.forward_t(x, train)?,
            Norm::Group(gn) => candle_nn::Module::forward(gn, x)?,
        })
    }

    /// `relu(self.forward(conv.forward(x), train))`; batch norm in training runs all three as one
    /// op.
    pub fn forward_conv_relu(&self, conv: &Conv2d, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_cat_conv_relu(conv, &[x], train)
    }

    /// [`Self::forward_conv_relu`] of the channel concatenation `cat(inputs, 1)`; batch norm in
    /// training does not build the concatenation.
    pub fn forward_cat_conv_relu(
        &self,
        conv: &Conv2d,
        inputs: &[&Tensor],
        train: bool,
    ) -> Result<Tensor> {
        Ok(match self {
            Norm::Batch(bn) => bn.forward_cat_conv_relu(
                inputs,
                &conv.weight,
                conv.bias.as_ref(),
                conv.config,
                train,
            )?,
            Norm::Group(gn) => {
                let x = match inputs {
                    [x] => (*x).clone(),
                    _ => Tensor::cat(inputs, 1)?,
                };
                relu(&candle_nn::Module::forward(gn, &conv.forward(&x)?)?)?
            }
        })
    }

    /// [`Self::forward_conv_relu`] of `x` nearest-upsampled by `scale`; batch norm in training
    /// does not build the up-sampled tensor.
    pub fn forward_upsample_conv_relu(
        &self,
        conv: &Conv2d,
        x: &Tensor,
        scale: usize,
        train: bool,
    ) -> Result<Tensor> {
        Ok(match self {
            Norm::Batch(bn) => bn.forward_upsample_conv_relu(
                x,
                scale,
                &conv.weight,
                conv.bias.as_ref(),
                conv.config,
                train,
            )?,
            Norm::Group(_) => {
                let up = crosskd_ops::resize::upsample_nearest2d(x, scale, scale)?;
                self.forward_conv_relu(conv, &up, train)?
            }
        })
    }

    /// `relu(self.forward(x, train))`; batch norm in training runs both as one op.
    pub fn forward_relu(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(match self {
            Norm::Batch(bn) => bn.forward_relu(x, train)?,
            Norm::Group(gn) => relu(&candle_nn::Module::forward(gn, x)?)?,
        })
    }
}

/// A torchvision-style batch norm with the PyTorch defaults.
pub fn batch_norm(channels: usize, vb: VarBuilder) -> Result<Norm> {
    norm(NormKind::Batch, channels, 1, vb)
}

/// Output length of a convolution or pooling along one axis (PyTorch, `ceil_mode = false`):
/// `⌊(n + 2p − d(k − 1) − 1) / s⌋ + 1`, or `None` when the window does not fit.
pub fn conv_out(
    n: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = n + 2 * padding;
    if padded < span || stride == 0 {
        None
    } else {
        Some((padded - span) / stride + 1)
    }
}

/// Shorthand for a square [`Conv2dConfig`] without groups.
pub fn conv_cfg(stride: usize, padding: usize) -> Conv2dConfig {
    Conv2dConfig {
        stride,
        padding,
        dilation: 1,
        groups: 1,
    }
}

/// `relu(x) = max(x, 0)` through crosskd-ops' one-pass kernel.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    Ok(crosskd_ops::activation::relu(x)?)
}

/// `relu6(x) = min(max(x, 0), 6)`.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    Ok(crosskd_ops::activation::relu6(x)?)
}

/// PyTorch's adaptive average pooling to `(out_h, out_w)`: output cell `(i, j)` averages rows
/// `⌊iH/out_h⌋ .. ⌈(i+1)H/out_h⌉` and the matching columns. Built from `narrow` and `mean`,
/// whose gradients candle gets right.
pub fn adaptive_avg_pool2d(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h == out_h && w == out_w {
        return Ok(x.clone());
    }
    let mut rows = Vec::with_capacity(out_h);
    for i in 0..out_h {
        let (r0, r1) = (i * h / out_h, ((i + 1) * h).div_ceil(out_h));
        let band = x.narrow(2, r0, r1 - r0)?;
        let mut cells = Vec::with_capacity(out_w);
        for j in 0..out_w {
            let (c0, c1) = (j * w / out_w, ((j + 1) * w).div_ceil(out_w));
            cells.push(
                band.narrow(3, c0, c1 - c0)?
                    .mean_keepdim(2)?
                    .mean_keepdim(3)?,
            );
        }
        rows.push(Tensor::cat(&cells, 3)?);
    }
    Ok(Tensor::cat(&rows, 2)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    #[test]
    fn conv_out_matches_hand_values() {
        assert_eq!(conv_out(224, 7, 2, 3, 1), Some(112));
        assert_eq!(conv_out(112, 3, 2, 1, 1), Some(56));
        assert_eq!(conv_out(7, 2, 2, 0, 1), Some(3));
        assert_eq!(conv_out(1, 3, 1, 0, 1), None);
    }

    #[test]
    fn adaptive_pool_averages_the_pytorch_windows() -> Result<()> {
        // H = 5 → 3 outputs: windows rows [0,2), [1,4), [3,5); W = 1 → 1.
        let x = Tensor::new(&[0f32, 1., 2., 3., 4.], &Device::Cpu)?.reshape((1, 1, 5, 1))?;
        let y = adaptive_avg_pool2d(&x, 3, 1)?;
        let got: Vec<f32> = y.i((0, 0, .., 0))?.to_vec1()?;
        assert_eq!(got, vec![0.5, 2.0, 3.5]);
        Ok(())
    }
}
