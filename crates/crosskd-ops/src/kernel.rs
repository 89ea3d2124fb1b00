//! The f32/f64 dispatch shared by the hand-written CPU kernels: each kernel is written once,
//! generic over the float type, and these functions unwrap candle's storages for it, requiring
//! contiguous operands of one dtype and naming the op in every error.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, WithDType};

/// The contiguous part of `data` that `layout` describes, or an error naming `op`.
pub(crate) fn contiguous<'a, T>(
    data: &'a [T],
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!(
            "{op}: expected a contiguous tensor, got strides {:?}",
            layout.stride()
        ),
    }
}

/// A kernel of one contiguous operand.
pub(crate) trait UnaryFloatKernel {
    fn run<T: WithDType>(&self, a: &[T]) -> Vec<T>;
}

/// A kernel of two contiguous operands of one dtype.
pub(crate) trait BinaryFloatKernel {
    fn run<T: WithDType>(&self, a: &[T], b: &[T]) -> Vec<T>;
}

/// A kernel of three contiguous operands of one dtype.
pub(crate) trait TernaryFloatKernel {
    fn run<T: WithDType>(&self, a: &[T], b: &[T], c: &[T]) -> Vec<T>;
}

/// Runs `kernel` on an f32 or f64 operand.
pub(crate) fn run_unary_float(
    name: &str,
    kernel: &impl UnaryFloatKernel,
    (s, l): (&CpuStorage, &Layout),
) -> candle_core::Result<CpuStorage> {
    Ok(match s {
        CpuStorage::F32(a) => CpuStorage::F32(kernel.run(contiguous(a, l, name)?)),
        CpuStorage::F64(a) => CpuStorage::F64(kernel.run(contiguous(a, l, name)?)),
        other => bail!(
            "{name}: expected an f32 or f64 tensor, got {:?}",
            other.dtype()
        ),
    })
}

/// Runs `kernel` on two f32 or two f64 operands.
pub(crate) fn run_binary_float(
    name: &str,
    kernel: &impl BinaryFloatKernel,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
) -> candle_core::Result<CpuStorage> {
    Ok(match (s1, s2) {
        (CpuStorage::F32(a), CpuStorage::F32(b)) => {
            CpuStorage::F32(kernel.run(contiguous(a, l1, name)?, contiguous(b, l2, name)?))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b)) => {
            CpuStorage::F64(kernel.run(contiguous(a, l1, name)?, contiguous(b, l2, name)?))
        }
        (a, b) => bail!(
            "{name}: expected matching f32/f64 tensors, got {:?} and {:?}",
            a.dtype(),
            b.dtype()
        ),
    })
}

/// Runs `kernel` on three f32 or three f64 operands.
pub(crate) fn run_ternary_float(
    name: &str,
    kernel: &impl TernaryFloatKernel,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    (s3, l3): (&CpuStorage, &Layout),
) -> candle_core::Result<CpuStorage> {
    Ok(match (s1, s2, s3) {
        (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => {
            CpuStorage::F32(kernel.run(
                contiguous(a, l1, name)?,
                contiguous(b, l2, name)?,
                contiguous(c, l3, name)?,
            ))
        }
        (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => {
            CpuStorage::F64(kernel.run(
                contiguous(a, l1, name)?,
                contiguous(b, l2, name)?,
                contiguous(c, l3, name)?,
            ))
        }
        (a, b, c) => bail!(
            "{name}: expected matching f32/f64 tensors, got {:?}, {:?} and {:?}",
            a.dtype(),
            b.dtype(),
            c.dtype()
        ),
    })
}

/// `out[i] = f(&params(chunk), a[i], b[i], c[i])` over `block`-long chunks in parallel, each
/// output written once (no zero fill or copy of an input first: that extra pass over every large
/// tensor showed in the profile of the training step). `params` computes a chunk's constants once,
/// e.g. its channel's coefficients.
pub(crate) fn map3_blocks<T, P>(
    (a, b, c): (&[T], &[T], &[T]),
    block: usize,
    params: impl Fn(usize) -> P + Sync,
    f: impl Fn(&P, T, T, T) -> T + Copy + Sync,
) -> Vec<T>
where
    T: Copy + Send + Sync,
{
    use rayon::prelude::*;
    let len = a.len();
    assert!(
        b.len() == len && c.len() == len,
        "map3_blocks: operand lengths"
    );
    let block = block.max(1);
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(block)
        .zip(a.par_chunks(block))
        .zip(b.par_chunks(block).zip(c.par_chunks(block)))
        .enumerate()
        .for_each(|(i, ((o, ac), (bc, cc)))| {
            // `f` and `p` copied onto this frame: read through a pointer, the compiler would have
            // to assume the writes to `o` could change them, and would not vectorise the loop.
            let (f, p) = (f, params(i));
            for (o, ((&x, &y), &z)) in o.iter_mut().zip(ac.iter().zip(bc).zip(cc)) {
                o.write(f(&p, x, y, z));
            }
        });
    // SAFETY: the first `len` slots were split into chunks of the same lengths as the operands'
    // (all `len` long, asserted above), and every slot of every chunk was written in the loop.
    unsafe { out.set_len(len) };
    out
}

/// `out[i] = f(&params(chunk), a[i])`: [`map3_blocks`] for one operand.
pub(crate) fn map_blocks<T, P>(
    a: &[T],
    block: usize,
    params: impl Fn(usize) -> P + Sync,
    f: impl Fn(&P, T) -> T + Copy + Sync,
) -> Vec<T>
where
    T: Copy + Send + Sync,
{
    // The same slice three times: the extra reads hit the line just loaded.
    map3_blocks((a, a, a), block, params, move |p, x, _, _| f(p, x))
}

/// A zeroed `&mut [T]` over `chunk`. Zeroing each chunk of a new output just before a kernel
/// writes it keeps the zeros in cache: allocating the whole output zeroed (`vec![0; n]`) is a
/// single-threaded memset through memory first.
pub(crate) fn zeroed<T: Copy>(chunk: &mut [std::mem::MaybeUninit<T>], zero: T) -> &mut [T] {
    chunk.fill(std::mem::MaybeUninit::new(zero));
    // SAFETY: every element was initialised on the line above, and `MaybeUninit<T>` has the
    // layout of `T`.
    unsafe { &mut *(chunk as *mut [std::mem::MaybeUninit<T>] as *mut [T]) }
}

/// A new `len`-long output built in parallel `chunk`-long pieces: `fill(piece index, piece)`
/// gets each piece zeroed (see [`zeroed`]) and writes what it needs to.
pub(crate) fn build_in_chunks<T: Copy + Send + Sync>(
    len: usize,
    chunk: usize,
    zero: T,
    fill: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, piece)| fill(i, zeroed(piece, zero)));
    // SAFETY: the pieces cover the first `len` slots and `zeroed` initialised each one.
    unsafe { out.set_len(len) };
    out
}
