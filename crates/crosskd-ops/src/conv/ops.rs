//! The convolution as three candle custom ops whose backward passes are each other.
//!
//! With `⟨·,·⟩` the elementwise inner product and `conv` the convolution of a fixed geometry,
//! `⟨conv(x, w), dy⟩ = ⟨x, input_grad(dy, w)⟩ = ⟨w, weight_grad(x, dy)⟩`. Differentiating that
//! identity gives every backward pass in terms of the three ops, so gradients of any order work:
//! - `conv(x, w)`:          `dx = input_grad(g, w)`,  `dw = weight_grad(x, g)`;
//! - `input_grad(dy, w)`:   `d dy = conv(g, w)`,      `dw = weight_grad(g, dy)`;
//! - `weight_grad(x, dy)`:  `dx = input_grad(dy, g)`, `d dy = conv(x, g)`.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, WithDType};

use super::cpu;
use super::geometry::Geometry;
use super::scratch::WithScratch;
use crate::kernel::contiguous;

/// The three linear maps of one convolution geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `(x, w) -> y`.
    Forward,
    /// `(dy, w) -> dx`; the forward pass of the transposed convolution.
    InputGrad,
    /// `(x, dy) -> dw`.
    WeightGrad,
}

/// One of the three maps as a candle op.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvOp {
    pub kind: Kind,
    pub geometry: Geometry,
}

impl ConvOp {
    fn expected_dims(&self) -> ([usize; 4], [usize; 4], [usize; 4]) {
        let g = &self.geometry;
        match self.kind {
            Kind::Forward => (g.x_dims(), g.w_dims(), g.y_dims()),
            Kind::InputGrad => (g.y_dims(), g.w_dims(), g.x_dims()),
            Kind::WeightGrad => (g.x_dims(), g.y_dims(), g.w_dims()),
        }
    }

    fn run<T: WithScratch>(&self, a: &[T], b: &[T]) -> Vec<T> {
        let g = &self.geometry;
        match self.kind {
            Kind::Forward => cpu::conv_forward(g, a, b, None),
            Kind::InputGrad => cpu::conv_input_grad(g, a, b),
            Kind::WeightGrad => cpu::conv_weight_grad(g, a, b),
        }
    }

    /// Applies the op to two tensors (made contiguous first).
    pub fn apply(self, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        a.contiguous()?.apply_op2(&b.contiguous()?, self)
    }
}

impl CustomOp2 for ConvOp {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Forward => "crosskd-conv2d",
            Kind::InputGrad => "crosskd-conv2d-input-grad",
            Kind::WeightGrad => "crosskd-conv2d-weight-grad",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (d1, d2, out) = self.expected_dims();
        if l1.dims() != d1 || l2.dims() != d2 {
            candle_core::bail!(
                "{}: expected operands of shapes {d1:?} and {d2:?}, got {:?} and {:?}",
                self.name(),
                l1.dims(),
                l2.dims()
            );
        }
        let storage = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(self.run(
                contiguous(a, l1, self.name())?,
                contiguous(b, l2, self.name())?,
            )),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(self.run(
                contiguous(a, l1, self.name())?,
                contiguous(b, l2, self.name())?,
            )),
            _ => candle_core::bail!("{}: f32 or f64 operands of one dtype expected", self.name()),
        };
        Ok((storage, Shape::from(out.to_vec())))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Each gradient is a whole convolution: compute it only for an operand that tracks
        // gradients (not, say, a network's input image).
        let grad_of = |operand: &Tensor, kind, lhs: &Tensor, rhs: &Tensor| {
            operand
                .track_op()
                .then(|| {
                    ConvOp {
                        kind,
                        geometry: self.geometry,
                    }
                    .apply(lhs, rhs)
                })
                .transpose()
        };
        Ok(match self.kind {
            Kind::Forward => (
                grad_of(a, Kind::InputGrad, grad, b)?,
                grad_of(b, Kind::WeightGrad, a, grad)?,
            ),
            Kind::InputGrad => (
                grad_of(a, Kind::Forward, grad, b)?,
                grad_of(b, Kind::WeightGrad, grad, a)?,
            ),
            Kind::WeightGrad => (
                grad_of(a, Kind::InputGrad, b, grad)?,
                grad_of(b, Kind::Forward, a, grad)?,
            ),
        })
    }
}

/// A convolution with a bias, `conv(x, w) + b` (per output channel), as one op: the bias is
/// added while the output is written, and candle's graph has one node less to allocate a
/// gradient for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvBiasOp {
    pub geometry: Geometry,
}

impl ConvBiasOp {
    /// Applies the op (operands made contiguous first).
    pub fn apply(self, x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, self)
    }
}

/// A kernel on a convolution's input, its weight and a per-channel vector (a bias, or packed
/// per-channel parameters), for f32 and f64.
pub(crate) trait ConvTernaryKernel {
    fn run<T: WithScratch + WithDType>(
        &self,
        x: &[T],
        w: &[T],
        v: &[T],
    ) -> candle_core::Result<Vec<T>>;
}

/// Checks the operands of a `(x, w, v)` op of geometry `g` (`v` of length `v_len`) and runs
/// `kernel` on their dtype; the result has the convolution's output shape.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_conv_ternary(
    name: &str,
    g: &Geometry,
    v_len: usize,
    kernel: &impl ConvTernaryKernel,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    (s3, l3): (&CpuStorage, &Layout),
) -> candle_core::Result<(CpuStorage, Shape)> {
    if l1.dims() != g.x_dims() || l2.dims() != g.w_dims() || l3.dims() != [v_len] {
        candle_core::bail!(
            "{name}: expected operands of shapes {:?}, {:?} and [{v_len}], got {:?}, {:?} and {:?}",
            g.x_dims(),
            g.w_dims(),
            l1.dims(),
            l2.dims(),
            l3.dims()
        );
    }
    let storage = dispatch_conv_ternary(name, kernel, (s1, l1), (s2, l2), (s3, l3))?;
    Ok((storage, Shape::from(g.y_dims().to_vec())))
}

/// Runs `kernel` on three contiguous operands of one float dtype (f32 or f64).
pub(crate) fn dispatch_conv_ternary(
    name: &str,
    kernel: &impl ConvTernaryKernel,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    (s3, l3): (&CpuStorage, &Layout),
) -> candle_core::Result<CpuStorage> {
    Ok(match (s1, s2, s3) {
        (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => {
            CpuStorage::F32(kernel.run(
                contiguous(a, l1, name)?,
                contiguous(b, l2, name)?,
                contiguous(c, l3, name)?,
            )?)
        }
        (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => {
            CpuStorage::F64(kernel.run(
                contiguous(a, l1, name)?,
                contiguous(b, l2, name)?,
                contiguous(c, l3, name)?,
            )?)
        }
        _ => candle_core::bail!("{name}: f32 or f64 operands of one dtype expected"),
    })
}

impl ConvTernaryKernel for ConvBiasOp {
    fn run<T: WithScratch + WithDType>(
        &self,
        x: &[T],
        w: &[T],
        bias: &[T],
    ) -> candle_core::Result<Vec<T>> {
        Ok(cpu::conv_forward(&self.geometry, x, w, Some(bias)))
    }
}

impl candle_core::CustomOp3 for ConvBiasOp {
    fn name(&self) -> &'static str {
        "crosskd-conv2d-bias"
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
        run_conv_ternary(self.name(), g, g.c_out, self, (s1, l1), (s2, l2), (s3, l3))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let conv = ConvOp {
            kind: Kind::Forward,
            geometry: self.geometry,
        };
        let (dx, dw) = conv.bwd(x, w, res, grad)?;
        Ok((dx, dw, Some(crate::channel::channel_sums(grad)?)))
    }
}
