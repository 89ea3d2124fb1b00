//! ReLU and ReLU6 with one-pass kernels on the CPU.
//!
//! candle's `relu` backward builds `(x >= 0)` with a zeros tensor, a comparison, a dtype cast and
//! a multiply — four passes and three temporaries per activation, a visible share of a small
//! network's training step. Here (CPU, f32/f64) the forward pass is one clamp and the backward one
//! masked copy. The derivative at the kinks is 0, as in PyTorch (candle's `relu` gives 1 at 0).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::kernel::{run_binary_float, run_unary_float, BinaryFloatKernel, UnaryFloatKernel};
use crate::Result;

/// `max(x, 0)`.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    clamp(x, None)
}

/// `min(max(x, 0), 6)` (MobileNet's activation).
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    clamp(x, Some(6.0))
}

#[allow(clippy::disallowed_methods)] // candle's relu is correct, only slower: the fallback off the CPU
fn clamp(x: &Tensor, max: Option<f64>) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        return Ok(x.contiguous()?.apply_op1(Clamp { max })?);
    }
    let y = x.relu()?;
    Ok(match max {
        Some(m) => y.minimum(m)?,
        None => y,
    })
}

/// Elements per parallel chunk: large enough that rayon's overhead is negligible.
const CHUNK: usize = 1 << 14;

/// `clamp(x, 0, max)`.
#[derive(Debug, Clone, Copy)]
struct Clamp {
    max: Option<f64>,
}

impl Clamp {
    fn upper<T: WithDType>(&self) -> T {
        T::from_f64(self.max.unwrap_or(f64::INFINITY))
    }
}

impl UnaryFloatKernel for Clamp {
    fn run<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        let (zero, max) = (T::zero(), self.upper::<T>());
        let mut y = x.to_vec();
        y.par_chunks_mut(CHUNK).for_each(move |c| {
            // Written so that NaN fails both tests and passes through, as in PyTorch: a NaN
            // activation must reach the loss, where training stops on it.
            // Selects, not branches, so the loop vectorises.
            for v in c {
                #[allow(clippy::eq_op)] // `v != v` is the NaN test
                let keep = (*v > zero) | (*v != *v);
                let low = if keep { *v } else { zero };
                *v = if low > max { max } else { low };
            }
        });
        y
    }
}

impl CustomOp1 for Clamp {
    fn name(&self) -> &'static str {
        "crosskd-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((
            run_unary_float(self.name(), self, (s, l))?,
            l.shape().clone(),
        ))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dx = grad
            .contiguous()?
            .apply_op2_no_bwd(&y.contiguous()?, &ClampBackward(*self))?;
        Ok(Some(dx))
    }
}

/// `g` where the clamp's output lies strictly inside `(0, max)`, else 0.
struct ClampBackward(Clamp);

impl BinaryFloatKernel for ClampBackward {
    fn run<T: WithDType>(&self, g: &[T], y: &[T]) -> Vec<T> {
        let (zero, max) = (T::zero(), self.0.upper::<T>());
        let mut dx = g.to_vec();
        dx.par_chunks_mut(CHUNK)
            .zip(y.par_chunks(CHUNK))
            // `move`: the bounds are copied into the closure; borrowed, the compiler must assume
            // the writes to `d` could change them and would not vectorise (4× slower).
            .for_each(move |(d, y)| {
                // A select, not a branch: the signs are random, and the select vectorises.
                for (d, y) in d.iter_mut().zip(y) {
                    let keep = (*y > zero) & (*y < max);
                    *d = if keep { *d } else { zero };
                }
            });
        dx
    }
}

impl CustomOp2 for ClampBackward {
    fn name(&self) -> &'static str {
        "crosskd-relu-backward"
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
