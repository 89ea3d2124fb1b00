//! The f32/f64 dispatch shared by the hand-written CPU kernels: each kernel is written once,
//! generic over the float type, and these functions unwrap candle's storages for it, requiring
//! contiguous operands of one dtype and naming the op in every error.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, WithDType};

/// The contiguous part of `data` that `layout` describes, or an error naming `op`.
pub(crate) fn contiguous<'a, T>(
    data: &'a [T],
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!(
            "{op}: expected a contiguous tensor, got strides {:?}",
            layout.stride()
        ),
    }
}

/// A kernel of one contiguous operand.
pub(crate) trait UnaryFloatKernel {
    fn run<T: WithDType>(&self, a: &[T]) -> Vec<T>;
}

/// A kernel of two contiguous operands of one dtype.
pub(crate) trait BinaryFloatKernel {
    fn run<T: WithDType>(&self, a: &[T], b: &[T]) -> Vec<T>;
}

/// A kernel of three contiguous operands of one dtype.
pub(crate) trait TernaryFloatKernel {
    fn run<T: WithDType>(&self, a: &[T], b: &[T], c: &[T]) -> Vec<T>;
}

/// Runs `kernel` on an f32 or f64 operand.
pub(crate) fn run_unary_float(
    name: &str,
    kernel: &impl UnaryFloatKernel,
    (s, l): (&CpuStorage, &Layout),
) -> candle_core::Result<CpuStorage> {
    Ok(match s {
        CpuStorage::F32(a) => CpuStorage::F32(kernel.run(contiguous(a, l, name)?)),
        CpuStorage::F64(a) => CpuStorage::F64(kernel.run(contiguous(a, l, name)?)),
        other => bail!(
            "{name}: expected an f32 or f64 tensor, got {:?}",
            other.dtype()
        ),
    })
}

/// Runs `kernel` on two f32 or two f64 operands.
pub(crate) fn run_binary_float(
    name: &str,
    kernel: &impl BinaryFloatKernel,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
) -> candle_core::Result<CpuStorage> {
    Ok(match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            CpuStorage::F32(kernel.run(contiguous(a, l1, name)?, contiguous(b, l2, name)?))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            CpuStorage::F64(kernel.run(contiguous(a, l1, name)?, contiguous(b, l2, name)?))
        }
        (a, b) => bail!(
            "{name}: expected matching f32/f64 tensors, got {:?} and {:?}",
            a.dtype(),
            b.dtype()
        ),
    })
}

/// Runs `kernel` on three f32 or three f64 operands.
pub(crate) fn run_ternary_float(
    name: &str,
    kernel: &impl TernaryFloatKernel,
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
            ))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => {
            CpuStorage::F64(kernel.run(
                contiguous(a, l1, name)?,
                contiguous(b, l2, name)?,
                contiguous(c, l3, name)?,
            ))
        }
        (a, b, c) => bail!(
            "{name}: expected matching f32/f64 tensors, got {:?}, {:?} and {:?}",
            a.dtype(),
            b.dtype(),
            c.dtype()
        ),
    })
}
