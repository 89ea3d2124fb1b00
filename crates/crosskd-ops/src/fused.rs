//! Convolution, training-mode batch norm and ReLU as one op — the conv-BN-ReLU block of every
//! U-Net and ResNet student.
//!
//! As three ops, candle's graph holds the convolution's output `z` as a node of its own, and the
//! backward pass allocates, zeroes and adds a gradient tensor for it (a full-size write, two
//! full-size reads and a write per block). Fused, `z` is kept inside the op for the backward pass and its gradient `dz` is
//! handed straight from the batch-norm backward to the convolution's two gradients. The maths is
//! unchanged: `y = relu(bn(conv(x, w) + b))` with batch statistics, the same kernels as the
//! separate ops (`conv::cpu`, `norm::cpu::BatchNormAffine`), so results match them exactly.
//!
//! Depends on the kernels of `conv` and `norm` (and `pool`, `resize` for the up-sampled input);
//! the layer methods that choose this op live above it, in the crate's `layers` module.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Device, Layout, Shape, Tensor, WithDType};

use crate::conv::cpu::conv_forward;
use crate::conv::geometry::Geometry;
use crate::conv::implicit;
use crate::conv::ops::{dispatch_conv_ternary, run_conv_ternary, ConvOp, ConvTernaryKernel, Kind};
use crate::conv::scratch::WithScratch;
use crate::conv::{conv2d, runs_on_cpu_kernels, Conv2dConfig};
use crate::norm::cpu::{BatchNormAffine, Standardize, Stats};
use crate::norm::{batch_norm_relu_train, stats_tensors};
use crate::{Error, Result};

/// `relu(batch_norm_train(conv2d(x, weight) + bias))` with batch statistics (PyTorch
/// `relu(bn(conv(x)))` in training mode): `x: (N, C_in, H, W)`, `conv_weight` and `conv_bias` as
/// in [`conv2d`], `norm_weight`, `norm_bias: (C_out)` the batch norm's affine parameters.
///
/// Returns `(y, μ, s²)` like [`crate::norm::batch_norm_relu_train`]: the statistics of
/// `conv2d(x, weight) + bias` (detached, `s²` unbiased, for the running averages). On the CPU with
/// f32/f64 operands of one dtype the three run as one op; otherwise as the separate ops.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_batch_norm_relu_train(
    x: &Tensor,
    conv_weight: &Tensor,
    conv_bias: Option<&Tensor>,
    norm_weight: &Tensor,
    norm_bias: &Tensor,
    cfg: Conv2dConfig,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let inputs = [x];
    let params = (conv_bias, norm_weight, norm_bias);
    cat_conv2d_batch_norm_relu_train(&inputs, conv_weight, params, cfg, eps)
}

/// [`conv2d_batch_norm_relu_train`] of the channel concatenation `cat(inputs, 1)` (a U-Net
/// decoder's skip connection), with `params = (conv bias, norm weight, norm bias)`. On the fused
/// path with two inputs and a dense stride-1 kernel the concatenation is never built: the op pads
/// both inputs into its channels-last image directly, and hands each its slice of the input
/// gradient; a concatenation would copy both forward and give candle one more full-size gradient
/// to allocate, zero and add. Otherwise the inputs are concatenated first.
pub fn cat_conv2d_batch_norm_relu_train(
    inputs: &[&Tensor],
    conv_weight: &Tensor,
    (conv_bias, norm_weight, norm_bias): (Option<&Tensor>, &Tensor, &Tensor),
    cfg: Conv2dConfig,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "conv2d_batch_norm_relu_train";
    let x_dims = concatenated_dims(op, inputs)?;
    let geometry = Geometry::new(
        op,
        &x_dims,
        conv_weight.dims(),
        cfg.stride,
        cfg.padding,
        cfg.dilation,
        cfg.groups,
    )?;
    let c = geometry.c_out;
    let params: Vec<&Tensor> = conv_bias
        .into_iter()
        .chain([norm_weight, norm_bias])
        .collect();
    for (p, name) in params.iter().zip(
        conv_bias
            .map(|_| "conv bias")
            .into_iter()
            .chain(["norm weight", "norm bias"]),
    ) {
        if p.dims() != [c] {
            return Err(Error::Shape {
                op,
                expected: format!("{name} of shape ({c})"),
                got: p.dims().to_vec(),
            });
        }
    }
    let m = geometry.n * geometry.p_len();
    let x = inputs[0];
    let fused = runs_on_cpu_kernels(x, conv_weight)
        && params.iter().chain(inputs).all(|p| p.dtype() == x.dtype())
        && m > 1;
    if !fused {
        let z = conv2d(&Tensor::cat(inputs, 1)?, conv_weight, conv_bias, cfg)?;
        return batch_norm_relu_train(&z, Some(norm_weight), Some(norm_bias), eps);
    }
    let (op, stats) = ConvBatchNormRelu::new(geometry, conv_bias.is_some(), eps);
    let packed = Tensor::cat(&params, 0)?;
    let y = match inputs {
        [a, _] if implicit::supports(&geometry) => {
            let theta = Tensor::cat(&[&conv_weight.flatten_all()?, &packed], 0)?;
            let split = a.dim(1)?;
            PartsConvBatchNormRelu {
                op,
                split,
                scale: 1,
            }
            .apply(inputs, &theta)?
        }
        _ => Tensor::cat(inputs, 1)?.contiguous()?.apply_op3(
            &conv_weight.contiguous()?,
            &packed,
            op,
        )?,
    };
    with_statistics(y, &stats, c, x, m)
}

/// The shape of `cat(inputs, 1)` for NCHW inputs that agree in N, H and W.
fn concatenated_dims(op: &'static str, inputs: &[&Tensor]) -> Result<[usize; 4]> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.dims()).collect();
    match shapes.first() {
        Some(&&[n, _, h, w])
            if shapes
                .iter()
                .all(|d| d.len() == 4 && d[0] == n && d[2] == h && d[3] == w) =>
        {
            Ok([n, shapes.iter().map(|d| d[1]).sum(), h, w])
        }
        _ => Err(Error::Shape {
            op,
            expected: "one or more inputs (N, C_i, H, W) with the same N, H and W".into(),
            got: shapes.iter().flat_map(|d| d.iter().copied()).collect(),
        }),
    }
}

/// The fused op on `(x, conv weight, [conv bias ‖] norm weight ‖ norm bias)`.
#[derive(Debug, Clone)]
struct ConvBatchNormRelu {
    geometry: Geometry,
    has_bias: bool,
    norm: BatchNormAffine,
    /// The convolution's output `z` (bias included), left by the forward pass for the backward
    /// pass.
    conv_out: Arc<Mutex<Option<Tensor>>>,
}

/// `(y, μ, s²)` from the fused op's output and the statistics its forward pass left (`m` values
/// per channel; `s²` unbiased, as PyTorch puts it into `running_var`).
fn with_statistics(
    y: Tensor,
    stats: &Mutex<Stats>,
    c: usize,
    x: &Tensor,
    m: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (mean, var) = stats_tensors(stats, c, x)?;
    let unbiased = var.affine(m as f64 / (m - 1) as f64, 0.0)?;
    Ok((y, mean, unbiased))
}

impl ConvBatchNormRelu {
    /// A fresh op for `geometry`, with the statistics slot its forward pass fills.
    fn new(geometry: Geometry, has_bias: bool, eps: f64) -> (Self, Arc<Mutex<Stats>>) {
        let stats = Arc::new(Mutex::new(Stats::default()));
        let op = Self {
            geometry,
            has_bias,
            norm: BatchNormAffine {
                shape: Standardize {
                    a: geometry.n,
                    c: geometry.c_out,
                    b: geometry.p_len(),
                    eps,
                    stats: stats.clone(),
                },
                relu: true,
            },
            conv_out: Arc::new(Mutex::new(None)),
        };
        (op, stats)
    }

    /// `y` on contiguous slices for the channel concatenation of the NCHW batches `parts`
    /// (`(data, channels)`), each nearest-upsampled by `scale` (more than one part or a scale
    /// above 1 only for geometries `implicit::supports`); keeps `z` for the backward pass.
    fn run_parts<T: WithScratch + WithDType>(
        &self,
        parts: &[(&[T], usize)],
        scale: usize,
        w: &[T],
        params: &[T],
    ) -> candle_core::Result<Vec<T>> {
        let c = self.geometry.c_out;
        let (bias, affine) = if self.has_bias {
            (Some(&params[..c]), &params[c..])
        } else {
            (None, params)
        };
        let z = match parts {
            [(x, _)] if scale == 1 => conv_forward(&self.geometry, x, w, bias),
            _ => implicit::forward_parts(&self.geometry, parts, scale, w, bias),
        };
        let y = self.norm.forward(&z, &affine[..c], &affine[c..]);
        self.keep(z)?;
        Ok(y)
    }

    fn keep<T: WithDType>(&self, z: Vec<T>) -> candle_core::Result<()> {
        let z = Tensor::from_vec(z, self.geometry.y_dims().to_vec(), &Device::Cpu)?;
        *self.conv_out.lock().unwrap_or_else(|e| e.into_inner()) = Some(z);
        Ok(())
    }

    /// The batch-norm half of the backward pass: `(z, dz, gradient of the packed parameters)`,
    /// the parameters `[conv bias ‖] norm weight ‖ norm bias` starting at `offset` in `packed`.
    fn norm_backward(
        &self,
        packed: &Tensor,
        offset: usize,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Vec<Tensor>)> {
        let z = self
            .conv_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(z) = z else {
            candle_core::bail!("crosskd conv-bn-relu: backward before forward");
        };
        let c = self.geometry.c_out;
        let first_affine = offset + if self.has_bias { c } else { 0 };
        let norm_weight = packed.narrow(0, first_affine, c)?;
        let (dz, d_norm_weight, d_norm_bias) = self.norm.backward(&z, &norm_weight, res, grad)?;
        let mut d_params = vec![d_norm_weight, d_norm_bias];
        if self.has_bias {
            // The bias shifts every value of its channel and the batch mean with them, so it
            // cancels: its gradient is exactly zero (PyTorch sums dz, which is zero up to
            // rounding).
            d_params.insert(0, d_params[0].zeros_like()?);
        }
        Ok((z, dz, d_params))
    }
}

impl ConvTernaryKernel for ConvBatchNormRelu {
    fn run<T: WithScratch + WithDType>(
        &self,
        x: &[T],
        w: &[T],
        params: &[T],
    ) -> candle_core::Result<Vec<T>> {
        self.run_parts(&[(x, self.geometry.c_in)], 1, w, params)
    }
}

impl CustomOp3 for ConvBatchNormRelu {
    fn name(&self) -> &'static str {
        "crosskd-conv2d-batch-norm-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let params = g.c_out * if self.has_bias { 3 } else { 2 };
        run_conv_ternary(self.name(), g, params, self, (s1, l1), (s2, l2), (s3, l3))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        params: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (z, dz, d_params) = self.norm_backward(params, 0, res, grad)?;
        let conv = ConvOp {
            kind: Kind::Forward,
            geometry: self.geometry,
        };
        let (dx, dw) = CustomOp2::bwd(&conv, x, w, &z, &dz)?;
        Ok((dx, dw, Some(Tensor::cat(&d_params, 0)?)))
    }
}

/// The fused op with its input given as parts: `(a, b, conv weight (flattened) ‖ [conv bias ‖]
/// norm weight ‖ norm bias)`. The convolution's input is `cat(a, b, 1)` when `split` (the channels
/// of `a`) is less than its channel count, otherwise `a` alone (`b` is then `a` again); the parts
/// are read nearest-upsampled by `scale`.
#[derive(Debug, Clone)]
struct PartsConvBatchNormRelu {
    op: ConvBatchNormRelu,
    split: usize,
    scale: usize,
}

impl PartsConvBatchNormRelu {
    fn is_pair(&self) -> bool {
        self.split < self.op.geometry.c_in
    }

    fn part_dims(&self) -> ([usize; 4], [usize; 4]) {
        let (g, s) = (&self.op.geometry, self.scale);
        let a = [g.n, self.split, g.h / s, g.w / s];
        let b = if self.is_pair() {
            [g.n, g.c_in - self.split, g.h / s, g.w / s]
        } else {
            a
        };
        (a, b)
    }

    fn weight_len(&self) -> usize {
        self.op.geometry.w_dims().iter().product()
    }

    /// The op on `inputs` (one or two), `theta` packed as the op expects.
    fn apply(self, inputs: &[&Tensor], theta: &Tensor) -> candle_core::Result<Tensor> {
        let a = inputs[0].contiguous()?;
        let b = match inputs {
            [_, b] => b.contiguous()?,
            _ => a.clone(),
        };
        a.apply_op3(&b, theta, self)
    }
}

impl ConvTernaryKernel for PartsConvBatchNormRelu {
    fn run<T: WithScratch + WithDType>(
        &self,
        a: &[T],
        b: &[T],
        theta: &[T],
    ) -> candle_core::Result<Vec<T>> {
        let pair = [(a, self.split), (b, self.op.geometry.c_in - self.split)];
        let parts = if self.is_pair() {
            &pair[..]
        } else {
            &pair[..1]
        };
        let (w, params) = theta.split_at(self.weight_len());
        self.op.run_parts(parts, self.scale, w, params)
    }
}

impl CustomOp3 for PartsConvBatchNormRelu {
    fn name(&self) -> &'static str {
        "crosskd-parts-conv2d-batch-norm-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (name, g) = (self.name(), &self.op.geometry);
        let (a_dims, b_dims) = self.part_dims();
        let theta_len = self.weight_len() + g.c_out * if self.op.has_bias { 3 } else { 2 };
        if l1.dims() != a_dims || l2.dims() != b_dims || l3.dims() != [theta_len] {
            candle_core::bail!(
                "{name}: expected operands of shapes {a_dims:?}, {b_dims:?} and [{theta_len}], got {:?}, {:?} and {:?}",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let y = dispatch_conv_ternary(name, self, (s1, l1), (s2, l2), (s3, l3))?;
        Ok((y, Shape::from(g.y_dims().to_vec())))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        theta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (g, w_len, s) = (self.op.geometry, self.weight_len(), self.scale);
        let (_, dz, d_params) = self.op.norm_backward(theta, w_len, res, grad)?;
        // One input gradient for all parts: summed over each `s × s` block for an up-sampled
        // input, then each part's channels.
        let b_tracks = self.is_pair() && b.track_op();
        let (da, db) = if a.track_op() || b_tracks {
            let w = theta.narrow(0, 0, w_len)?.reshape(g.w_dims().to_vec())?;
            let mut dx = ConvOp {
                kind: Kind::InputGrad,
                geometry: g,
            }
            .apply(&dz, &w)?;
            if s > 1 {
                dx = crate::pool::avg_pool2d(&dx, (s, s), (s, s), (0, 0), true)
                    .map_err(candle_core::Error::wrap)?
                    .affine((s * s) as f64, 0.0)?;
            }
            if self.is_pair() {
                let rest = g.c_in - self.split;
                (
                    a.track_op()
                        .then(|| dx.narrow(1, 0, self.split))
                        .transpose()?,
                    b_tracks
                        .then(|| dx.narrow(1, self.split, rest))
                        .transpose()?,
                )
            } else {
                (Some(dx), None)
            }
        } else {
            (None, None)
        };
        let weight_grad = PartsWeightGrad {
            geometry: g,
            split: self.split,
            scale: s,
        };
        let dw = dz.apply_op3_no_bwd(a, b, &weight_grad)?;
        let d_theta: Vec<Tensor> = std::iter::once(dw.flatten_all()?).chain(d_params).collect();
        Ok((da, db, Some(Tensor::cat(&d_theta, 0)?)))
    }
}

/// The weight gradient of a dense stride-1 convolution whose input is given as parts, from
/// `(dy, a, b)`: `cat(a, b, 1)` when `split` (the channels of `a`) is less than the input's,
/// otherwise `a` alone (`b` is then `a` again, to share the conv family's ternary dispatch); the
/// parts read nearest-upsampled by `scale`.
struct PartsWeightGrad {
    geometry: Geometry,
    split: usize,
    scale: usize,
}

impl ConvTernaryKernel for PartsWeightGrad {
    fn run<T: WithScratch + WithDType>(
        &self,
        dy: &[T],
        a: &[T],
        b: &[T],
    ) -> candle_core::Result<Vec<T>> {
        let (g, split) = (&self.geometry, self.split);
        let pair = [(a, split), (b, g.c_in - split)];
        let parts = if split < g.c_in {
            &pair[..]
        } else {
            &pair[..1]
        };
        Ok(implicit::weight_grad_parts(g, parts, self.scale, dy))
    }
}

impl CustomOp3 for PartsWeightGrad {
    fn name(&self) -> &'static str {
        "crosskd-conv2d-parts-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dw = dispatch_conv_ternary(self.name(), self, (s1, l1), (s2, l2), (s3, l3))?;
        Ok((dw, Shape::from(self.geometry.w_dims().to_vec())))
    }
}

/// `relu(batch_norm_train(conv2d(upsample_nearest2d(x, scale, scale), weight) + bias))` with
/// `params = (conv bias, norm weight, norm bias)`: a decoder's up-sampling followed by its
/// conv–BN–ReLU block. On the fused path with a dense stride-1 kernel the up-sampled image is never
/// built: the op reads `x` nearest-upsampled while padding it into its channels-last image, and
/// its input gradient is the `scale × scale` sum of the convolution's. (Built, the up-sampled
/// tensor was the largest node of the reference network's graph: written forward, a full-size
/// gradient allocated, zeroed and added backward.) Otherwise the separate ops run. Returns
/// `(y, μ, s²)` like [`conv2d_batch_norm_relu_train`].
pub fn upsample_conv2d_batch_norm_relu_train(
    x: &Tensor,
    scale: usize,
    conv_weight: &Tensor,
    (conv_bias, norm_weight, norm_bias): (Option<&Tensor>, &Tensor, &Tensor),
    cfg: Conv2dConfig,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "upsample_conv2d_batch_norm_relu_train";
    let &[n, c_in, h, w] = x.dims() else {
        return Err(Error::Shape {
            op,
            expected: "an input (N, C, H, W)".into(),
            got: x.dims().to_vec(),
        });
    };
    if scale == 0 {
        return Err(Error::InvalidArgument {
            op,
            message: "the up-sampling scale must be positive".into(),
        });
    }
    let up_dims = [n, c_in, h * scale, w * scale];
    let geometry = Geometry::new(
        op,
        &up_dims,
        conv_weight.dims(),
        cfg.stride,
        cfg.padding,
        cfg.dilation,
        cfg.groups,
    )?;
    let m = geometry.n * geometry.p_len();
    let params: Vec<&Tensor> = conv_bias
        .into_iter()
        .chain([norm_weight, norm_bias])
        .collect();
    let fused = runs_on_cpu_kernels(x, conv_weight)
        && params.iter().all(|p| p.dtype() == x.dtype())
        && implicit::supports(&geometry)
        && params.iter().all(|p| p.dims() == [geometry.c_out])
        && m > 1;
    if !fused {
        let up = crate::resize::upsample_nearest2d(x, scale, scale)?;
        let params = (conv_bias, norm_weight, norm_bias);
        return cat_conv2d_batch_norm_relu_train(&[&up], conv_weight, params, cfg, eps);
    }
    let c = geometry.c_out;
    let (op, stats) = ConvBatchNormRelu::new(geometry, conv_bias.is_some(), eps);
    let packed = Tensor::cat(&params, 0)?;
    let theta = Tensor::cat(&[&conv_weight.flatten_all()?, &packed], 0)?;
    let split = geometry.c_in;
    let y = PartsConvBatchNormRelu { op, split, scale }.apply(&[x], &theta)?;
    with_statistics(y, &stats, c, x, m)
}
