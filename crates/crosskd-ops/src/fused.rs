//! Convolution, training-mode batch norm and ReLU as one op — the conv-BN-ReLU block of every
//! U-Net and ResNet student.
//!
//! As three ops, candle's graph holds the convolution's output `z` as a node of its own, and the
//! backward pass allocates, zeroes and adds a gradient tensor for it (a full-size write, two
//! full-size reads and a write per block, ~8% of the reference training step of issue 3 for all
//! such nodes). Fused, `z` is kept inside the op for the backward pass and its gradient `dz` is
//! handed straight from the batch-norm backward to the convolution's two gradients. The maths is
//! unchanged: `y = relu(bn(conv(x, w) + b))` with batch statistics, the same kernels as the
//! separate ops (`conv::cpu`, `norm::cpu::BatchNormAffine`), so results match them exactly.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Device, Layout, Shape, Tensor, WithDType};

use crate::conv::cpu::conv_forward;
use crate::conv::geometry::Geometry;
use crate::conv::ops::{run_conv_ternary, ConvOp, ConvTernaryKernel, Kind};
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
    let op = "conv2d_batch_norm_relu_train";
    let geometry = Geometry::new(
        op,
        x.dims(),
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
    let fused = runs_on_cpu_kernels(x, conv_weight)
        && params.iter().all(|p| p.dtype() == x.dtype())
        && m > 1;
    if !fused {
        let z = conv2d(x, conv_weight, conv_bias, cfg)?;
        return batch_norm_relu_train(&z, Some(norm_weight), Some(norm_bias), eps);
    }
    let stats = Arc::new(Mutex::new(Stats::default()));
    let op = ConvBatchNormRelu {
        geometry,
        has_bias: conv_bias.is_some(),
        norm: BatchNormAffine {
            shape: Standardize {
                a: geometry.n,
                c,
                b: geometry.p_len(),
                eps,
                stats: stats.clone(),
            },
            relu: true,
        },
        conv_out: Arc::new(Mutex::new(None)),
    };
    let packed = Tensor::cat(&params, 0)?;
    let y = x
        .contiguous()?
        .apply_op3(&conv_weight.contiguous()?, &packed, op)?;
    let (mean, var) = stats_tensors(&stats, c, x)?;
    let unbiased = var.affine(m as f64 / (m - 1) as f64, 0.0)?;
    Ok((y, mean, unbiased))
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

impl ConvBatchNormRelu {
    /// `(y, z)` on contiguous slices.
    fn forward<T: WithScratch + WithDType>(
        &self,
        x: &[T],
        w: &[T],
        params: &[T],
    ) -> (Vec<T>, Vec<T>) {
        let c = self.geometry.c_out;
        let (bias, affine) = if self.has_bias {
            (Some(&params[..c]), &params[c..])
        } else {
            (None, params)
        };
        let z = conv_forward(&self.geometry, x, w, bias);
        let y = self.norm.forward(&z, &affine[..c], &affine[c..]);
        (y, z)
    }

    fn keep<T: WithDType>(&self, z: Vec<T>) -> candle_core::Result<()> {
        let z = Tensor::from_vec(z, self.geometry.y_dims().to_vec(), &Device::Cpu)?;
        *self.conv_out.lock().unwrap_or_else(|e| e.into_inner()) = Some(z);
        Ok(())
    }
}

impl ConvTernaryKernel for ConvBatchNormRelu {
    fn run<T: WithScratch + WithDType>(
        &self,
        x: &[T],
        w: &[T],
        params: &[T],
    ) -> candle_core::Result<Vec<T>> {
        let (y, z) = self.forward(x, w, params);
        self.keep(z)?;
        Ok(y)
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
        let z = self
            .conv_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(z) = z else {
            candle_core::bail!("{}: backward before forward", self.name());
        };
        let c = self.geometry.c_out;
        let first_affine = if self.has_bias { c } else { 0 };
        let norm_weight = params.narrow(0, first_affine, c)?;
        let (dz, d_norm_weight, d_norm_bias) = self.norm.backward(&z, &norm_weight, res, grad)?;
        let mut d_params = vec![d_norm_weight, d_norm_bias];
        if self.has_bias {
            // The bias shifts every value of its channel and the batch mean with them, so it
            // cancels: its gradient is exactly zero (PyTorch sums dz, which is zero up to
            // rounding).
            d_params.insert(0, d_params[0].zeros_like()?);
        }
        let conv = ConvOp {
            kind: Kind::Forward,
            geometry: self.geometry,
        };
        let (dx, dw) = CustomOp2::bwd(&conv, x, w, &z, &dz)?;
        Ok((dx, dw, Some(Tensor::cat(&d_params, 0)?)))
    }
}
