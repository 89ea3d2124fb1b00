//! How the process's allocator treats the large, short-lived buffers of training.

/// Keeps freed memory in the process instead of handing it back to the kernel.
///
/// Every training step allocates and frees the same few hundred megabytes of activations and
/// gradients in blocks of megabytes. glibc serves blocks that large with fresh `mmap`s and
/// returns them on free, so every step page-faults them back in and the kernel zeroes each page
/// again: about 6% of a UNet step on 2 cores (`cargo xtask bench train-step`). Raising the mmap
/// and trim thresholds makes freed blocks reusable from the heap. A no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ONE_GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only adjusts allocator parameters; it is called before the process
        // starts any threads of its own.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_GIB);
            libc::mallopt(libc::M_TRIM_THRESHOLD, ONE_GIB);
        }
    }
}

/// Resident memory of this process now, in MB (`VmRSS`; `None` where `/proc` is absent).
pub fn resident_mb() -> Option<f64> {
    proc_status_kb("VmRSS:").map(|kb| kb / 1024.0)
}

/// Peak resident memory of this process so far, in MB (`VmHWM`; `None` where `/proc` is absent).
pub fn peak_resident_mb() -> Option<f64> {
    proc_status_kb("VmHWM:").map(|kb| kb / 1024.0)
}

fn proc_status_kb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
