//! Convolution and transposed convolution, laid out for gemm on the CPU.
//!
//! candle 0.11.1 computes a convolution's input gradient with a direct-loop transposed
//! convolution, 10-20x slower than a gemm formulation, which made a training step 8x slower than
//! PyTorch (issue 3). Here, on the CPU with f32/f64, the forward pass and both gradients are
//! gemms over patches (see `cpu`: read in place from a padded channels-last image for dense
//! stride-1 kernels, an explicit im2col otherwise), recorded as candle custom ops whose backward
//! passes are each other (see `ops`). Other devices and dtypes dispatch to candle's own convolutions.
//!
//! Depends on `kernel` and `channel` (the bias and its gradient); not on `norm` or `fused`.

pub(crate) mod cpu;
mod gemm;
pub(crate) mod geometry;
pub(crate) mod implicit;
mod layers;
pub(crate) mod ops;
mod patches;
pub(crate) mod scratch;
mod transpose;

use candle_core::{DType, Tensor};

use crate::{Error, Result};
use geometry::Geometry;
use ops::{ConvBiasOp, ConvOp, Kind};

pub use layers::{conv2d_layer, conv_transpose2d_layer, Conv2d, ConvTranspose2d};

/// Hyper-parameters of a 2-D convolution (PyTorch `nn.Conv2d` semantics, square values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Dilation in both directions.
    pub dilation: usize,
    /// Number of groups (`groups == in_channels` is depthwise).
    pub groups: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// Hyper-parameters of a 2-D transposed convolution (PyTorch `nn.ConvTranspose2d` semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose2dConfig {
    /// Stride in both directions.
    pub stride: usize,
    /// Padding removed from every side of the output.
    pub padding: usize,
    /// Extra rows/columns added to one side of the output.
    pub output_padding: usize,
    /// Dilation in both directions.
    pub dilation: usize,
    /// Number of groups.
    pub groups: usize,
}

impl Default for ConvTranspose2dConfig {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            output_padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// Whether the gemm kernels of this module handle these operands (CPU, both f32 or both f64).
pub(crate) fn runs_on_cpu_kernels(x: &Tensor, weight: &Tensor) -> bool {
    x.device().is_cpu()
        && x.dtype() == weight.dtype()
        && matches!(x.dtype(), DType::F32 | DType::F64)
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => crate::channel::add_channel_bias(&y, b),
        None => Ok(y),
    }
}

/// `y = conv2d(x, weight) + bias` (PyTorch `F.conv2d`): `x: (N, C_in, H, W)`,
/// `weight: (C_out, C_in/groups, kH, kW)`, `bias: (C_out)`, `y: (N, C_out, H_out, W_out)` with
/// `H_out = ⌊(H + 2·padding − dilation·(kH − 1) − 1) / stride⌋ + 1`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
) -> Result<Tensor> {
    let geometry = Geometry::new(
        "conv2d",
        x.dims(),
        weight.dims(),
        cfg.stride,
        cfg.padding,
        cfg.dilation,
        cfg.groups,
    )?;
    if !runs_on_cpu_kernels(x, weight) {
        let x = pad_to_windows(x, &geometry)?;
        let y = x.conv2d(weight, 0, cfg.stride, cfg.dilation, cfg.groups)?;
        return add_bias(y, bias);
    }
    match bias {
        Some(b) if b.dtype() == x.dtype() && b.dims() == [geometry.c_out] => {
            Ok(ConvBiasOp { geometry }.apply(x, weight, b)?)
        }
        _ => {
            let y = ConvOp {
                kind: Kind::Forward,
                geometry,
            }
            .apply(x, weight)?;
            add_bias(y, bias)
        }
    }
}

/// The input zero-padded (or cropped) to exactly the extent the windows of a strided convolution
/// read, so it can run with padding 0. candle 0.11.1's conv2d backward derives the input
/// gradient's padding from the height alone, so an input whose height and width leave different
/// remainders under the stride fails its backward pass ("shape mismatch in add"); on this exact
/// extent both leave none. `pad_with_zeros` and `narrow` have exact backward passes, so the
/// cropped-off pixels get their true gradient, 0.
fn pad_to_windows(x: &Tensor, g: &geometry::Geometry) -> Result<Tensor> {
    let mut x = x.clone();
    for (dim, size, out, k) in [(2, g.h, g.ho, g.kh), (3, g.w, g.wo, g.kw)] {
        let extent = (out - 1) * g.stride + g.dilation * (k - 1) + 1;
        let keep = extent.saturating_sub(g.padding).min(size);
        let after = extent - g.padding.min(extent) - keep;
        if keep < size {
            x = x.narrow(dim, 0, keep)?;
        }
        x = x.pad_with_zeros(dim, g.padding.min(extent), after)?;
    }
    Ok(x)
}

/// Transposed convolution (PyTorch `F.conv_transpose2d`), the input gradient of a convolution:
/// `x: (N, C_in, H, W)`, `weight: (C_in, C_out/groups, kH, kW)`, `bias: (C_out)`, output
/// `(N, C_out, H_out, W_out)` with
/// `H_out = (H − 1)·stride − 2·padding + dilation·(kH − 1) + output_padding + 1`.
pub fn conv_transpose2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: ConvTranspose2dConfig,
) -> Result<Tensor> {
    let op = "conv_transpose2d";
    let (&[n, c_in, h, w], &[w_in, og, kh, kw]) = (x.dims(), weight.dims()) else {
        return Err(Error::Shape {
            op,
            expected: format!(
                "input (N, C, H, W) and weight (C_in, C_out/groups, kH, kW), weight is {:?}",
                weight.dims()
            ),
            got: x.dims().to_vec(),
        });
    };
    if w_in != c_in {
        return Err(Error::Shape {
            op,
            expected: format!("weight (C_in = {c_in}, C_out/groups, kH, kW)"),
            got: weight.dims().to_vec(),
        });
    }
    if cfg.stride == 0 || cfg.dilation == 0 || cfg.output_padding >= cfg.stride.max(cfg.dilation) {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "stride ({}) and dilation ({}) must be positive and output_padding ({}) smaller than one of them",
                cfg.stride, cfg.dilation, cfg.output_padding
            ),
        });
    }
    let full = |len: usize, k: usize| {
        (len.max(1) - 1) * cfg.stride + cfg.dilation * (k.max(1) - 1) + cfg.output_padding + 1
    };
    let (full_h, full_w) = (full(h, kh), full(w, kw));
    if h == 0 || w == 0 || full_h <= 2 * cfg.padding || full_w <= 2 * cfg.padding {
        return Err(Error::Shape {
            op,
            expected: format!(
                "an input whose output stays non-empty after removing padding {}",
                cfg.padding
            ),
            got: x.dims().to_vec(),
        });
    }
    let out_dims = [
        n,
        og * cfg.groups,
        full_h - 2 * cfg.padding,
        full_w - 2 * cfg.padding,
    ];
    // The convolution whose input gradient this is: input `out_dims`, output `x`.
    let geometry = Geometry::new(
        op,
        &out_dims,
        weight.dims(),
        cfg.stride,
        cfg.padding,
        cfg.dilation,
        cfg.groups,
    )?;
    if (geometry.ho, geometry.wo) != (h, w) {
        return Err(Error::InvalidArgument {
            op,
            message: format!("output {out_dims:?} does not map back onto the input {h}x{w}; check output_padding"),
        });
    }
    let y = if runs_on_cpu_kernels(x, weight) {
        ConvOp {
            kind: Kind::InputGrad,
            geometry,
        }
        .apply(x, weight)?
    } else if cfg.groups == 1 {
        x.conv_transpose2d(
            weight,
            cfg.padding,
            cfg.output_padding,
            cfg.stride,
            cfg.dilation,
        )?
    } else {
        return Err(Error::InvalidArgument {
            op,
            message: format!("groups = {} is only supported on the CPU with f32/f64 (candle has no grouped transposed convolution)", cfg.groups),
        });
    };
    add_bias(y, bias)
}

#[cfg(test)]
mod window_padding_tests {
    use candle_core::{DType, Device, Tensor, Var};

    use super::*;

    #[test]
    fn candle_conv_backward_works_on_inputs_of_mixed_parity_once_padded_to_the_windows() {
        // The path taken off the CPU, on the CPU: candle's conv2d on the input padded to the
        // windows' extent. Values and gradient must equal our kernels' everywhere, cropped-off
        // pixels included (0 there). Without the padding candle's backward fails on 7×6.
        let dev = Device::Cpu;
        for (h, w_, k, stride, padding) in [
            (7, 6, 3, 2, 1),
            (6, 7, 3, 2, 1),
            (9, 8, 1, 2, 0),
            (8, 5, 3, 3, 2),
            (6, 6, 3, 1, 1),
        ] {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 2, h, w_), &dev).unwrap()).unwrap();
            let w = Tensor::randn(0f32, 1.0, (3, 2, k, k), &dev).unwrap();
            let cfg = Conv2dConfig {
                stride,
                padding,
                ..Conv2dConfig::default()
            };
            let g = geometry::Geometry::new("conv2d", x.dims(), w.dims(), stride, padding, 1, 1)
                .unwrap();
            let padded = pad_to_windows(x.as_tensor(), &g).unwrap();
            let candle = padded.conv2d(&w, 0, stride, 1, 1).unwrap();
            let ours = conv2d(x.as_tensor(), &w, None, cfg).unwrap();
            assert_eq!(candle.dims(), ours.dims());
            let max_diff = |a: &Tensor, b: &Tensor| {
                (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            assert!(max_diff(&candle, &ours) < 1e-4, "{h}x{w_} forward");
            let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
            let grad_of = |y: &Tensor| {
                let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                g.get(x.as_tensor()).unwrap().to_dtype(DType::F32).unwrap()
            };
            assert!(
                max_diff(&grad_of(&candle), &grad_of(&ours)) < 1e-4,
                "{h}x{w_} gradient"
            );
        }
    }
}
