//! A counting global allocator: per-thread live and peak bytes while a fuzz execution runs, and a
//! hard ceiling on single allocations so that a header announcing 10^12 bytes is reported with
//! its input instead of taking the machine down.
//!
//! Register it in the binary that fuzzes (`#[global_allocator] static A: CountingAllocator =
//! CountingAllocator;`). Threads that are not *armed* (everything outside an execution) pay one
//! thread-local read per allocation and are not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

thread_local! {
    // Const-initialised, drop-free thread-locals: reading them never allocates, which is what
    // makes them usable from inside the allocator.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static CEILING: Cell<usize> = const { Cell::new(usize::MAX) };
    static TARGET: Cell<&'static str> = const { Cell::new("") };
    static INPUT: Cell<(*const u8, usize)> = const { Cell::new((std::ptr::null(), 0)) };
}

/// [`System`] with per-thread accounting for armed threads (see [`arm`]).
pub struct CountingAllocator;

/// Starts counting on this thread: live and peak bytes restart at 0; a single allocation above
/// `ceiling` bytes prints `target` and `input` (hex) to stderr and fails (the process aborts).
///
/// `input` must stay alive until [`disarm`] is called.
pub fn arm(target: &'static str, input: &[u8], ceiling: usize) {
    LIVE.with(|c| c.set(0));
    PEAK.with(|c| c.set(0));
    CEILING.with(|c| c.set(ceiling));
    TARGET.with(|c| c.set(target));
    INPUT.with(|c| c.set((input.as_ptr(), input.len())));
    ARMED.with(|c| c.set(true));
}

/// Stops counting on this thread and returns the peak of live bytes since [`arm`].
pub fn disarm() -> usize {
    ARMED.with(|c| c.set(false));
    INPUT.with(|c| c.set((std::ptr::null(), 0)));
    PEAK.with(Cell::get)
}

/// True when [`CountingAllocator`] is the global allocator of this process (else peaks read 0).
pub fn is_installed() -> bool {
    arm("", &[], usize::MAX);
    let probe = std::hint::black_box(vec![0u8; 4096]);
    drop(probe);
    disarm() >= 4096
}

fn record(delta: isize) {
    let live = LIVE.with(|c| {
        let v = c.get().saturating_add(delta);
        c.set(v);
        v
    });
    if live > 0 {
        PEAK.with(|c| c.set(c.get().max(live as usize)));
    }
}

/// Writes the report of an allocation above the ceiling without allocating (stderr is
/// unbuffered and its lock is a static).
fn report_ceiling(size: usize) {
    ARMED.with(|c| c.set(false));
    let target = TARGET.with(Cell::get);
    let ceiling = CEILING.with(Cell::get);
    let (ptr, len) = INPUT.with(Cell::get);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\ncrosskd-fuzz: target `{target}`: one allocation of {size} bytes, ceiling {ceiling}; input ({len} bytes, hex):\n"
    );
    if !ptr.is_null() {
        // SAFETY: `arm` documents that the input outlives the armed period, and this runs
        // inside it (the flag was set).
        let input = unsafe { std::slice::from_raw_parts(ptr, len) };
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for chunk in input.chunks(64) {
            let mut line = [0u8; 129];
            for (i, b) in chunk.iter().enumerate() {
                line[2 * i] = HEX[usize::from(b >> 4)];
                line[2 * i + 1] = HEX[usize::from(b & 15)];
            }
            line[2 * chunk.len()] = b'\n';
            let _ = err.write_all(&line[..2 * chunk.len() + 1]);
        }
    }
}

/// True when the allocation may proceed; false (after reporting) when it breaks the ceiling.
fn admit(size: usize) -> bool {
    if !ARMED.with(Cell::get) {
        return true;
    }
    if size > CEILING.with(Cell::get) {
        report_ceiling(size);
        return false;
    }
    record(size as isize);
    true
}

// SAFETY: every call is forwarded to `System` with the caller's layout; the bookkeeping touches
// only const thread-locals and never allocates or unwinds.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.with(Cell::get) {
            record(-(layout.size() as isize));
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            if new_size > CEILING.with(Cell::get) {
                report_ceiling(new_size);
                return std::ptr::null_mut();
            }
            record(new_size as isize - layout.size() as isize);
        }
        System.realloc(ptr, layout, new_size)
    }
}
