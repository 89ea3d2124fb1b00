//! CPU kernels of the convolution: the forward pass and both gradients on contiguous NCHW
//! slices, each dispatched to the kernel that fits its geometry.
//!
//! Dense, undilated stride-1 geometries run on the implicit-im2col kernels (`implicit`), whose
//! gemms read the patches in place from a padded channels-last image. Grouped (depthwise),
//! dilated and strided geometries run on the explicit im2col kernels (`patches`). Pointwise convolutions multiply the NCHW
//! planes directly (in `patches`).

use super::geometry::Geometry;
use super::implicit;
use super::patches;
use super::scratch::WithScratch;

/// `y = conv(x, w) [+ bias]`; `x: (n, c_in, h, w)`, `w: (c_out, c_in/groups, kh, kw)` contiguous,
/// `bias: (c_out)`. Returns `y: (n, c_out, ho, wo)`.
pub(crate) fn conv_forward<T: WithScratch>(
    g: &Geometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    if implicit::supports(g) {
        implicit::forward(g, x, w, bias)
    } else {
        patches::forward(g, x, w, bias)
    }
}

/// `dx = ∂⟨conv(x, w), dy⟩/∂x` (also the forward pass of the transposed convolution).
pub(crate) fn conv_input_grad<T: WithScratch>(g: &Geometry, dy: &[T], w: &[T]) -> Vec<T> {
    if implicit::supports_input_grad(g) {
        implicit::input_grad(g, dy, w)
    } else {
        patches::input_grad(g, dy, w)
    }
}

/// `dw = ∂⟨conv(x, w), dy⟩/∂w`, summed over the batch.
pub(crate) fn conv_weight_grad<T: WithScratch>(g: &Geometry, x: &[T], dy: &[T]) -> Vec<T> {
    if implicit::supports(g) {
        implicit::weight_grad(g, x, dy)
    } else {
        patches::weight_grad(g, x, dy)
    }
}

/// Test data shared by the kernel tests.
#[cfg(test)]
pub(crate) mod testing {
    /// Deterministic values in `[-1, 1)`, a different sequence per `seed`.
    pub(crate) fn data(len: usize, seed: u64) -> Vec<f64> {
        (0..len)
            .map(|i| (((i as u64 + 1) * (seed * 2 + 7919)) % 97) as f64 / 48.5 - 1.0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::data;
    use super::*;
    use crate::gradcheck::max_abs_diff;

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

    /// Which kernels a test runs.
    #[derive(Debug, Clone, Copy)]
    enum Path {
        Dispatched,
        Patches,
    }

    fn run(path: Path, g: &Geometry, x: &[f64], w: &[f64], dy: &[f64]) -> [Vec<f64>; 3] {
        match path {
            Path::Dispatched => [
                conv_forward(g, x, w, None),
                conv_input_grad(g, dy, w),
                conv_weight_grad(g, x, dy),
            ],
            Path::Patches => [
                patches::forward(g, x, w, None),
                patches::input_grad(g, dy, w),
                patches::weight_grad(g, x, dy),
            ],
        }
    }

    /// (input shape, weight shape, stride, padding, dilation, groups): grouped, depthwise,
    /// strided, dilated, odd sizes, non-square kernels, padding beyond the kernel, pointwise,
    /// and an RGB input with more outputs than patch columns per kernel row.
    type Case = ([usize; 4], [usize; 4], usize, usize, usize, usize);

    const CASES: [Case; 18] = [
        ([3, 4, 7, 6], [6, 2, 3, 3], 1, 1, 1, 2),
        ([2, 3, 9, 8], [5, 3, 3, 2], 2, 2, 1, 1),
        ([1, 2, 8, 8], [4, 2, 3, 3], 3, 0, 2, 1),
        ([4, 3, 6, 7], [4, 3, 3, 3], 1, 1, 1, 1),
        ([2, 3, 4, 5], [2, 3, 1, 1], 1, 0, 1, 1),
        ([2, 4, 5, 5], [4, 1, 3, 3], 1, 1, 1, 4),
        ([1, 2, 5, 9], [3, 2, 2, 4], 1, 3, 1, 1),
        ([2, 9, 8, 8], [10, 9, 3, 3], 2, 1, 1, 1),
        ([3, 8, 9, 7], [8, 8, 3, 3], 2, 1, 1, 1),
        ([2, 5, 6, 6], [3, 5, 3, 3], 1, 0, 1, 1),
        ([2, 3, 7, 7], [4, 3, 5, 5], 1, 2, 1, 1),
        ([1, 3, 10, 9], [4, 3, 7, 7], 2, 3, 1, 1),
        ([2, 6, 6, 5], [3, 6, 2, 2], 2, 0, 1, 1),
        ([3, 16, 9, 17], [8, 16, 3, 3], 1, 1, 1, 1),
        ([2, 8, 8, 8], [16, 8, 3, 3], 1, 2, 1, 1),
        ([2, 3, 5, 6], [2, 3, 2, 2], 1, 1, 1, 1),
        ([1, 9, 11, 10], [9, 9, 3, 3], 1, 0, 1, 1),
        ([2, 3, 6, 6], [16, 3, 3, 3], 1, 1, 1, 1),
    ];

    fn geometry(case: usize) -> Geometry {
        let (xs, ws, stride, pad, dil, groups) = CASES[case];
        Geometry::new("test", &xs, &ws, stride, pad, dil, groups).unwrap()
    }

    /// The implicit kernels are exercised by enough of the cases, on every pass.
    #[test]
    fn cases_cover_both_kernel_families() {
        let gs: Vec<Geometry> = (0..CASES.len()).map(geometry).collect();
        assert!(gs.iter().filter(|g| implicit::supports(g)).count() >= 8);
        assert!(
            gs.iter()
                .filter(|g| implicit::supports_input_grad(g))
                .count()
                >= 7
        );
        assert!(gs.iter().filter(|g| !implicit::supports(g)).count() >= 3);
        // Both orientations of the implicit forward gemm (the input gradient is a forward too).
        let implicit_outputs = gs.iter().filter(|g| implicit::supports(g)).map(|g| g.c_out);
        let (few, many): (Vec<usize>, Vec<usize>) =
            implicit_outputs.partition(|&c| c < implicit::CHANNEL_MAJOR_BELOW);
        assert!(few.len() >= 3 && many.len() >= 2, "{few:?} {many:?}");
    }

    /// `⟨conv(x, w), dy⟩ = ⟨x, input_grad(dy, w)⟩ = ⟨w, weight_grad(x, dy)⟩` on both kernel
    /// families, with images split into several bands (unit tests use tiny bands) and both
    /// threading paths.
    #[test]
    fn gradients_are_adjoint_to_the_forward_pass() {
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        for case in 0..CASES.len() {
            let g = geometry(case);
            let x = data(g.x_dims().iter().product(), 5);
            let w = data(g.w_dims().iter().product(), 6);
            let dy = data(g.n * g.c_out * g.p_len(), 7);
            for path in [Path::Dispatched, Path::Patches] {
                let [y, dx, dw] = run(path, &g, &x, &w, &dy);
                let reference = dot(&y, &dy);
                let tol = 1e-9 * reference.abs().max(1.0);
                assert!(
                    (dot(&x, &dx) - reference).abs() < tol,
                    "input grad, case {case} ({path:?})"
                );
                assert!(
                    (dot(&w, &dw) - reference).abs() < tol,
                    "weight grad, case {case} ({path:?})"
                );
            }
        }
    }

    #[test]
    fn forward_matches_direct_loops() {
        for case in 0..CASES.len() {
            let g = geometry(case);
            let x = data(g.x_dims().iter().product(), 1);
            let w = data(g.w_dims().iter().product(), 2);
            let slow = naive(&g, &x, &w);
            let dispatched = conv_forward(&g, &x, &w, None);
            let patched = patches::forward(&g, &x, &w, None);
            assert!(
                max_abs_diff(&dispatched, &slow) < 1e-12,
                "case {case}, dispatched"
            );
            assert!(
                max_abs_diff(&patched, &slow) < 1e-12,
                "case {case}, patches"
            );
        }
    }

    /// Both gradients agree between the two kernel families, value by value (adjointness alone
    /// would not catch an error that cancels in the inner product).
    #[test]
    fn gradients_agree_between_kernel_families() {
        for case in 0..CASES.len() {
            let g = geometry(case);
            let x = data(g.x_dims().iter().product(), 3);
            let w = data(g.w_dims().iter().product(), 4);
            let dy = data(g.n * g.c_out * g.p_len(), 8);
            let [_, dx_a, dw_a] = run(Path::Dispatched, &g, &x, &w, &dy);
            let [_, dx_b, dw_b] = run(Path::Patches, &g, &x, &w, &dy);
            assert!(
                max_abs_diff(&dx_a, &dx_b) < 1e-12,
                "case {case}, input grad"
            );
            assert!(
                max_abs_diff(&dw_a, &dw_b) < 1e-12,
                "case {case}, weight grad"
            );
        }
    }

    /// A bias is added to every output pixel once, on both kernel families.
    #[test]
    fn bias_is_added_once_per_output() {
        for case in [3, 7, 0] {
            let g = geometry(case);
            let x = data(g.x_dims().iter().product(), 1);
            let w = data(g.w_dims().iter().product(), 2);
            let bias = data(g.c_out, 9);
            let mut want = naive(&g, &x, &w);
            for (i, v) in want.iter_mut().enumerate() {
                *v += bias[(i / g.p_len()) % g.c_out];
            }
            let got = conv_forward(&g, &x, &w, Some(&bias));
            assert!(max_abs_diff(&got, &want) < 1e-12, "case {case}");
        }
    }
}
