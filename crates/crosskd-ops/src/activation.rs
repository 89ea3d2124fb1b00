//! ReLU and ReLU6 with one-pass kernels on the CPU.
//!
//! candle's `relu` backward builds `(x >= 0)` with a zeros tensor, a comparison, a dtype cast and
//! a multiply — four passes and three temporaries per activation, a visible share of a small
//! network's training step. Here (CPU, f32/f64) the forward pass is one clamp and the backward one
//! masked copy. The derivative at the kinks is 0, as in PyTorch (candle's `relu` gives 1 at 0).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

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

/// The gradient of `relu` from its output `y`: `grad` where `y > 0`, else 0 (CPU, f32/f64).
pub(crate) fn relu_backward(grad: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    grad.contiguous()?
        .apply_op2_no_bwd(&y.contiguous()?, &ClampBackward(Clamp { max: None }))
}

/// Elements per parallel chunk: large enough that rayon's overhead is negligible.
const CHUNK: usize = 1 << 14;

/// `clamp(x, 0, max)`.
#[derive(Debug, Clone, Copy)]
struct Clamp {
    max: Option<f64>,
}

/// Applies `f` to every element of a contiguous f32/f64 storage into a new storage.
fn map_float(
    name: &str,
    s: &CpuStorage,
    l: &Layout,
    f32_fn: impl Fn(f32) -> f32 + Sync,
    f64_fn: impl Fn(f64) -> f64 + Sync,
) -> candle_core::Result<CpuStorage> {
    fn run<T: Copy + Send + Sync>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
        let mut y = x.to_vec();
        y.par_chunks_mut(CHUNK).for_each(|c| {
            for v in c {
                *v = f(*v);
            }
        });
        y
    }
    let Some((start, end)) = l.contiguous_offsets() else {
        bail!(
            "{name}: expected a contiguous tensor, got strides {:?}",
            l.stride()
        );
    };
    Ok(match s {
        CpuStorage::F32(x) => CpuStorage::F32(run(&x[start..end], f32_fn)),
        CpuStorage::F64(x) => CpuStorage::F64(run(&x[start..end], f64_fn)),
        other => bail!(
            "{name}: expected an f32/f64 tensor, got {:?}",
            other.dtype()
        ),
    })
}

impl CustomOp1 for Clamp {
    fn name(&self) -> &'static str {
        "crosskd-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let max = self.max.unwrap_or(f64::INFINITY);
        let max32 = max as f32;
        let y = map_float(
            self.name(),
            s,
            l,
            |v| v.max(0.0).min(max32),
            |v| v.max(0.0).min(max),
        )?;
        Ok((y, l.shape().clone()))
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
        fn masked<T: Copy + Send + Sync + PartialOrd + Default>(
            g: &[T],
            y: &[T],
            max: T,
        ) -> Vec<T> {
            let mut dx = g.to_vec();
            dx.par_chunks_mut(CHUNK)
                .zip(y.par_chunks(CHUNK))
                .for_each(|(d, y)| {
                    // A select, not a branch: the signs are random, and the select vectorises.
                    for (d, y) in d.iter_mut().zip(y) {
                        let keep = (*y > T::default()) & (*y < max);
                        *d = if keep { *d } else { T::default() };
                    }
                });
            dx
        }
        let name = self.name();
        let (Some((gs, ge)), Some((ys, ye))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            bail!("{name}: expected contiguous tensors");
        };
        let max = self.0.max.unwrap_or(f64::INFINITY);
        let dx = match (s1, s2) {
            (CpuStorage::F32(g), CpuStorage::F32(y)) => {
                CpuStorage::F32(masked(&g[gs..ge], &y[ys..ye], max as f32))
            }
            (CpuStorage::F64(g), CpuStorage::F64(y)) => {
                CpuStorage::F64(masked(&g[gs..ge], &y[ys..ye], max))
            }
            (a, b) => bail!(
                "{name}: expected matching f32/f64 tensors, got {:?} and {:?}",
                a.dtype(),
                b.dtype()
            ),
        };
        Ok((dx, l1.shape().clone()))
    }
}
