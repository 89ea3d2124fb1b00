//! Dense, undilated stride-1 convolutions whose gemms read their patches straight out of a
//! zero-padded channels-last image, with no im2col copy ("implicit im2col").
//!
//! In the padded image `xp: (hp × wp × c)`, the `kw` taps of kernel row `ki` for output pixel
//! `(oh, ow)` are one run of `kw·c` values starting at `((oh + ki)·wp + ow)·c`. Taken over a
//! virtual output grid `ho × wp`, that start is `(q + ki·wp)·c` for the virtual pixel
//! `q = oh·wp + ow`: the patch rows of kernel row `ki` form one strided matrix `(ho·wp × kw·c)`
//! with row stride `c` (its rows overlap). On x86 the gemm crate reads such a right-hand side in
//! place (it packs only the small operand), so each kernel row costs one gemm and no copy; the
//! `wp − wo` extra columns per output row are computed and dropped (3% of a 64-wide image with
//! padding 1). On the reference network's layers (`examples/gemm_shapes.rs`, single-threaded,
//! AVX-512) the forward gemms run within ±15% of one gemm over a ready im2col matrix, which then
//! no longer has to be written, and the weight gradient's up to 1.45× faster. (With stride `s` the row step would be `s·wp` against a column
//! step of `s`, so no single stride fits: strided convolutions use the explicit im2col.)
//! - forward:         `Yv (pv × og) = Σ_ki view_ki · Wr_kiᵀ`, `pv = ho·wp`;
//! - weight gradient: `dWr_ki (og × kw·c) += dYv (og × pv) · view_ki`, `dYv` zero on the extra
//!   columns;
//! - input gradient: the forward pass, over `dY` padded by `k − 1 − p`, of the kernel flipped in
//!   space with its channel axes swapped.

use super::gemm::{gemm, gemm_strided, Float, Mat};
use super::geometry::Geometry;
use super::patches::{channels_first, taps_first};
use super::scratch::{for_each_image, sum_over_images, Scratch, ScratchSizes, WithScratch};
use super::transpose::transpose_strided;

/// Whether the forward pass and weight gradient of `g` run here: one group, stride 1, no
/// dilation, and not a pointwise convolution (those multiply the NCHW planes directly).
pub(crate) fn supports(g: &Geometry) -> bool {
    g.groups == 1 && g.stride == 1 && g.dilation == 1 && !g.is_pointwise()
}

/// Whether the input gradient of `g` runs here: as [`supports`], with a square kernel larger
/// than the padding, so that it is a forward convolution itself.
pub(crate) fn supports_input_grad(g: &Geometry) -> bool {
    supports(g) && g.kh == g.kw && g.padding < g.kh
}

/// The padded image and virtual output grid of one geometry.
struct Grid {
    c: usize,
    h: usize,
    w: usize,
    pad: usize,
    kw: usize,
    ho: usize,
    hp: usize,
    wp: usize,
}

impl Grid {
    fn new(g: &Geometry) -> Self {
        debug_assert!(supports(g));
        Self {
            c: g.c_in,
            h: g.h,
            w: g.w,
            pad: g.padding,
            kw: g.kw,
            ho: g.ho,
            hp: g.h + 2 * g.padding,
            wp: g.w + 2 * g.padding,
        }
    }

    /// Virtual output pixels.
    fn pv(&self) -> usize {
        self.ho * self.wp
    }

    /// Length of one kernel row's patch run.
    fn run(&self) -> usize {
        self.kw * self.c
    }

    /// Length of the padded image: the last virtual pixel's run of the last kernel row reaches
    /// `(kw − 1)·c` values past the image, which are kept zero.
    fn image_len(&self) -> usize {
        (self.hp * self.wp + self.kw - 1) * self.c
    }

    /// Writes image `i` of the input into `xp` channels-last with zero borders. The input is given
    /// as NCHW batches `(data, channels)` whose channels, concatenated, are the convolution's:
    /// one part for a plain input, several for a concatenation that is never materialised. With
    /// `scale > 1` the parts are `scale` times smaller than the convolution's input and are read
    /// nearest-upsampled (an upsampling that is never materialised either).
    fn pad_channels_last<T: Float>(
        &self,
        parts: &[(&[T], usize)],
        scale: usize,
        i: usize,
        xp: &mut [T],
    ) {
        let (c, w, wp, pad) = (self.c, self.w, self.wp, self.pad);
        let (hs, ws) = (self.h / scale, self.w / scale);
        debug_assert_eq!(parts.iter().map(|p| p.1).sum::<usize>(), c);
        debug_assert!(hs * scale == self.h && ws * scale == w);
        let line = wp * c;
        xp[..pad * line].fill(T::ZERO);
        for ih in 0..self.h {
            let row = &mut xp[(ih + pad) * line..(ih + pad + 1) * line];
            row[..pad * c].fill(T::ZERO);
            row[(pad + w) * c..].fill(T::ZERO);
            let mut first_channel = 0;
            for &(data, channels) in parts {
                let image = &data[i * channels * hs * ws..(i + 1) * channels * hs * ws];
                let base = pad * c + first_channel;
                let src = &image[(ih / scale) * ws..];
                transpose_strided(src, channels, ws, hs * ws, &mut row[base..], scale * c);
                // Nearest upsampling along the row: each written pixel into the next scale − 1.
                for j in 0..ws {
                    let from = base + j * scale * c;
                    for k in 1..scale {
                        row.copy_within(from..from + channels, from + k * c);
                    }
                }
                first_channel += channels;
            }
        }
        xp[(pad + self.h) * line..self.image_len()].fill(T::ZERO);
    }

    /// The patch rows of kernel row `ki` for every virtual pixel: `(pv × kw·c)`, read in place.
    fn patches<T>(&self, xp: &[T], ki: usize) -> Mat<T> {
        let start = ki * self.wp * self.c;
        Mat::view(
            &xp[start..self.image_len()],
            self.pv(),
            self.run(),
            self.c,
            1,
        )
    }
}

/// `y = conv(x, w) [+ bias]` for a geometry that [`supports`] accepts; layouts as in `cpu`.
pub(crate) fn forward<T: WithScratch>(
    g: &Geometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    forward_parts(g, &[(x, g.c_in)], 1, w, bias)
}

/// [`forward`] of the channel concatenation of the NCHW batches `parts` (`(data, channels)`),
/// each nearest-upsampled by `scale` (1: as they are).
pub(crate) fn forward_parts<T: WithScratch>(
    g: &Geometry,
    parts: &[(&[T], usize)],
    scale: usize,
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let grid = Grid::new(g);
    let (og, k, p, pv, run) = (g.c_out, g.k_len(), g.p_len(), grid.pv(), grid.run());
    let wr = taps_first(g, w);
    let sizes = ScratchSizes {
        image: grid.image_len(),
        cols: 0,
        out: pv * og,
    };
    for_each_image(g.n, sizes, og * p, |i, y_img, s, threads| {
        grid.pad_channels_last(parts, scale, i, &mut s.image);
        if og < CHANNEL_MAJOR_BELOW {
            return forward_channel_major(
                g, &grid, &wr, bias, &s.image, &mut s.out, y_img, threads,
            );
        }
        let out = &mut s.out[..pv * og];
        // The bias enters as the first gemm's initial value: no extra pass over the output.
        if let Some(b) = bias {
            for row in out.chunks_mut(og) {
                row.copy_from_slice(b);
            }
        }
        for ki in 0..g.kh {
            // Wr's columns of kernel row ki, transposed: (run × og), strides (1, k).
            let w_row = Mat::view(&wr[ki * run..], run, og, 1, k);
            let accumulate = bias.is_some() || ki > 0;
            let lhs = grid.patches(&s.image, ki);
            gemm(pv, og, run, out, accumulate, lhs, w_row, threads);
        }
        // Pixel-major virtual rows into the channel-major output, dropping the extra columns.
        for oh in 0..g.ho {
            let src = &out[oh * grid.wp * og..];
            transpose_strided(src, g.wo, og, og, &mut y_img[oh * g.wo..], p);
        }
    })
}

/// Output channel counts below which the forward gemm is formed channel-major.
pub(crate) const CHANNEL_MAJOR_BELOW: usize = 16;

/// One image of [`forward_parts`] for few output channels: `Yv (og × pv) = Σ_ki Wr_ki · view_kiᵀ`.
/// The gemm crate runs its register block down the destination's contiguous axis; pixel-major
/// `(pv × og)` would put `og` there, half a vector for 8 channels.
#[allow(clippy::too_many_arguments)]
fn forward_channel_major<T: Float>(
    g: &Geometry,
    grid: &Grid,
    wr: &[T],
    bias: Option<&[T]>,
    image: &[T],
    scratch: &mut [T],
    y_img: &mut [T],
    threads: usize,
) {
    let (og, k, p, pv, run) = (g.c_out, g.k_len(), g.p_len(), grid.pv(), grid.run());
    let out = &mut scratch[..og * pv];
    if let Some(b) = bias {
        for (plane, &v) in out.chunks_mut(pv).zip(b) {
            plane.fill(v);
        }
    }
    for ki in 0..g.kh {
        let w_row = Mat::view(&wr[ki * run..], og, run, k, 1);
        let start = ki * grid.wp * grid.c;
        let patches_t = Mat::view(&image[start..grid.image_len()], run, pv, 1, grid.c);
        gemm(
            og,
            pv,
            run,
            out,
            bias.is_some() || ki > 0,
            w_row,
            patches_t,
            threads,
        );
    }
    for (plane, dst) in out.chunks(pv).zip(y_img.chunks_mut(p)) {
        for (line, dst) in plane.chunks(grid.wp).zip(dst.chunks_mut(g.wo)) {
            dst.copy_from_slice(&line[..g.wo]);
        }
    }
}

/// `dw = ∂⟨conv(x, w), dy⟩/∂w` summed over the batch, for a geometry [`supports`] accepts.
pub(crate) fn weight_grad<T: WithScratch>(g: &Geometry, x: &[T], dy: &[T]) -> Vec<T> {
    weight_grad_parts(g, &[(x, g.c_in)], 1, dy)
}

/// [`weight_grad`] for the channel concatenation of the NCHW batches `parts`, each
/// nearest-upsampled by `scale`.
pub(crate) fn weight_grad_parts<T: WithScratch>(
    g: &Geometry,
    parts: &[(&[T], usize)],
    scale: usize,
    dy: &[T],
) -> Vec<T> {
    let grid = Grid::new(g);
    let (og, k, p, pv, run) = (g.c_out, g.k_len(), g.p_len(), grid.pv(), grid.run());
    let sizes = ScratchSizes {
        image: grid.image_len(),
        cols: run * og,
        out: og * pv,
    };
    let accumulate =
        |images: std::ops::Range<usize>, dwr: &mut [T], s: &mut Scratch<T>, threads: usize| {
            for i in images {
                grid.pad_channels_last(parts, scale, i, &mut s.image);
                // dY on the virtual grid, (og × pv), zero on the extra columns so that the patches
                // read there add nothing.
                let dyv = &mut s.out[..og * pv];
                let dy_img = &dy[i * og * p..(i + 1) * og * p];
                for (plane, dst) in dy_img.chunks(p).zip(dyv.chunks_mut(pv)) {
                    for (line, dst) in plane.chunks(g.wo).zip(dst.chunks_mut(grid.wp)) {
                        dst[..g.wo].copy_from_slice(line);
                        dst[g.wo..].fill(T::ZERO);
                    }
                }
                for ki in 0..g.kh {
                    let (dyv, patches) = (&s.out[..og * pv], grid.patches(&s.image, ki));
                    if run >= og {
                        let lhs = Mat::rows(dyv, og, pv);
                        let dst = &mut dwr[ki * run..];
                        gemm_strided(og, run, pv, dst, k, true, lhs, patches, threads);
                        continue;
                    }
                    // Few input channels (an RGB first layer): the gemm crate lays its register
                    // block along the destination's columns, so the product is formed as
                    // `(run × og)`, the longer side down, and added in transposed. Formed as
                    // `(og × run)` it ran at a tenth of the gemm's speed for `run = 9`.
                    let product = &mut s.cols[..run * og];
                    let lhs = Mat::view(&s.image[ki * grid.wp * g.c_in..], run, pv, 1, g.c_in);
                    let rhs = Mat::view(dyv, pv, og, 1, pv);
                    gemm(run, og, pv, product, false, lhs, rhs, threads);
                    for (r, line) in product.chunks(og).enumerate() {
                        for (o, v) in line.iter().enumerate() {
                            dwr[o * k + ki * run + r] += *v;
                        }
                    }
                }
            }
        };
    channels_first(g, &sum_over_images(g.n, sizes, g.c_out * k, accumulate))
}

/// `dx = ∂⟨conv(x, w), dy⟩/∂x` for a geometry [`supports_input_grad`] accepts: the forward
/// convolution of `dy`, padded by `k − 1 − p`, with the flipped, channel-swapped kernel.
pub(crate) fn input_grad<T: WithScratch>(g: &Geometry, dy: &[T], w: &[T]) -> Vec<T> {
    let flipped = Geometry {
        n: g.n,
        c_in: g.c_out,
        h: g.ho,
        w: g.wo,
        c_out: g.c_in,
        kh: g.kh,
        kw: g.kw,
        stride: 1,
        padding: g.kh - 1 - g.padding,
        dilation: 1,
        groups: 1,
        ho: g.h,
        wo: g.w,
    };
    let (c_in, c_out, taps) = (g.c_in, g.c_out, g.kh * g.kw);
    // wf[c][o][t'] = w[o][c][taps − 1 − t']: flipping both spatial axes reverses the taps.
    let mut wf = vec![T::ZERO; w.len()];
    for o in 0..c_out {
        for c in 0..c_in {
            for t in 0..taps {
                wf[(c * c_out + o) * taps + taps - 1 - t] = w[(o * c_in + c) * taps + t];
            }
        }
    }
    forward(&flipped, dy, &wf, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::cpu::testing::data;

    /// A concatenation given as parts gives what the concatenated batch gives, bit for bit.
    #[test]
    fn parts_equal_their_concatenation() {
        let (n, ca, cb, h, w) = (3, 2, 3, 6, 7);
        let g =
            Geometry::new("test", &[n, ca + cb, h, w], &[4, ca + cb, 3, 3], 1, 1, 1, 1).unwrap();
        let hw = h * w;
        let (a, b) = (data(n * ca * hw, 1), data(n * cb * hw, 2));
        let mut x = Vec::new();
        for i in 0..n {
            x.extend_from_slice(&a[i * ca * hw..(i + 1) * ca * hw]);
            x.extend_from_slice(&b[i * cb * hw..(i + 1) * cb * hw]);
        }
        let (wt, dy) = (data(4 * (ca + cb) * 9, 3), data(n * 4 * g.p_len(), 4));
        let parts = [(&a[..], ca), (&b[..], cb)];
        assert_eq!(
            forward(&g, &x, &wt, None),
            forward_parts(&g, &parts, 1, &wt, None)
        );
        assert_eq!(
            weight_grad(&g, &x, &dy),
            weight_grad_parts(&g, &parts, 1, &dy)
        );
    }

    /// A part read nearest-upsampled gives what the upsampled batch gives, bit for bit.
    #[test]
    fn upsampled_parts_equal_their_upsampling() {
        let (n, c, hs, ws, scale) = (2, 3, 3, 4, 2);
        let (h, w) = (hs * scale, ws * scale);
        let g = Geometry::new("test", &[n, c, h, w], &[4, c, 3, 3], 1, 1, 1, 1).unwrap();
        let low = data(n * c * hs * ws, 5);
        let up: Vec<f64> = (0..n * c)
            .flat_map(|plane| {
                let low = &low[plane * hs * ws..(plane + 1) * hs * ws];
                (0..h * w).map(move |q| low[(q / w / scale) * ws + (q % w) / scale])
            })
            .collect();
        let (wt, dy) = (data(4 * c * 9, 6), data(n * 4 * g.p_len(), 7));
        let parts = [(&low[..], c)];
        assert_eq!(
            forward(&g, &up, &wt, None),
            forward_parts(&g, &parts, scale, &wt, None)
        );
        assert_eq!(
            weight_grad(&g, &up, &dy),
            weight_grad_parts(&g, &parts, scale, &dy)
        );
    }
}
