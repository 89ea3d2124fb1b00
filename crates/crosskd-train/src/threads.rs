//! The thread count of the CPU kernels.

/// Asks candle's CPU kernels for `threads` threads (0 = leave the default: all cores).
///
/// candle reads `RAYON_NUM_THREADS` when its thread pool starts, so this takes effect only if it
/// runs before the first tensor operation of the process; the binaries call it first thing. An
/// explicit `RAYON_NUM_THREADS` in the environment wins.
pub fn apply(threads: usize) {
    if threads > 0 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}
