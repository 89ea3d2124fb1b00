//! The thread counts of a run: CPU kernels and data-loader workers, chosen together so that
//! they never ask for more threads than there are cores.

/// Automatic loader workers never exceed this: past it, batches arrive faster than any small
/// student consumes them and only memory grows.
pub const MAX_AUTO_WORKERS: usize = 4;

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
    // Started here rather than lazily so that its threads get a main thread's stack: training
    // runs on them (see `on_compute_pool`). An error only means the pool is already running.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(compute_threads(threads))
        .stack_size(POOL_STACK_BYTES)
        .build_global();
}

/// Stack of each compute thread: a main thread's, since whole training runs execute on one.
const POOL_STACK_BYTES: usize = 8 << 20;

/// Runs `work` on a thread of the compute pool (rayon's global pool, which crosskd-ops, the gemm
/// crate and candle split their kernels over) and returns its result; call [`apply`] first.
///
/// From a thread outside the pool, every parallel kernel hands its work to the pool and sleeps
/// until it is done: a wake-up and a context switch per kernel call, hundreds in a small
/// student's step, even with one thread. From a pool thread the kernel runs its first part in
/// place while the other threads steal the rest. Measured with `cargo xtask bench students --row
/// unet-32 --part crosskd` (fastest of 5 alternating runs): 32.7 → 25.8 ms a step on 1 thread,
/// 26.2 → 23.4 ms on 2.
pub fn on_compute_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    // `rayon::scope` runs its body on a pool thread when called from outside the pool.
    rayon::scope(|_| work())
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

/// Cores of this machine (1 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Threads the CPU kernels use: `RAYON_NUM_THREADS` when set, else `threads` (0 = every core).
pub fn compute_threads(threads: usize) -> usize {
    let from_env = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    match (from_env, threads) {
        (Some(n), _) => n,
        (None, 0) => cores(),
        (None, t) => t,
    }
}

/// Loader workers for `data.workers = configured` (None = automatic): automatic takes the cores
/// the compute threads leave free, at most [`MAX_AUTO_WORKERS`], so `workers + compute ≤ cores`;
/// when the kernels fill the cores that is 0 and batches are built on the training thread between
/// steps (no thread then competes with the kernels). An explicit count is used as given.
pub fn loader_workers(configured: Option<usize>, threads: usize) -> usize {
    match configured {
        Some(n) => n,
        None => cores()
            .saturating_sub(compute_threads(threads))
            .min(MAX_AUTO_WORKERS),
    }
}

/// A warning when an explicit worker count and the compute threads together exceed the cores.
pub fn oversubscription(configured: Option<usize>, threads: usize) -> Option<String> {
    let workers = configured?;
    let compute = compute_threads(threads);
    let cores = cores();
    (workers > 0 && workers + compute > cores).then(|| {
        format!(
            "data.workers = {workers} plus {compute} compute threads exceed the {cores} cores; \
             steps may slow down (leave data.workers out to choose automatically)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_workers_never_oversubscribe() {
        for threads in 0..=cores() + 2 {
            let w = loader_workers(None, threads);
            assert!(w <= MAX_AUTO_WORKERS);
            assert!(
                w == 0 || w + compute_threads(threads) <= cores(),
                "{threads}: {w}"
            );
        }
        assert_eq!(loader_workers(Some(3), 0), 3);
        assert!(oversubscription(None, 0).is_none());
        assert!(oversubscription(Some(cores()), cores()).is_some());
    }
}
