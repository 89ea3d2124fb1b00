//! Per-channel arithmetic on `(N, C, ...)` tensors: a convolution's bias, its gradient, and the
//! affine step `x·w_c + b_c` that every norm ends with.
//!
//! These sit below both `conv` and `norm` (each needs them, neither should import the other). On
//! the CPU (f32, f64) they run as hand-written kernels (`cpu.rs`) whose parameter gradients are one
//! pass per channel; elsewhere as candle broadcasts. Depends on `kernel` and `reduce` only.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

pub(crate) mod cpu;

/// Whether the hand-written CPU kernels apply (f32/f64 on the CPU).
pub(crate) fn use_cpu_kernel(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Checks that the per-channel parameter `name` of `op`, when given, has shape `(len)`.
pub(crate) fn check_affine(
    op: &'static str,
    name: &str,
    p: Option<&Tensor>,
    len: usize,
) -> Result<()> {
    if let Some(p) = p {
        if p.dims() != [len] {
            return Err(Error::Shape {
                op,
                expected: format!("{name} of shape ({len})"),
                got: p.dims().to_vec(),
            });
        }
    }
    Ok(())
}

/// `(N, C, rest)` of `x: (N, C, ...)`, `rest` the product of the remaining dimensions; an error
/// naming `op` for a rank below 2.
pub(crate) fn channels(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    if x.rank() < 2 {
        return Err(Error::Shape {
            op,
            expected: "an input of rank ≥ 2 (N, C, ...)".into(),
            got: x.dims().to_vec(),
        });
    }
    let n = x.dim(0)?;
    let c = x.dim(1)?;
    let rest = x.elem_count() / (n * c).max(1);
    Ok((n, c, rest))
}

/// `y = x + bias` with `bias: (C)` broadcast along dimension 1 of `x: (N, C, ...)` — a
/// convolution's or linear layer's bias. On the CPU (f32/f64) the bias gradient is one pass per
/// channel instead of candle's strided broadcast reduction.
pub fn add_channel_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (n, c, rest) = channels("add_channel_bias", x)?;
    check_affine("add_channel_bias", "bias", Some(bias), c)?;
    if use_cpu_kernel(x) && bias.dtype() == x.dtype() {
        let op = cpu::ChannelBias(cpu::ChannelAffine { a: n, c, b: rest });
        return Ok(x.contiguous()?.apply_op2(&bias.contiguous()?, op)?);
    }
    let mut shape = vec![1usize; x.rank()];
    shape[1] = c;
    Ok(x.broadcast_add(&bias.reshape(shape.as_slice())?)?)
}

/// `Σ` over every dimension but 1 of a CPU f32/f64 tensor `(N, C, ...)`: the bias gradient of a
/// convolution. Records no backward.
pub(crate) fn channel_sums(x: &Tensor) -> candle_core::Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 2 {
        candle_core::bail!("channel_sums: expected (N, C, ...), got {dims:?}");
    }
    let op = cpu::ChannelSum(cpu::ChannelAffine {
        a: dims[0],
        c: dims[1],
        b: dims[2..].iter().product(),
    });
    x.contiguous()?.apply_op1_no_bwd(&op)
}
