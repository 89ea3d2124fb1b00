//! Hand-written CPU kernels (f32, f64) for per-channel arithmetic on an `(A, C, B)` view: the
//! affine step of every norm, a convolution's bias and its gradient. Sums accumulate in f64.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::kernel::{
    run_binary_float, run_ternary_float, run_unary_float, BinaryFloatKernel, TernaryFloatKernel,
    UnaryFloatKernel,
};
use crate::reduce::{lane_dot_and_sum, lane_sum};

/// `y = x·w_c + b_c` for `x` viewed as `(A, C, B)`: the affine step of every norm. candle's
/// broadcast multiply/add record a backward whose reductions over the broadcast dimensions are
/// slow strided loops (they dominated a UNet step's batch-norm backward); here the weight and
/// bias gradients are one pass per channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChannelAffine {
    pub a: usize,
    pub c: usize,
    pub b: usize,
}

impl ChannelAffine {
    fn forward<T: WithDType>(&self, x: &[T], w: &[T], bias: &[T]) -> Vec<T> {
        let mut y = vec![T::zero(); x.len()];
        if self.b == 0 {
            return y;
        }
        y.par_chunks_mut(self.b)
            .zip(x.par_chunks(self.b))
            .enumerate()
            .for_each(|(block, (yb, xb))| {
                let c = block % self.c;
                let (wc, bc) = (w[c], bias[c]);
                for (y, x) in yb.iter_mut().zip(xb) {
                    *y = *x * wc + bc;
                }
            });
        y
    }
}

impl TernaryFloatKernel for ChannelAffine {
    fn run<T: WithDType>(&self, x: &[T], w: &[T], bias: &[T]) -> Vec<T> {
        self.forward(x, w, bias)
    }
}

impl candle_core::CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "crosskd-channel-affine"
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
        let y = run_ternary_float(self.name(), self, (s1, l1), (s2, l2), (s3, l3))?;
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(w, &ScaleByChannel(*self))?;
        let sums = grad.apply_op2_no_bwd(&x.contiguous()?, &AffineParamGrads(*self))?;
        Ok((Some(dx), Some(sums.get(0)?), Some(sums.get(1)?)))
    }
}

/// `g·w_c` (the input gradient of [`ChannelAffine`]).
struct ScaleByChannel(ChannelAffine);

impl BinaryFloatKernel for ScaleByChannel {
    fn run<T: WithDType>(&self, g: &[T], w: &[T]) -> Vec<T> {
        let zeros = vec![T::zero(); w.len()];
        self.0.forward(g, w, &zeros)
    }
}

impl CustomOp2 for ScaleByChannel {
    fn name(&self) -> &'static str {
        "crosskd-channel-affine-dx"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dx = run_binary_float(self.name(), self, (s1, l1), (s2, l2))?;
        Ok((dx, l1.shape().clone()))
    }
}

/// `(Σ g·x, Σ g)` per channel, as a `(2, C)` tensor (weight and bias gradients of
/// [`ChannelAffine`]), accumulated in f64.
struct AffineParamGrads(ChannelAffine);

impl AffineParamGrads {
    fn sums<T: WithDType>(&self, g: &[T], x: &[T]) -> Vec<T> {
        let s = self.0;
        let per_channel: Vec<(f64, f64)> = (0..s.c)
            .into_par_iter()
            .map(|c| {
                let (mut gx, mut gs) = (0.0, 0.0);
                for a in 0..s.a {
                    let range = (a * s.c + c) * s.b..(a * s.c + c + 1) * s.b;
                    let (dot, sum) = lane_dot_and_sum(&g[range.clone()], &x[range], |v| v);
                    gx += dot;
                    gs += sum;
                }
                (gx, gs)
            })
            .collect();
        per_channel
            .iter()
            .map(|p| T::from_f64(p.0))
            .chain(per_channel.iter().map(|p| T::from_f64(p.1)))
            .collect()
    }
}

impl BinaryFloatKernel for AffineParamGrads {
    fn run<T: WithDType>(&self, g: &[T], x: &[T]) -> Vec<T> {
        self.sums(g, x)
    }
}

impl CustomOp2 for AffineParamGrads {
    fn name(&self) -> &'static str {
        "crosskd-channel-affine-dparams"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let sums = run_binary_float(self.name(), self, (s1, l1), (s2, l2))?;
        Ok((sums, Shape::from((2, self.0.c))))
    }
}

/// `y = x + b_c` for `x` viewed as `(A, C, B)`: a convolution's bias. candle's broadcast add
/// records a backward whose reduction over `A` and `B` is a slow strided loop (about a tenth of a
/// U-Net training step in a perf profile of `cargo xtask bench train-step`); here the bias
/// gradient is one pass per channel ([`ChannelSum`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct ChannelBias(pub ChannelAffine);

impl ChannelBias {
    fn forward<T: WithDType>(&self, x: &[T], bias: &[T]) -> Vec<T> {
        let b = self.0.b.max(1);
        let mut y = x.to_vec();
        y.par_chunks_mut(b).enumerate().for_each(|(block, yb)| {
            let bc = bias[block % self.0.c];
            for y in yb {
                *y += bc;
            }
        });
        y
    }
}

impl BinaryFloatKernel for ChannelBias {
    fn run<T: WithDType>(&self, x: &[T], bias: &[T]) -> Vec<T> {
        self.forward(x, bias)
    }
}

impl CustomOp2 for ChannelBias {
    fn name(&self) -> &'static str {
        "crosskd-channel-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = run_binary_float(self.name(), self, (s1, l1), (s2, l2))?;
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let db = super::channel_sums(grad)?;
        Ok((Some(grad.clone()), Some(db)))
    }
}

/// `Σ_{a,b} x[a, c, b]` per channel `c`, accumulated in f64; the bias gradient of
/// [`ChannelBias`]. Like the other backward kernels here it records no backward of its own (candle
/// detaches gradients, so nothing differentiates through them).
#[derive(Debug, Clone, Copy)]
pub(super) struct ChannelSum(pub ChannelAffine);

impl ChannelSum {
    fn sums<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        let s = self.0;
        (0..s.c)
            .into_par_iter()
            .map(|c| {
                let mut total = 0.0;
                for a in 0..s.a {
                    let start = (a * s.c + c) * s.b;
                    total += lane_sum(&x[start..start + s.b], |v| v);
                }
                T::from_f64(total)
            })
            .collect()
    }
}

impl UnaryFloatKernel for ChannelSum {
    fn run<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        self.sums(x)
    }
}

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "crosskd-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let sums = run_unary_float(self.name(), self, (s, l))?;
        Ok((sums, Shape::from(self.0.c)))
    }
}
