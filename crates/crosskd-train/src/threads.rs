//! The thread count of the CPU kernels.

/// Asks candle's CPU kernels for `threads` threads (0 = leave the default: all cores), and runs
/// candle's element-wise ops on the calling thread (see [`serial_elementwise`]).
///
/// candle reads `RAYON_NUM_THREADS` when its thread pool starts, so this takes effect only if it
/// runs before the first tensor operation of the process; the binaries call it first thing. An
/// explicit `RAYON_NUM_THREADS` in the environment wins.
pub fn apply(threads: usize) {
    if threads > 0 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    serial_elementwise();
}

/// Sets `CANDLE_NUM_THREADS=1` unless the environment already sets it: candle's element-wise ops
/// (additions, products, and the gradient sums of every backward node) then run on the calling
/// thread, while convolutions and matrix products keep every thread of `RAYON_NUM_THREADS`.
///
/// candle splits an element-wise op of 64K elements or more over its own pool of spinning
/// workers: the caller spins until the others finish, and each worker spins again before it
/// sleeps, taking the core the convolution threads need next. The ops are memory-bound, so the
/// split gains little. On this project's shared 2-core machine, unset against 1, back to back: a
/// U-Net w8 student's step (`cargo xtask bench students --row unet-32 --part crosskd`) was
/// 1.7–3.7 times slower while four other builds shared it, 1.15–1.25 times (also at 64 px) when
/// it was quieter; the reference U-Net's (`cargo xtask bench train-step --crosskd-only`) 1.1–1.6
/// times.
/// Like `RAYON_NUM_THREADS`, it must be set before the first tensor operation.
pub fn serial_elementwise() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
