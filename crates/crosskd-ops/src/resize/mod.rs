//! Spatial resizing of `(N, C, H, W)` tensors: nearest-neighbour (integer factors or any size) and
//! bilinear (PyTorch `align_corners = false`, no antialiasing).
//!
//! candle 0.11.1's `upsample_nearest2d` backward *overwrites* the gradient already accumulated for
//! its input (wrong whenever the input has a second consumer, e.g. a UNet skip connection), and
//! `upsample_bilinear2d` has no backward. Here every backward adds into the input's gradient
//! (`tests/ops_resize.rs`).
//!
//! On the CPU (f32, f64) one hand-written separable kernel (`cpu.rs`) does all three resizes,
//! forward and backward; on other devices and dtypes the compositions of candle primitives in
//! [`generic`] run.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

mod cpu;
pub mod generic;

use cpu::{Interp, Tap};

fn dims4(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match x.dims() {
        &[n, c, h, w] if h > 0 && w > 0 => Ok((n, c, h, w)),
        other => Err(Error::Shape {
            op,
            expected: "a 4-D input (N, C, H, W) with H, W > 0".into(),
            got: other.to_vec(),
        }),
    }
}

fn check_positive(op: &'static str, what: &str, a: usize, b: usize) -> Result<()> {
    if a == 0 || b == 0 {
        return Err(Error::InvalidArgument {
            op,
            message: format!("{what} must be positive, got ({a}, {b})"),
        });
    }
    Ok(())
}

/// Source index of output index `dst` for PyTorch's `nearest` mode:
/// `min(⌊dst · (in/out)⌋, in − 1)`, computed in f32 exactly as PyTorch's CPU and CUDA kernels do
/// (so that sizes whose ratio is not representable pick the same rows).
pub fn nearest_source_index(dst: usize, in_size: usize, out_size: usize) -> usize {
    if out_size == in_size {
        dst
    } else if out_size == 2 * in_size {
        dst >> 1
    } else {
        let scale = in_size as f32 / out_size as f32;
        ((dst as f32 * scale).floor() as usize).min(in_size.saturating_sub(1))
    }
}

/// Source indices `(i0, i1)` and the weight `λ` of `i1` for output index `dst` of a bilinear
/// resize with `align_corners = false`: `s = max((dst + ½)·in/out − ½, 0)`, `i0 = ⌊s⌋`,
/// `i1 = min(i0 + 1, in − 1)`, `λ = s − i0` (PyTorch's `upsample_bilinear2d`).
pub fn bilinear_source(dst: usize, in_size: usize, out_size: usize) -> (usize, usize, f64) {
    if in_size == out_size {
        return (dst, dst, 0.0);
    }
    let scale = in_size as f64 / out_size as f64;
    let src = ((dst as f64 + 0.5) * scale - 0.5).max(0.0);
    let i0 = (src.floor() as usize).min(in_size - 1);
    let lambda = (src - i0 as f64).clamp(0.0, 1.0);
    let i1 = if i0 + 1 < in_size { i0 + 1 } else { i0 };
    (i0, i1, lambda)
}

/// Nearest-neighbour upsampling by integer factors: `y[n,c,i,j] = x[n,c,⌊i/sH⌋,⌊j/sW⌋]`, output
/// `(N, C, H·sH, W·sW)`. The backward sums each `sH×sW` block of the output gradient and *adds* it
/// to the input's gradient.
pub fn upsample_nearest2d(x: &Tensor, scale_h: usize, scale_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = dims4("upsample_nearest2d", x)?;
    check_positive("upsample_nearest2d", "scale factors", scale_h, scale_w)?;
    let rows: Vec<usize> = (0..h * scale_h).map(|i| i / scale_h).collect();
    let cols: Vec<usize> = (0..w * scale_w).map(|j| j / scale_w).collect();
    if use_cpu_kernel(x) {
        return nearest_cpu(x, &rows, &cols);
    }
    generic::gather_rows_cols(x, &rows, &cols)
}

/// Nearest-neighbour resize to any size (PyTorch `interpolate(mode="nearest")`):
/// `y[n,c,i,j] = x[n,c, src(i, H, out_h), src(j, W, out_w)]` with [`nearest_source_index`].
pub fn resize_nearest(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = dims4("resize_nearest", x)?;
    check_positive("resize_nearest", "output size", out_h, out_w)?;
    let rows: Vec<usize> = (0..out_h)
        .map(|i| nearest_source_index(i, h, out_h))
        .collect();
    let cols: Vec<usize> = (0..out_w)
        .map(|j| nearest_source_index(j, w, out_w))
        .collect();
    if use_cpu_kernel(x) {
        return nearest_cpu(x, &rows, &cols);
    }
    generic::gather_rows_cols(x, &rows, &cols)
}

/// Bilinear resize to any size with PyTorch's `align_corners = false` (half-pixel centres, border
/// clamped, no antialiasing), separably along H then W with [`bilinear_source`]:
/// `y = (1 − λ)·x[i0] + λ·x[i1]` in each direction.
pub fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (n, c, h, w) = dims4("resize_bilinear", x)?;
    check_positive("resize_bilinear", "output size", out_h, out_w)?;
    if use_cpu_kernel(x) {
        let taps = |in_size: usize, out_size: usize| -> Vec<Tap> {
            (0..out_size)
                .map(|o| {
                    let (i0, i1, lambda) = bilinear_source(o, in_size, out_size);
                    Tap { i0, i1, lambda }
                })
                .collect()
        };
        let op = Interp {
            n,
            c,
            h,
            w,
            rows: taps(h, out_h),
            cols: taps(w, out_w),
        };
        return Ok(x.contiguous()?.apply_op1(op)?);
    }
    generic::resize_bilinear_impl(x, out_h, out_w)
}

/// Whether the hand-written CPU kernel applies (f32/f64 on the CPU).
fn use_cpu_kernel(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// `x[:, :, rows, :][:, :, :, cols]` with the CPU kernel.
fn nearest_cpu(x: &Tensor, rows: &[usize], cols: &[usize]) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let taps = |idx: &[usize]| -> Vec<Tap> {
        idx.iter()
            .map(|&i| Tap {
                i0: i,
                i1: i,
                lambda: 0.0,
            })
            .collect()
    };
    let op = Interp {
        n,
        c,
        h,
        w,
        rows: taps(rows),
        cols: taps(cols),
    };
    Ok(x.contiguous()?.apply_op1(op)?)
}
