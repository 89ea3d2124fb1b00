//! Per-thread work buffers of the convolution kernels and the two ways they split a batch over
//! threads (one share of the images per thread, or one image at a time with a parallel gemm).

use rayon::prelude::*;

use super::gemm::Float;
use crate::kernel::zeroed;

/// The threads the kernels may use: candle's setting, so `--threads` governs them too.
pub(crate) fn threads() -> usize {
    candle_core::utils::get_num_threads().max(1)
}

/// Lengths (in elements) a kernel needs of each [`Scratch`] buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScratchSizes {
    /// For one image in the kernel's own layout (channels-last, maybe padded).
    pub image: usize,
    /// For patches (the im2col kernels only).
    pub cols: usize,
    /// For one image's (or band's) gemm output before it is laid out as NCHW.
    pub out: usize,
}

/// Per-thread work buffers, kept between calls: allocating and zeroing them per call cost more
/// than the transposes they serve. Their contents are whatever the last call left.
pub(crate) struct Scratch<T> {
    pub image: Vec<T>,
    pub cols: Vec<T>,
    pub out: Vec<T>,
}

impl<T: Float> Scratch<T> {
    const EMPTY: Self = Self {
        image: Vec::new(),
        cols: Vec::new(),
        out: Vec::new(),
    };

    /// Grows the buffers to at least `sizes`.
    fn fit(&mut self, sizes: ScratchSizes) {
        let grow = |v: &mut Vec<T>, len: usize| {
            if v.len() < len {
                v.resize(len, T::ZERO);
            }
        };
        grow(&mut self.image, sizes.image);
        grow(&mut self.cols, sizes.cols);
        grow(&mut self.out, sizes.out);
    }
}

/// Access to this thread's [`Scratch`] for one float type.
pub(crate) trait WithScratch: Float {
    /// Runs `f` with this thread's scratch grown to `sizes`.
    fn with_scratch<R>(sizes: ScratchSizes, f: impl FnOnce(&mut Scratch<Self>) -> R) -> R;
}

macro_rules! thread_scratch {
    ($t:ty, $name:ident) => {
        thread_local! {
            static $name: std::cell::RefCell<Scratch<$t>> =
                const { std::cell::RefCell::new(Scratch::<$t>::EMPTY) };
        }
        impl WithScratch for $t {
            fn with_scratch<R>(sizes: ScratchSizes, f: impl FnOnce(&mut Scratch<Self>) -> R) -> R {
                $name.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut scratch) => {
                        scratch.fit(sizes);
                        f(&mut scratch)
                    }
                    // Re-entered on this thread (a nested parallel gemm ran another
                    // convolution's work here): use a private buffer.
                    Err(_) => {
                        let mut scratch = Scratch::EMPTY;
                        scratch.fit(sizes);
                        f(&mut scratch)
                    }
                })
            }
        }
    };
}

thread_scratch!(f32, SCRATCH_F32);
thread_scratch!(f64, SCRATCH_F64);

/// Whether a batch of `images` is split over the threads (each running single-threaded gemms on
/// its own images, which keeps the per-image matrices efficient) rather than run one image at a
/// time with a parallel gemm.
fn split_batch(images: usize, threads: usize) -> bool {
    threads > 1 && images >= threads
}

/// Builds an output of `images` chunks of `out_per_image` values by running
/// `per_image(image index, its chunk (zeroed), scratch, gemm threads)` for every image.
pub(crate) fn for_each_image<T: WithScratch, F>(
    images: usize,
    sizes: ScratchSizes,
    out_per_image: usize,
    per_image: F,
) -> Vec<T>
where
    F: Fn(usize, &mut [T], &mut Scratch<T>, usize) + Sync,
{
    let threads = threads();
    let len = images * out_per_image;
    let per_image_len = out_per_image.max(1);
    let mut out = Vec::with_capacity(len);
    let slots = &mut out.spare_capacity_mut()[..len];
    if split_batch(images, threads) {
        let share = images.div_ceil(threads);
        slots
            .par_chunks_mut(per_image_len * share)
            .enumerate()
            .for_each(|(t, chunk)| {
                T::with_scratch(sizes, |scratch| {
                    for (j, image) in chunk.chunks_mut(per_image_len).enumerate() {
                        per_image(t * share + j, zeroed(image, T::ZERO), scratch, 1);
                    }
                })
            });
    } else {
        T::with_scratch(sizes, |scratch| {
            for (i, image) in slots.chunks_mut(per_image_len).enumerate() {
                per_image(i, zeroed(image, T::ZERO), scratch, threads);
            }
        })
    }
    // SAFETY: the chunks above cover the first `len` slots, and `zeroed` initialised each one.
    unsafe { out.set_len(len) };
    out
}

/// `Σ` over `images` images of what `accumulate(images, sum, scratch, gemm threads)` adds into a
/// zeroed `len`-long sum: a partial sum per thread over its share of the batch, then added up.
pub(crate) fn sum_over_images<T: WithScratch, F>(
    images: usize,
    sizes: ScratchSizes,
    len: usize,
    accumulate: F,
) -> Vec<T>
where
    F: Fn(std::ops::Range<usize>, &mut [T], &mut Scratch<T>, usize) + Sync,
{
    let threads = threads();
    if !split_batch(images, threads) {
        let mut sum = vec![T::ZERO; len];
        T::with_scratch(sizes, |s| accumulate(0..images, &mut sum, s, threads));
        return sum;
    }
    let share = images.div_ceil(threads);
    let partials: Vec<Vec<T>> = (0..threads)
        .into_par_iter()
        .map(|t| {
            let mut sum = vec![T::ZERO; len];
            let range = (t * share).min(images)..((t + 1) * share).min(images);
            T::with_scratch(sizes, |s| accumulate(range, &mut sum, s, 1));
            sum
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut sum = parts.next().unwrap_or_else(|| vec![T::ZERO; len]);
    for part in parts {
        for (a, b) in sum.iter_mut().zip(&part) {
            *a += *b;
        }
    }
    sum
}
