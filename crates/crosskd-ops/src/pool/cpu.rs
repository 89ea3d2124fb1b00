//! Hand-written CPU kernels (f32, f64) for max and average pooling, with their backward passes.
//! Each `(n, c)` plane is independent, so planes run in parallel.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::PoolGeometry;
use crate::kernel::{
    build_in_chunks, run_binary_float, run_unary_float, BinaryFloatKernel, UnaryFloatKernel,
};

impl PoolGeometry {
    fn out_shape(&self) -> Shape {
        Shape::from((self.n, self.c, self.out_h, self.out_w))
    }

    fn in_shape(&self) -> Shape {
        Shape::from((self.n, self.c, self.h, self.w))
    }

    /// The input rows (or columns) `start..end` inside the window of output position `o`.
    #[inline]
    fn span(o: usize, k: usize, s: usize, p: usize, len: usize) -> (usize, usize) {
        let first = (o * s) as isize - p as isize;
        let start = first.max(0) as usize;
        let end = ((first + k as isize).max(0) as usize).min(len);
        (start, end.max(start))
    }

    /// Flat in-plane index of the first maximal element of window `(oh, ow)`; NaN counts as
    /// maximal, as in PyTorch.
    #[inline]
    fn argmax<T: WithDType>(&self, plane: &[T], oh: usize, ow: usize) -> usize {
        let (r0, r1) = Self::span(oh, self.kernel.0, self.stride.0, self.padding.0, self.h);
        let (c0, c1) = Self::span(ow, self.kernel.1, self.stride.1, self.padding.1, self.w);
        let mut best = T::from_f64(f64::NEG_INFINITY);
        let mut best_idx = r0 * self.w + c0;
        for r in r0..r1 {
            for c in c0..c1 {
                let i = r * self.w + c;
                let v = plane[i];
                if v > best || v.to_f64().is_nan() {
                    best = v;
                    best_idx = i;
                    if v.to_f64().is_nan() {
                        return best_idx;
                    }
                }
            }
        }
        best_idx
    }
}

/// The first maximum of a window read in order as `(position, value)`, NaN counting as maximal
/// (the rule of [`PoolGeometry::argmax`]), as selects without branches: on real data the
/// comparisons are coin flips, and the branchy loop spent most of its time mispredicting.
#[inline(always)]
fn first_max<T: WithDType>(values: [T; 4]) -> (usize, T) {
    #[inline(always)]
    fn pick<T: WithDType>((at, best): (usize, T), i: usize, v: T) -> (usize, T) {
        #[allow(clippy::eq_op)] // `x != x` is the NaN test that works for every float dtype
        let take = (v > best) | ((v != v) & (best == best));
        (if take { i } else { at }, if take { v } else { best })
    }
    let best = pick((0, values[0]), 1, values[1]);
    let best = pick(best, 2, values[2]);
    pick(best, 3, values[3])
}

impl PoolGeometry {
    /// A 2×2 window with stride 2 and no padding, the U-Net's down-sampling: its kernels below
    /// skip the general window arithmetic (the general path cost 5 ms forward and 8 ms backward
    /// per pooling of the issue-3 reference network).
    fn is_2x2_tiling(&self) -> bool {
        self.kernel == (2, 2) && self.stride == (2, 2) && self.padding == (0, 0)
    }

    /// The four values of window `(oh, ow)` of a 2×2 tiling, in scan order, with their in-plane
    /// indices.
    #[inline(always)]
    fn window_2x2<T: WithDType>(&self, plane: &[T], oh: usize, ow: usize) -> ([T; 4], [usize; 4]) {
        let top = 2 * oh * self.w + 2 * ow;
        let idx = [top, top + 1, top + self.w, top + self.w + 1];
        (idx.map(|i| plane[i]), idx)
    }
}

/// Forward max pooling on the CPU.
pub(super) struct MaxPool {
    pub geo: PoolGeometry,
}

impl MaxPool {
    fn forward<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        let g = &self.geo;
        let (plane_in, plane_out) = (g.h * g.w, g.out_h * g.out_w);
        let mut out = vec![T::zero(); g.n * g.c * plane_out];
        out.par_chunks_mut(plane_out)
            .zip(x.par_chunks(plane_in))
            .for_each(|(o, plane)| {
                for oh in 0..g.out_h {
                    for ow in 0..g.out_w {
                        o[oh * g.out_w + ow] = if g.is_2x2_tiling() {
                            first_max(g.window_2x2(plane, oh, ow).0).1
                        } else {
                            plane[g.argmax(plane, oh, ow)]
                        };
                    }
                }
            });
        out
    }
}

impl UnaryFloatKernel for MaxPool {
    fn run<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        self.forward(x)
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "crosskd-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = run_unary_float(self.name(), self, (s, l))?;
        Ok((out, self.geo.out_shape()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dx = grad
            .contiguous()?
            .apply_op2_no_bwd(arg, &MaxPoolBackward { geo: self.geo })?;
        Ok(Some(dx))
    }
}

/// `dx` of max pooling from `(grad, x)`: each output's gradient is added to its window's first
/// maximum (recomputed from `x`).
struct MaxPoolBackward {
    geo: PoolGeometry,
}

impl MaxPoolBackward {
    fn backward<T: WithDType>(&self, grad: &[T], x: &[T]) -> Vec<T> {
        let g = &self.geo;
        let (plane_in, plane_out) = (g.h * g.w, g.out_h * g.out_w);
        build_in_chunks(x.len(), plane_in, T::zero(), |i, d| {
            let plane = &x[i * plane_in..(i + 1) * plane_in];
            let gp = &grad[i * plane_out..(i + 1) * plane_out];
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    let at = if g.is_2x2_tiling() {
                        let (values, idx) = g.window_2x2(plane, oh, ow);
                        idx[first_max(values).0]
                    } else {
                        g.argmax(plane, oh, ow)
                    };
                    d[at] += gp[oh * g.out_w + ow];
                }
            }
        })
    }
}

impl BinaryFloatKernel for MaxPoolBackward {
    fn run<T: WithDType>(&self, grad: &[T], x: &[T]) -> Vec<T> {
        self.backward(grad, x)
    }
}

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "crosskd-max-pool2d-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dx = run_binary_float(self.name(), self, (s1, l1), (s2, l2))?;
        Ok((dx, self.geo.in_shape()))
    }
}

/// Forward average pooling on the CPU.
pub(super) struct AvgPool {
    pub geo: PoolGeometry,
    pub count_include_pad: bool,
}

impl AvgPool {
    fn inverse_divisors(&self) -> Vec<f64> {
        self.geo
            .divisors(self.count_include_pad)
            .into_iter()
            .map(|d| 1.0 / d as f64)
            .collect()
    }

    fn forward<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        let g = &self.geo;
        let inv: Vec<T> = self
            .inverse_divisors()
            .into_iter()
            .map(T::from_f64)
            .collect();
        let (plane_in, plane_out) = (g.h * g.w, g.out_h * g.out_w);
        let mut out = vec![T::zero(); g.n * g.c * plane_out];
        out.par_chunks_mut(plane_out)
            .zip(x.par_chunks(plane_in))
            .for_each(|(o, plane)| {
                for oh in 0..g.out_h {
                    let (r0, r1) = PoolGeometry::span(oh, g.kernel.0, g.stride.0, g.padding.0, g.h);
                    for ow in 0..g.out_w {
                        let (c0, c1) =
                            PoolGeometry::span(ow, g.kernel.1, g.stride.1, g.padding.1, g.w);
                        let mut sum = T::zero();
                        for r in r0..r1 {
                            for v in &plane[r * g.w + c0..r * g.w + c1] {
                                sum += *v;
                            }
                        }
                        let j = oh * g.out_w + ow;
                        o[j] = sum * inv[j];
                    }
                }
            });
        out
    }

    fn backward<T: WithDType>(&self, grad: &[T]) -> Vec<T> {
        let g = &self.geo;
        let inv: Vec<T> = self
            .inverse_divisors()
            .into_iter()
            .map(T::from_f64)
            .collect();
        let (plane_in, plane_out) = (g.h * g.w, g.out_h * g.out_w);
        let mut dx = vec![T::zero(); g.n * g.c * plane_in];
        dx.par_chunks_mut(plane_in)
            .zip(grad.par_chunks(plane_out))
            .for_each(|(d, gp)| {
                for oh in 0..g.out_h {
                    let (r0, r1) = PoolGeometry::span(oh, g.kernel.0, g.stride.0, g.padding.0, g.h);
                    for ow in 0..g.out_w {
                        let (c0, c1) =
                            PoolGeometry::span(ow, g.kernel.1, g.stride.1, g.padding.1, g.w);
                        let j = oh * g.out_w + ow;
                        let share = gp[j] * inv[j];
                        for r in r0..r1 {
                            for v in &mut d[r * g.w + c0..r * g.w + c1] {
                                *v += share;
                            }
                        }
                    }
                }
            });
        dx
    }
}

impl UnaryFloatKernel for AvgPool {
    fn run<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        self.forward(x)
    }
}

impl CustomOp1 for AvgPool {
    fn name(&self) -> &'static str {
        "crosskd-avg-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = run_unary_float(self.name(), self, (s, l))?;
        Ok((out, self.geo.out_shape()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = AvgPoolBackward {
            geo: self.geo,
            count_include_pad: self.count_include_pad,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// `dx` of average pooling from `grad`: each output's gradient, divided by its divisor, is added
/// to every non-padding element of its window.
struct AvgPoolBackward {
    geo: PoolGeometry,
    count_include_pad: bool,
}

impl UnaryFloatKernel for AvgPoolBackward {
    fn run<T: WithDType>(&self, grad: &[T]) -> Vec<T> {
        let pool = AvgPool {
            geo: self.geo,
            count_include_pad: self.count_include_pad,
        };
        pool.backward(grad)
    }
}

impl CustomOp1 for AvgPoolBackward {
    fn name(&self) -> &'static str {
        "crosskd-avg-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dx = run_unary_float(self.name(), self, (s, l))?;
        Ok((dx, self.geo.in_shape()))
    }
}
