//! Matrix transposes for the channels-first ↔ channels-last conversions around the convolution
//! gemms. They run on every image of every convolution, forward and backward, so the 8×8 blocks
//! use AVX shuffles for f32 where the CPU has them.

use super::gemm::Float;

/// Side of the square blocks the transposes work in.
pub(crate) const BLOCK: usize = 8;

/// `dst (cols × rows) = srcᵀ` for a row-major `src (rows × cols)`, in 8×8 blocks.
pub(crate) fn transpose<T: Float>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    transpose_strided(src, rows, cols, cols, dst, rows)
}

/// `dst[c·dst_stride + r] = src[r·src_stride + c]` for `r < rows`, `c < cols`: [`transpose`]
/// between matrices whose rows are `src_stride` and `dst_stride` apart.
pub(crate) fn transpose_strided<T: Float>(
    src: &[T],
    rows: usize,
    cols: usize,
    src_stride: usize,
    dst: &mut [T],
    dst_stride: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    let (src, dst) = (
        &src[..(rows - 1) * src_stride + cols],
        &mut dst[..(cols - 1) * dst_stride + rows],
    );
    let (rows_in_blocks, cols_in_blocks) = (rows / BLOCK * BLOCK, cols / BLOCK * BLOCK);
    let mut block = |r0: usize, c0: usize| {
        T::transpose_block(
            &src[r0 * src_stride + c0..],
            src_stride,
            &mut dst[c0 * dst_stride + r0..],
            dst_stride,
        )
    };
    // Whichever side has its lines far apart is walked 8 lines at a time, so that only 8 of its
    // lines are live at once: lines a page or more apart share cache sets, and walking all of them
    // per block (say the 32 channel planes of an NCHW image) evicts each line before its second
    // half is read.
    if src_stride > dst_stride {
        for r0 in (0..rows_in_blocks).step_by(BLOCK) {
            for c0 in (0..cols_in_blocks).step_by(BLOCK) {
                block(r0, c0);
            }
        }
    } else {
        for c0 in (0..cols_in_blocks).step_by(BLOCK) {
            for r0 in (0..rows_in_blocks).step_by(BLOCK) {
                block(r0, c0);
            }
        }
    }
    // The ragged edges: last rows (all columns) and last columns (block rows).
    for r in 0..rows {
        let first_col = if r < rows_in_blocks {
            cols_in_blocks
        } else {
            0
        };
        for c in first_col..cols {
            dst[c * dst_stride + r] = src[r * src_stride + c];
        }
    }
}

/// The 8×8 block at the start of `src` (rows `src_stride` apart), transposed into the start of
/// `dst` (rows `dst_stride` apart), element by element.
pub(crate) fn transpose_block_scalar<T: Float>(
    src: &[T],
    src_stride: usize,
    dst: &mut [T],
    dst_stride: usize,
) {
    let mut block = [[T::ZERO; BLOCK]; BLOCK];
    for (i, line) in block.iter_mut().enumerate() {
        line.copy_from_slice(&src[i * src_stride..i * src_stride + BLOCK]);
    }
    for j in 0..BLOCK {
        for (i, o) in dst[j * dst_stride..j * dst_stride + BLOCK]
            .iter_mut()
            .enumerate()
        {
            *o = block[i][j];
        }
    }
}

/// [`transpose_block_scalar`] for f32 with AVX shuffles when the CPU has them.
pub(crate) fn transpose_block_f32(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        assert!(
            src.len() >= (BLOCK - 1) * src_stride + BLOCK,
            "transpose source block"
        );
        assert!(
            dst.len() >= (BLOCK - 1) * dst_stride + BLOCK,
            "transpose destination block"
        );
        // SAFETY: AVX is present, and both blocks lie inside their slices (asserted above).
        unsafe { avx::transpose_8x8(src.as_ptr(), src_stride, dst.as_mut_ptr(), dst_stride) };
        return;
    }
    transpose_block_scalar(src, src_stride, dst, dst_stride)
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// The classic three-stage 8×8 transpose: interleave row pairs, then pairs of pairs, then
    /// swap 128-bit halves.
    ///
    /// # Safety
    /// AVX must be available; `src` must point at 8 rows of 8 readable floats `src_stride` apart,
    /// `dst` at 8 rows of 8 writable floats `dst_stride` apart.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose_8x8(
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        let row = |i: usize| _mm256_loadu_ps(src.add(i * src_stride));
        let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
        let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
        let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
        let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
        let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ];
        for (j, v) in out.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(j * dst_stride), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: Float + PartialEq + std::fmt::Debug>(make: impl Fn(usize) -> T) {
        for (rows, cols) in [
            (1, 1),
            (3, 5),
            (8, 8),
            (16, 24),
            (13, 29),
            (32, 7),
            (40, 17),
        ] {
            let src: Vec<T> = (0..rows * cols).map(&make).collect();
            let mut dst = vec![T::ZERO; rows * cols];
            transpose(&src, rows, cols, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * cols + c],
                        "{rows}x{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }

    #[test]
    fn transpose_matches_the_definition() {
        check(|i| i as f32);
        check(|i| i as f64);
    }

    #[test]
    fn strided_transpose_leaves_the_gaps_alone() {
        let (rows, cols, src_stride, dst_stride) = (11, 9, 13, 15);
        let src: Vec<f32> = (0..rows * src_stride).map(|i| i as f32).collect();
        let mut dst = vec![-1.0f32; cols * dst_stride];
        transpose_strided(&src, rows, cols, src_stride, &mut dst, dst_stride);
        for c in 0..cols {
            for r in 0..dst_stride {
                let want = if r < rows {
                    src[r * src_stride + c]
                } else {
                    -1.0
                };
                assert_eq!(dst[c * dst_stride + r], want, "({r}, {c})");
            }
        }
    }

    #[test]
    fn f32_blocks_match_the_scalar_blocks() {
        let src: Vec<f32> = (0..20 * 11).map(|i| i as f32 * 0.5).collect();
        let (mut fast, mut slow) = (vec![0.0; 9 * 12], vec![0.0; 9 * 12]);
        transpose_block_f32(&src[3..], 11, &mut fast[1..], 12);
        transpose_block_scalar(&src[3..], 11, &mut slow[1..], 12);
        assert_eq!(fast, slow);
    }
}
