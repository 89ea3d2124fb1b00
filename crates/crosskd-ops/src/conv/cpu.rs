//! CPU kernels: convolution and its two gradients as im2col/col2im around gemm.
//!
//! For one image and one group, with `K = c_in/groups · kh · kw` and `P = ho · wo`:
//! - forward:         `Y_g (og×P)  = W_g (og×K) · cols (K×P)`, `cols = im2col(X_g)`;
//! - input gradient:  `dX_g        = col2im(W_gᵀ (K×og) · dY_g (og×P))`;
//! - weight gradient: `dW_g (og×K) += dY_g (og×P) · colsᵀ (P×K)`.
//!
//! Work is split over the batch when it has at least as many images as threads (each thread runs
//! single-threaded gemms on its own images, which keeps the small per-image matrices efficient);
//! otherwise images run one after another and the gemm itself is parallel.

use rayon::prelude::*;

use super::geometry::Geometry;

/// The float types the kernels run on.
pub(crate) trait Float: Copy + Send + Sync + 'static + std::ops::AddAssign {
    const ZERO: Self;
    const ONE: Self;
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// A row-major matrix view for gemm: base pointer, row stride, column stride.
#[derive(Clone, Copy)]
struct Mat<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

impl<T> Mat<T> {
    fn rows(s: &[T], row_len: usize) -> Self {
        Self {
            ptr: s.as_ptr(),
            rs: row_len as isize,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix whose rows have `row_len` elements.
    fn transposed(s: &[T], row_len: usize) -> Self {
        Self {
            ptr: s.as_ptr(),
            rs: 1,
            cs: row_len as isize,
        }
    }
}

/// `dst (m×n, row-major) = [dst +] lhs (m×k) · rhs (k×n)`.
#[allow(clippy::too_many_arguments)]
fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
    threads: usize,
) {
    assert!(dst.len() >= m * n, "gemm destination too small");
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if threads > 1 && m * n * k > 64 * 64 * 64 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the callers pass slices that hold the m×k, k×n and m×n matrices described by the
    // strides (checked by the slice arithmetic of the callers), and dst does not alias lhs or rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            if accumulate { T::ONE } else { T::ZERO },
            T::ONE,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// The range of output columns `ow` whose input column `ow·stride + offset` lies in `0..w`.
fn valid_range(offset: isize, stride: usize, w: usize, wo: usize) -> (usize, usize) {
    let s = stride as isize;
    // smallest ow with ow*s + offset >= 0
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset) + s - 1) / s
    };
    // largest ow+1 with ow*s + offset <= w-1
    let last = w as isize - 1 - offset;
    let hi = if last < 0 { 0 } else { last / s + 1 };
    let lo = (lo as usize).min(wo);
    let hi = (hi as usize).clamp(lo, wo);
    (lo, hi)
}

/// Unfolds one group of one image, `x: (cg, h, w)`, into `cols: (cg·kh·kw, ho·wo)`.
fn im2col<T: Float>(g: &Geometry, x: &[T], cols: &mut [T]) {
    let (h, w, ho, wo, p) = (g.h, g.w, g.ho, g.wo, g.p_len());
    let pad = g.padding as isize;
    for c in 0..g.cg() {
        let plane = &x[c * h * w..(c + 1) * h * w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row_idx = (c * g.kh + ki) * g.kw + kj;
                let row = &mut cols[row_idx * p..(row_idx + 1) * p];
                let col_off = (kj * g.dilation) as isize - pad;
                let (lo, hi) = valid_range(col_off, g.stride, w, wo);
                for oh in 0..ho {
                    let out = &mut row[oh * wo..(oh + 1) * wo];
                    let ih = (oh * g.stride + ki * g.dilation) as isize - pad;
                    if ih < 0 || ih >= h as isize {
                        out.fill(T::ZERO);
                        continue;
                    }
                    let inp = &plane[ih as usize * w..(ih as usize + 1) * w];
                    out[..lo].fill(T::ZERO);
                    out[hi..].fill(T::ZERO);
                    if g.stride == 1 {
                        let start = (lo as isize + col_off) as usize;
                        out[lo..hi].copy_from_slice(&inp[start..start + (hi - lo)]);
                    } else {
                        for (ow, o) in out.iter_mut().enumerate().take(hi).skip(lo) {
                            *o = inp[(ow as isize * g.stride as isize + col_off) as usize];
                        }
                    }
                }
            }
        }
    }
}

/// Folds `cols: (cg·kh·kw, ho·wo)` back onto one group of one image, `dx: (cg, h, w)`, adding
/// every column entry to the input pixel it was read from (the adjoint of [`im2col`]).
fn col2im<T: Float>(g: &Geometry, cols: &[T], dx: &mut [T]) {
    let (h, w, ho, wo, p) = (g.h, g.w, g.ho, g.wo, g.p_len());
    let pad = g.padding as isize;
    for c in 0..g.cg() {
        let plane = &mut dx[c * h * w..(c + 1) * h * w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row_idx = (c * g.kh + ki) * g.kw + kj;
                let row = &cols[row_idx * p..(row_idx + 1) * p];
                let col_off = (kj * g.dilation) as isize - pad;
                let (lo, hi) = valid_range(col_off, g.stride, w, wo);
                for oh in 0..ho {
                    let ih = (oh * g.stride + ki * g.dilation) as isize - pad;
                    if ih < 0 || ih >= h as isize {
                        continue;
                    }
                    let src = &row[oh * wo..(oh + 1) * wo];
                    let dst = &mut plane[ih as usize * w..(ih as usize + 1) * w];
                    if g.stride == 1 {
                        let start = (lo as isize + col_off) as usize;
                        for (d, s) in dst[start..start + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d += *s;
                        }
                    } else {
                        for (ow, s) in src.iter().enumerate().take(hi).skip(lo) {
                            dst[(ow as isize * g.stride as isize + col_off) as usize] += *s;
                        }
                    }
                }
            }
        }
    }
}

fn threads() -> usize {
    candle_core::utils::get_num_threads().max(1)
}

/// Runs `per_image(image index, scratch)` for every image of the batch, each writing its own
/// `out_per_image`-long chunk of `out`; in parallel over images when the batch is large enough.
fn for_each_image<T: Float, F>(
    n: usize,
    out: &mut [T],
    out_per_image: usize,
    scratch_len: usize,
    per_image: F,
) where
    F: Fn(usize, &mut [T], &mut Vec<T>, usize) + Sync,
{
    let threads = threads();
    if n >= threads && threads > 1 {
        out.par_chunks_mut(out_per_image.max(1))
            .enumerate()
            .for_each_init(
                || vec![T::ZERO; scratch_len],
                |scratch, (i, chunk)| per_image(i, chunk, scratch, 1),
            );
    } else {
        let mut scratch = vec![T::ZERO; scratch_len];
        for (i, chunk) in out.chunks_mut(out_per_image.max(1)).enumerate().take(n) {
            per_image(i, chunk, &mut scratch, threads);
        }
    }
}

/// `y = conv(x, w)`; `x`, `w` contiguous in the layouts of `g`. Returns `y: (n, c_out, ho, wo)`.
pub(crate) fn conv_forward<T: Float>(g: &Geometry, x: &[T], w: &[T]) -> Vec<T> {
    let (cg, og, k, p, hw) = (g.cg(), g.og(), g.k_len(), g.p_len(), g.hw());
    let mut y = vec![T::ZERO; g.n * g.c_out * p];
    let scratch = if g.is_pointwise() { 0 } else { k * p };
    for_each_image(
        g.n,
        &mut y,
        g.c_out * p,
        scratch,
        |i, y_img, cols, threads| {
            for grp in 0..g.groups {
                let x_g = &x[(i * g.c_in + grp * cg) * hw..(i * g.c_in + (grp + 1) * cg) * hw];
                let rhs = if g.is_pointwise() {
                    Mat::rows(x_g, p)
                } else {
                    im2col(g, x_g, cols);
                    Mat::rows(cols, p)
                };
                let w_g = &w[grp * og * k..(grp + 1) * og * k];
                gemm(
                    og,
                    p,
                    k,
                    &mut y_img[grp * og * p..(grp + 1) * og * p],
                    false,
                    Mat::rows(w_g, k),
                    rhs,
                    threads,
                );
            }
        },
    );
    y
}

/// `dx = ∂⟨conv(x, w), dy⟩/∂x` (also the forward pass of the transposed convolution).
pub(crate) fn conv_input_grad<T: Float>(g: &Geometry, dy: &[T], w: &[T]) -> Vec<T> {
    let (cg, og, k, p, hw) = (g.cg(), g.og(), g.k_len(), g.p_len(), g.hw());
    let mut dx = vec![T::ZERO; g.n * g.c_in * hw];
    let scratch = if g.is_pointwise() { 0 } else { k * p };
    for_each_image(
        g.n,
        &mut dx,
        g.c_in * hw,
        scratch,
        |i, dx_img, cols, threads| {
            for grp in 0..g.groups {
                let dy_g = &dy[(i * g.c_out + grp * og) * p..(i * g.c_out + (grp + 1) * og) * p];
                let w_g = &w[grp * og * k..(grp + 1) * og * k];
                let dx_g = &mut dx_img[grp * cg * hw..(grp + 1) * cg * hw];
                if g.is_pointwise() {
                    gemm(
                        k,
                        p,
                        og,
                        dx_g,
                        false,
                        Mat::transposed(w_g, k),
                        Mat::rows(dy_g, p),
                        threads,
                    );
                } else {
                    gemm(
                        k,
                        p,
                        og,
                        cols,
                        false,
                        Mat::transposed(w_g, k),
                        Mat::rows(dy_g, p),
                        threads,
                    );
                    col2im(g, cols, dx_g);
                }
            }
        },
    );
    dx
}

/// `dw = ∂⟨conv(x, w), dy⟩/∂w`, summed over the batch.
pub(crate) fn conv_weight_grad<T: Float>(g: &Geometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (cg, og, k, p, hw) = (g.cg(), g.og(), g.k_len(), g.p_len(), g.hw());
    let w_len = g.c_out * k;
    let scratch_len = if g.is_pointwise() { 0 } else { k * p };
    // Accumulates the images `range` into `dw`.
    let accumulate =
        |range: std::ops::Range<usize>, dw: &mut [T], cols: &mut [T], threads: usize| {
            for i in range {
                for grp in 0..g.groups {
                    let x_g = &x[(i * g.c_in + grp * cg) * hw..(i * g.c_in + (grp + 1) * cg) * hw];
                    let rhs = if g.is_pointwise() {
                        Mat::transposed(x_g, p)
                    } else {
                        im2col(g, x_g, cols);
                        Mat::transposed(cols, p)
                    };
                    let dy_g =
                        &dy[(i * g.c_out + grp * og) * p..(i * g.c_out + (grp + 1) * og) * p];
                    gemm(
                        og,
                        k,
                        p,
                        &mut dw[grp * og * k..(grp + 1) * og * k],
                        true,
                        Mat::rows(dy_g, p),
                        rhs,
                        threads,
                    );
                }
            }
        };
    let threads = threads();
    if g.n >= threads && threads > 1 {
        let chunk = g.n.div_ceil(threads);
        let partials: Vec<Vec<T>> = (0..threads)
            .into_par_iter()
            .map(|t| {
                let mut dw = vec![T::ZERO; w_len];
                let mut cols = vec![T::ZERO; scratch_len];
                accumulate(t * chunk..((t + 1) * chunk).min(g.n), &mut dw, &mut cols, 1);
                dw
            })
            .collect();
        let mut parts = partials.into_iter();
        let mut dw = parts.next().unwrap_or_else(|| vec![T::ZERO; w_len]);
        for part in parts {
            for (a, b) in dw.iter_mut().zip(&part) {
                *a += *b;
            }
        }
        dw
    } else {
        let mut dw = vec![T::ZERO; w_len];
        let mut cols = vec![T::ZERO; scratch_len];
        accumulate(0..g.n, &mut dw, &mut cols, threads);
        dw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct-loop definition of the convolution, independent of im2col and gemm.
    fn naive(g: &Geometry, x: &[f64], w: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; g.n * g.c_out * g.p_len()];
        for n in 0..g.n {
            for o in 0..g.c_out {
                let grp = o / g.og();
                for oh in 0..g.ho {
                    for ow in 0..g.wo {
                        let mut acc = 0.0;
                        for c in 0..g.cg() {
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    let ih = (oh * g.stride + ki * g.dilation) as isize
                                        - g.padding as isize;
                                    let iw = (ow * g.stride + kj * g.dilation) as isize
                                        - g.padding as isize;
                                    if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xi = ((n * g.c_in + grp * g.cg() + c) * g.h + ih as usize)
                                        * g.w
                                        + iw as usize;
                                    let wi = ((o * g.cg() + c) * g.kh + ki) * g.kw + kj;
                                    acc += x[xi] * w[wi];
                                }
                            }
                        }
                        y[((n * g.c_out + o) * g.ho + oh) * g.wo + ow] = acc;
                    }
                }
            }
        }
        y
    }

    fn data(len: usize, seed: u64) -> Vec<f64> {
        (0..len)
            .map(|i| (((i as u64 + 1) * (seed * 2 + 7919)) % 97) as f64 / 48.5 - 1.0)
            .collect()
    }

    #[test]
    fn forward_matches_direct_loops() {
        let cases = [
            ([2, 4, 7, 6], [6, 2, 3, 3], 1, 1, 1, 2),
            ([1, 3, 9, 8], [5, 3, 3, 2], 2, 2, 1, 1),
            ([3, 2, 8, 8], [4, 2, 3, 3], 3, 0, 2, 1),
            ([2, 4, 5, 5], [4, 1, 3, 3], 1, 1, 1, 4),
            ([2, 3, 4, 5], [2, 3, 1, 1], 1, 0, 1, 1),
        ];
        for (xs, ws, stride, pad, dil, groups) in cases {
            let g = Geometry::new("test", &xs, &ws, stride, pad, dil, groups).unwrap();
            let x = data(xs.iter().product(), 1);
            let w = data(ws.iter().product(), 2);
            let fast = conv_forward(&g, &x, &w);
            let slow = naive(&g, &x, &w);
            let err = fast
                .iter()
                .zip(&slow)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                err < 1e-12,
                "case {xs:?} {ws:?} s{stride} p{pad} d{dil} g{groups}: error {err}"
            );
        }
    }

    #[test]
    fn valid_range_matches_brute_force() {
        for offset in -4..5isize {
            for stride in 1..4 {
                for w in 1..7 {
                    for wo in 0..8 {
                        let (lo, hi) = valid_range(offset, stride, w, wo);
                        let ok: Vec<usize> = (0..wo)
                            .filter(|&ow| {
                                let iw = ow as isize * stride as isize + offset;
                                iw >= 0 && iw < w as isize
                            })
                            .collect();
                        let want = (lo..hi).collect::<Vec<_>>();
                        assert_eq!(ok, want, "offset {offset} stride {stride} w {w} wo {wo}");
                    }
                }
            }
        }
    }
}
