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

fn clamp(x: &Tensor, max: Option<f64>) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        return Ok(x.contiguous()?.apply_op1(Clamp { max })?);
    }
    generic_clamp(x, max)
}

/// The same maths off the CPU (and for other dtypes), from candle primitives. Not candle's
/// `relu`: on CUDA it is `fmaxf(x, 0)`, which turns NaN into 0 (hiding a diverged run from the
/// trainer's NaN stop), and its derivative at 0 is 1. Here `y = x · 1[x > 0]` (· `1[x < max]`,
/// plus `max · 1[x ≥ max]`): NaN stays NaN (`NaN · 0`), and the mask, a comparison, carries no
/// gradient, so the derivative is the mask itself: 0 at the kinks, as on the CPU and in PyTorch.
fn generic_clamp(x: &Tensor, max: Option<f64>) -> Result<Tensor> {
    let zeros = x.zeros_like()?;
    let positive = x.gt(&zeros)?.to_dtype(x.dtype())?;
    Ok(match max {
        None => x.mul(&positive)?,
        Some(m) => {
            let cap = (zeros + m)?;
            let below = x.lt(&cap)?.to_dtype(x.dtype())?;
            let at_cap = x.ge(&cap)?.to_dtype(x.dtype())?;
            (x.mul(&positive.mul(&below)?)? + (at_cap * m)?)?
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_generic_path_keeps_nan_and_has_zero_derivative_at_the_kinks() {
        use candle_core::{Device, Var};
        // The path CUDA takes, run on the CPU by calling it directly.
        let x = Var::new(&[-1.0f64, 0.0, 0.5, 6.0, 7.0, f64::NAN], &Device::Cpu).unwrap();
        for (max, want, dwant) in [
            (None, [0.0, 0.0, 0.5, 6.0, 7.0], [0.0, 0.0, 1.0, 1.0, 1.0]),
            (
                Some(6.0),
                [0.0, 0.0, 0.5, 6.0, 6.0],
                [0.0, 0.0, 1.0, 0.0, 0.0],
            ),
        ] {
            let y = super::generic_clamp(x.as_tensor(), max).unwrap();
            let v = y.to_vec1::<f64>().unwrap();
            assert_eq!(&v[..5], &want, "max {max:?}");
            assert!(v[5].is_nan(), "NaN must pass through: {v:?}");
            let g = y.sum_all().unwrap().backward().unwrap();
            let d = g.get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
            assert_eq!(&d[..5], &dwant, "max {max:?}");
        }
    }
}
