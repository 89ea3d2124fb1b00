//! Hand-written CPU kernel (f32, f64) for separable two-tap resizing (nearest and bilinear), with
//! its backward pass. Each `(n, c)` plane is independent, so planes run in parallel.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, WithDType};

use crate::kernel::{build_in_chunks, run_unary_float, UnaryFloatKernel};

/// Source taps of one output row (or column): `(1 − λ)·x[i0] + λ·x[i1]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tap {
    pub i0: usize,
    pub i1: usize,
    pub lambda: f64,
}

/// A separable resize `(N, C, H, W) → (N, C, rows.len(), cols.len())`.
#[derive(Debug, Clone)]
pub(super) struct Interp {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub rows: Vec<Tap>,
    pub cols: Vec<Tap>,
}

/// Per-tap weights `(1 − λ, λ)` in the working dtype.
fn weights<T: WithDType>(taps: &[Tap]) -> Vec<(T, T)> {
    taps.iter()
        .map(|t| (T::from_f64(1.0 - t.lambda), T::from_f64(t.lambda)))
        .collect()
}

impl Interp {
    fn is_nearest(&self) -> bool {
        self.rows.iter().chain(&self.cols).all(|t| t.lambda == 0.0)
    }

    fn forward<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        let (oh, ow) = (self.rows.len(), self.cols.len());
        let (plane_in, plane_out) = (self.h * self.w, oh * ow);
        let nearest = self.is_nearest();
        let (wr, wc) = (weights::<T>(&self.rows), weights::<T>(&self.cols));
        let len = self.n * self.c * plane_out;
        build_in_chunks(len, plane_out, T::zero(), |p, o| {
            let plane = &x[p * plane_in..(p + 1) * plane_in];
            for (i, r) in self.rows.iter().enumerate() {
                let (row0, row1) = (&plane[r.i0 * self.w..], &plane[r.i1 * self.w..]);
                let dst = &mut o[i * ow..(i + 1) * ow];
                if nearest {
                    for (d, c) in dst.iter_mut().zip(&self.cols) {
                        *d = row0[c.i0];
                    }
                    continue;
                }
                let (a0, a1) = wr[i];
                for ((d, c), &(b0, b1)) in dst.iter_mut().zip(&self.cols).zip(&wc) {
                    let top = row0[c.i0] * b0 + row0[c.i1] * b1;
                    let bottom = row1[c.i0] * b0 + row1[c.i1] * b1;
                    *d = top * a0 + bottom * a1;
                }
            }
        })
    }

    fn backward<T: WithDType>(&self, grad: &[T]) -> Vec<T> {
        let (oh, ow) = (self.rows.len(), self.cols.len());
        let (plane_in, plane_out) = (self.h * self.w, oh * ow);
        let nearest = self.is_nearest();
        let (wr, wc) = (weights::<T>(&self.rows), weights::<T>(&self.cols));
        let len = self.n * self.c * plane_in;
        build_in_chunks(len, plane_in, T::zero(), |p, d| {
            let gp = &grad[p * plane_out..(p + 1) * plane_out];
            for (i, r) in self.rows.iter().enumerate() {
                if nearest {
                    let dst = &mut d[r.i0 * self.w..(r.i0 + 1) * self.w];
                    for (g, c) in gp[i * ow..(i + 1) * ow].iter().zip(&self.cols) {
                        dst[c.i0] += *g;
                    }
                    continue;
                }
                let (a0, a1) = wr[i];
                for (j, c) in self.cols.iter().enumerate() {
                    let g = gp[i * ow + j];
                    let (b0, b1) = wc[j];
                    let (g0, g1) = (g * a0, g * a1);
                    d[r.i0 * self.w + c.i0] += g0 * b0;
                    d[r.i0 * self.w + c.i1] += g0 * b1;
                    d[r.i1 * self.w + c.i0] += g1 * b0;
                    d[r.i1 * self.w + c.i1] += g1 * b1;
                }
            }
        })
    }
}

impl UnaryFloatKernel for Interp {
    fn run<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        self.forward(x)
    }
}

impl CustomOp1 for Interp {
    fn name(&self) -> &'static str {
        "crosskd-resize2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = run_unary_float(self.name(), self, (s, l))?;
        Ok((
            out,
            Shape::from((self.n, self.c, self.rows.len(), self.cols.len())),
        ))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?
                .apply_op1_no_bwd(&InterpBackward(self.clone()))?,
        ))
    }
}

/// `dx` of [`Interp`] from the output gradient: every tap adds its weighted share.
struct InterpBackward(Interp);

impl UnaryFloatKernel for InterpBackward {
    fn run<T: WithDType>(&self, grad: &[T]) -> Vec<T> {
        self.0.backward(grad)
    }
}

impl CustomOp1 for InterpBackward {
    fn name(&self) -> &'static str {
        "crosskd-resize2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dx = run_unary_float(self.name(), self, (s, l))?;
        Ok((dx, Shape::from((self.0.n, self.0.c, self.0.h, self.0.w))))
    }
}
