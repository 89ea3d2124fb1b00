//! Hand-written CPU kernel (f32, f64) for standardisation per channel of an `(A, C, B)` view —
//! the core of batch, group and layer norm — with its backward pass. Statistics accumulate in f64.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::kernel::{
    map3_blocks, map_blocks, run_binary_float, run_ternary_float, run_unary_float,
    BinaryFloatKernel, TernaryFloatKernel, UnaryFloatKernel,
};
use crate::reduce::{lane_dot_and_sum, lane_sums_shifted, LANES};

/// [`lane_dot_and_sum`] of `g` masked by `y > 0` (when `relu`) against `x`.
fn lane_dot_and_sum_masked<T: WithDType>(
    g: &[T],
    x: &[T],
    y: &[T],
    relu: bool,
    h: impl Fn(f64) -> f64,
) -> (f64, f64) {
    if !relu {
        return lane_dot_and_sum(g, x, h);
    }
    let (mut dot, mut sum) = ([0.0f64; LANES], [0.0f64; LANES]);
    let (mut gc, mut xc, mut yc) = (
        g.chunks_exact(LANES),
        x.chunks_exact(LANES),
        y.chunks_exact(LANES),
    );
    for ((gs, xs), ys) in (&mut gc).zip(&mut xc).zip(&mut yc) {
        for i in 0..LANES {
            let gv = relu_masked(true, gs[i], ys[i]).to_f64();
            dot[i] += gv * h(xs[i].to_f64());
            sum[i] += gv;
        }
    }
    let (mut d, mut s): (f64, f64) = (dot.iter().sum(), sum.iter().sum());
    for ((gv, xv), yv) in gc
        .remainder()
        .iter()
        .zip(xc.remainder())
        .zip(yc.remainder())
    {
        let gv = relu_masked(true, *gv, *yv).to_f64();
        d += gv * h(xv.to_f64());
        s += gv;
    }
    (d, s)
}

/// Per-channel mean and biased variance computed by the forward pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

/// `x̂ = (x − μ_c)/sqrt(σ²_c + eps)` for `x` viewed as `(A, C, B)`, statistics over `A` and `B`.
///
/// The forward pass leaves the statistics in `stats` (shared with the caller, which needs them for
/// batch norm's running averages, and with the backward pass, which needs `1/σ`).
#[derive(Debug, Clone)]
pub(crate) struct Standardize {
    pub a: usize,
    pub c: usize,
    pub b: usize,
    pub eps: f64,
    pub stats: Arc<Mutex<Stats>>,
}

impl Standardize {
    /// Blocks `(a, c)` of length `B` belonging to channel `c`.
    fn blocks<'a, T>(&self, x: &'a [T], c: usize) -> impl Iterator<Item = &'a [T]> + 'a {
        let (cn, b) = (self.c, self.b);
        (0..self.a).map(move |a| &x[(a * cn + c) * b..(a * cn + c + 1) * b])
    }

    /// Per-channel `(μ, σ²)` of `x`, also left in `self.stats` for the caller and the backward
    /// pass.
    fn measure<T: WithDType>(&self, x: &[T]) -> Vec<(f64, f64)> {
        let m = (self.a * self.b) as f64;
        let stats: Vec<(f64, f64)> = (0..self.c)
            .into_par_iter()
            .map(|c| {
                // One pass over the data, shifted by the channel's first value so that the
                // variance is not the difference of two large sums (f64 sums of values near the
                // mean lose nothing measurable); the second pass over every channel of every
                // batch norm was a full read of the activations.
                let shift = self.blocks(x, c).next().and_then(|b| b.first());
                let shift = shift.map_or(0.0, |v| v.to_f64());
                let (sum, sq) = self
                    .blocks(x, c)
                    .map(|b| lane_sums_shifted(b, shift))
                    .fold((0.0, 0.0), |acc, s| (acc.0 + s.0, acc.1 + s.1));
                let offset = sum / m;
                (shift + offset, (sq / m - offset * offset).max(0.0))
            })
            .collect();
        let mut slot = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        slot.mean = stats.iter().map(|s| s.0).collect();
        slot.var = stats.iter().map(|s| s.1).collect();
        stats
    }

    /// Per-channel `(μ, 1/sqrt(σ² + eps))` from the statistics left by [`Self::measure`].
    fn mean_and_inv_std(&self) -> (Vec<f64>, Vec<f64>) {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let inv_std = stats
            .var
            .iter()
            .map(|v| 1.0 / (v + self.eps).sqrt())
            .collect();
        (stats.mean.clone(), inv_std)
    }

    fn forward<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        if x.is_empty() {
            return Vec::new();
        }
        let stats = self.measure(x);
        let mut out = vec![T::zero(); x.len()];
        out.par_chunks_mut(self.b)
            .zip(x.par_chunks(self.b))
            .enumerate()
            .for_each(|(block, (o, xb))| {
                let (mean, var) = stats[block % self.c];
                let inv_std = 1.0 / (var + self.eps).sqrt();
                for (o, v) in o.iter_mut().zip(xb) {
                    *o = T::from_f64((v.to_f64() - mean) * inv_std);
                }
            });
        out
    }
}

impl UnaryFloatKernel for Standardize {
    fn run<T: WithDType>(&self, x: &[T]) -> Vec<T> {
        self.forward(x)
    }
}

impl CustomOp1 for Standardize {
    fn name(&self) -> &'static str {
        "crosskd-standardize"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = run_unary_float(self.name(), self, (s, l))?;
        Ok((out, l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = StandardizeBackward {
            shape: self.clone(),
            inv_std: self.mean_and_inv_std().1,
        };
        Ok(Some(
            grad.contiguous()?
                .apply_op2_no_bwd(&res.contiguous()?, &op)?,
        ))
    }
}

/// `dx = (1/σ_c)·(g − mean_c(g) − x̂·mean_c(g·x̂))` from `(g, x̂)`.
struct StandardizeBackward {
    shape: Standardize,
    inv_std: Vec<f64>,
}

impl StandardizeBackward {
    fn backward<T: WithDType>(&self, g: &[T], xhat: &[T]) -> Vec<T> {
        let s = &self.shape;
        if g.is_empty() {
            return Vec::new();
        }
        let m = (s.a * s.b) as f64;
        let sums: Vec<(f64, f64)> = (0..s.c)
            .into_par_iter()
            .map(|c| {
                let (mut sum_g, mut sum_gx) = (0.0, 0.0);
                for (gb, xb) in s.blocks(g, c).zip(s.blocks(xhat, c)) {
                    let (gx, gs) = lane_dot_and_sum(gb, xb, |v| v);
                    sum_gx += gx;
                    sum_g += gs;
                }
                (sum_g / m, sum_gx / m)
            })
            .collect();
        let mut dx = vec![T::zero(); g.len()];
        dx.par_chunks_mut(s.b)
            .zip(g.par_chunks(s.b).zip(xhat.par_chunks(s.b)))
            .enumerate()
            .for_each(|(block, (d, (gb, xb)))| {
                let c = block % s.c;
                let (mean_g, mean_gx) = sums[c];
                let inv_std = self.inv_std[c];
                for ((d, gv), xv) in d.iter_mut().zip(gb).zip(xb) {
                    *d = T::from_f64(inv_std * (gv.to_f64() - mean_g - xv.to_f64() * mean_gx));
                }
            });
        dx
    }
}

impl BinaryFloatKernel for StandardizeBackward {
    fn run<T: WithDType>(&self, g: &[T], xhat: &[T]) -> Vec<T> {
        self.backward(g, xhat)
    }
}

impl CustomOp2 for StandardizeBackward {
    fn name(&self) -> &'static str {
        "crosskd-standardize-backward"
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

/// Training-mode batch norm with its affine step in one op: `y = x̂·w_c + b_c` with
/// `x̂ = (x − μ_c)/sqrt(σ²_c + eps)`, `x` viewed as `(A, C, B)`, statistics over `A` and `B`;
/// followed by a ReLU when `relu`.
///
/// Standardising, scaling and the activation as separate ops wrote each intermediate out, read it
/// back, and gave candle a graph node each whose gradient it allocates, zeroes and adds; fused,
/// the forward pass is one write and the backward pass one reduction and one write (after masking
/// the gradient where the ReLU was off), `x̂` recomputed from `x` on the fly.
#[derive(Debug, Clone)]
pub(crate) struct BatchNormAffine {
    pub shape: Standardize,
    pub relu: bool,
}

impl BatchNormAffine {
    /// `y` from `x` and the affine parameters; leaves the statistics in `self.shape.stats`.
    pub(crate) fn forward<T: WithDType>(&self, x: &[T], w: &[T], bias: &[T]) -> Vec<T> {
        let s = &self.shape;
        let stats = s.measure(x);
        let relu = self.relu;
        // y = x·scale + shift, folded per channel.
        let coeffs = |block: usize| {
            let c = block % s.c;
            let (mean, var) = stats[c];
            let scale = w[c].to_f64() / (var + s.eps).sqrt();
            let shift = bias[c].to_f64() - mean * scale;
            (T::from_f64(scale), T::from_f64(shift))
        };
        map_blocks(x, s.b, coeffs, move |&(scale, shift), v| {
            let z = v * scale + shift;
            // NaN passes through (it must reach the loss), as in PyTorch.
            if relu && z < T::zero() {
                T::zero()
            } else {
                z
            }
        })
    }
}

impl TernaryFloatKernel for BatchNormAffine {
    fn run<T: WithDType>(&self, x: &[T], w: &[T], bias: &[T]) -> Vec<T> {
        self.forward(x, w, bias)
    }
}

impl candle_core::CustomOp3 for BatchNormAffine {
    fn name(&self) -> &'static str {
        "crosskd-batch-norm"
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
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, dbias) = self.backward(x, w, res, grad)?;
        Ok((Some(dx), Some(dw), Some(dbias)))
    }
}

impl BatchNormAffine {
    /// `(dx, dw, dbias)` at input `x`, weight `w` and output `res` for the output gradient `grad`
    /// (the statistics are those the forward pass left in `self.shape.stats`).
    pub(crate) fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (mean, inv_std) = self.shape.mean_and_inv_std();
        let (grad, x, res) = (grad.contiguous()?, x.contiguous()?, res.contiguous()?);
        // The ReLU's mask (`res > 0`) is applied to `grad` inside both kernels rather than
        // written out as a masked copy first.
        let sums_op = BatchNormSums {
            shape: self.shape.clone(),
            relu: self.relu,
            mean: mean.clone(),
            inv_std: inv_std.clone(),
        };
        // (2, C): Σ g·x̂ (the weight gradient) and Σ g (the bias gradient).
        let sums = grad.apply_op3_no_bwd(&x, &res, &sums_op)?;
        let flat: Vec<f64> = sums
            .to_dtype(candle_core::DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let weight: Vec<f64> = w.to_dtype(candle_core::DType::F64)?.to_vec1()?;
        let m = (self.shape.a * self.shape.b) as f64;
        let c = self.shape.c;
        let dx_op = BatchNormInputGrad {
            shape: self.shape.clone(),
            relu: self.relu,
            mean,
            // dx = w·inv_std·(g − Σg/m − x̂·Σ(g·x̂)/m), per channel.
            coeffs: (0..c)
                .map(|i| {
                    (
                        weight[i] * inv_std[i],
                        flat[c + i] / m,
                        flat[i] / m,
                        inv_std[i],
                    )
                })
                .collect(),
        };
        let dx = grad.apply_op3_no_bwd(&x, &res, &dx_op)?;
        Ok((dx, sums.get(0)?, sums.get(1)?))
    }
}

/// `g` where the ReLU let its input through (`y > 0`, so NaN counts as blocked, as in
/// `activation::relu`'s backward), else 0; `g` itself without a ReLU.
#[inline(always)]
fn relu_masked<T: WithDType>(relu: bool, g: T, y: T) -> T {
    // `|`, not `||`: a select without a branch, which vectorises.
    let keep = (y > T::zero()) | !relu;
    if keep {
        g
    } else {
        T::zero()
    }
}

/// `(Σ g·x̂, Σ g)` per channel as a `(2, C)` tensor from `(g, x, y)`, `x̂` recomputed from `x`,
/// `g` masked by the ReLU's output `y` when `relu`.
struct BatchNormSums {
    shape: Standardize,
    relu: bool,
    mean: Vec<f64>,
    inv_std: Vec<f64>,
}

impl TernaryFloatKernel for BatchNormSums {
    fn run<T: WithDType>(&self, g: &[T], x: &[T], y: &[T]) -> Vec<T> {
        let s = &self.shape;
        let relu = self.relu;
        let sums: Vec<(f64, f64)> = (0..s.c)
            .into_par_iter()
            .map(|c| {
                let (mean, inv_std) = (self.mean[c], self.inv_std[c]);
                let (mut gx, mut gs) = (0.0, 0.0);
                for ((gb, xb), yb) in s.blocks(g, c).zip(s.blocks(x, c)).zip(s.blocks(y, c)) {
                    let (dot, sum) =
                        lane_dot_and_sum_masked(gb, xb, yb, relu, |v| (v - mean) * inv_std);
                    gx += dot;
                    gs += sum;
                }
                (gx, gs)
            })
            .collect();
        sums.iter()
            .map(|p| T::from_f64(p.0))
            .chain(sums.iter().map(|p| T::from_f64(p.1)))
            .collect()
    }
}

impl candle_core::CustomOp3 for BatchNormSums {
    fn name(&self) -> &'static str {
        "crosskd-batch-norm-sums"
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
        let sums = run_ternary_float(self.name(), self, (s1, l1), (s2, l2), (s3, l3))?;
        Ok((sums, Shape::from((2, self.shape.c))))
    }
}

/// The input gradient of [`BatchNormAffine`] from `(g, x, y)` and per-channel coefficients
/// `(w·inv_std, mean(g), mean(g·x̂), inv_std)`, `g` masked by `y` when `relu`.
struct BatchNormInputGrad {
    shape: Standardize,
    relu: bool,
    mean: Vec<f64>,
    coeffs: Vec<(f64, f64, f64, f64)>,
}

impl TernaryFloatKernel for BatchNormInputGrad {
    fn run<T: WithDType>(&self, g: &[T], x: &[T], y: &[T]) -> Vec<T> {
        let s = &self.shape;
        let c_len = s.c;
        // Per (a, c) block: dx = scale·(g − mean_g − (x − μ)·inv_std·mean_gx) = scale·g + a·x + b.
        let coeffs = |block: usize| {
            let c = block % c_len;
            let (scale, mean_g, mean_gx, inv_std) = self.coeffs[c];
            let a = -scale * inv_std * mean_gx;
            let b = -scale * mean_g + scale * inv_std * mean_gx * self.mean[c];
            (T::from_f64(scale), T::from_f64(a), T::from_f64(b))
        };
        let relu = self.relu;
        map3_blocks((g, x, y), s.b, coeffs, move |&(scale, a, b), g, x, y| {
            relu_masked(relu, g, y) * scale + x * a + b
        })
    }
}

impl candle_core::CustomOp3 for BatchNormInputGrad {
    fn name(&self) -> &'static str {
        "crosskd-batch-norm-dx"
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
        let dx = run_ternary_float(self.name(), self, (s1, l1), (s2, l2), (s3, l3))?;
        Ok((dx, l1.shape().clone()))
    }
}
