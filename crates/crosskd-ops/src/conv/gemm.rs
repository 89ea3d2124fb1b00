//! The float types of the convolution kernels and the one call into the gemm crate they share.

use super::transpose;

/// The float types the kernels run on.
pub(crate) trait Float:
    Copy + Send + Sync + 'static + std::ops::AddAssign + std::ops::Add<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;

    /// Transposes one 8×8 block (see [`transpose::transpose_block_scalar`]).
    fn transpose_block(src: &[Self], src_stride: usize, dst: &mut [Self], dst_stride: usize) {
        transpose::transpose_block_scalar(src, src_stride, dst, dst_stride)
    }
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;

    fn transpose_block(src: &[Self], src_stride: usize, dst: &mut [Self], dst_stride: usize) {
        transpose::transpose_block_f32(src, src_stride, dst, dst_stride)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

/// A strided `rows × cols` matrix view for gemm (base pointer, row stride, column stride).
#[derive(Clone, Copy)]
pub(crate) struct Mat<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

/// Where the last element of a `rows × cols` view with strides `(rs, cs)` lies, checked against
/// the slice length so the unsafe gemm call below only ever sees in-bounds views.
fn check_view(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    if rows > 0 && cols > 0 {
        let last = (rows - 1) * rs + (cols - 1) * cs;
        assert!(
            last < len,
            "gemm view {rows}x{cols} (strides {rs}, {cs}) exceeds its slice of {len}"
        );
    }
}

impl<T> Mat<T> {
    /// `s` read as a `rows × cols` matrix with strides `(rs, cs)`.
    pub(crate) fn view(s: &[T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        check_view(s.len(), rows, cols, rs, cs);
        Self {
            ptr: s.as_ptr(),
            rs: rs as isize,
            cs: cs as isize,
        }
    }

    /// `s` as a row-major `rows × cols` matrix.
    pub(crate) fn rows(s: &[T], rows: usize, cols: usize) -> Self {
        Self::view(s, rows, cols, cols, 1)
    }

    /// The transpose of a row-major `cols × rows` matrix stored in `s`, as `rows × cols`.
    pub(crate) fn transposed(s: &[T], rows: usize, cols: usize) -> Self {
        Self::view(s, rows, cols, 1, rows)
    }
}

/// `dst (m×n, row-major) = [dst +] lhs (m×k) · rhs (k×n)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
    threads: usize,
) {
    gemm_strided(m, n, k, dst, n, accumulate, lhs, rhs, threads)
}

/// [`gemm`] into a `dst` whose rows are `dst_stride` apart (a block of a wider matrix).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_strided<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_stride: usize,
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
    threads: usize,
) {
    check_view(dst.len(), m, n, dst_stride, 1);
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = if threads > 1 && m * n * k > 64 * 64 * 64 {
        ::gemm::Parallelism::Rayon(threads)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: every view was bounds-checked against its slice by `Mat::view` / `check_view`, and
    // dst is a distinct mutable slice, so it aliases neither operand.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
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
