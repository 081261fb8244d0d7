//! A global allocator that measures, per thread, the peak of live bytes while an input is
//! parsed, and refuses outright (aborting with the input saved) an allocation far beyond
//! anything a fuzz input could justify.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// An allocation larger than this aborts the fuzz process at once (after the hook has saved
/// the input): a parser that asks for it would abort or swap on a user's machine too.
pub const HARD_LIMIT: usize = 1 << 30;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static HOOK: Cell<Option<fn(usize)>> = const { Cell::new(None) };
}

/// Counts the calling thread's allocations while armed (see [`measure`]).
pub struct Tracking;

fn on_alloc(size: usize) {
    if !ARMED.with(Cell::get) {
        return;
    }
    if size > HARD_LIMIT {
        ARMED.with(|a| a.set(false));
        if let Some(hook) = HOOK.with(Cell::get) {
            hook(size);
        }
        std::process::abort();
    }
    let live = LIVE.with(|l| {
        let v = l.get() + size as isize;
        l.set(v);
        v
    });
    PEAK.with(|p| p.set(p.get().max(live)));
}

fn on_free(size: usize) {
    if ARMED.with(Cell::get) {
        LIVE.with(|l| l.set(l.get() - size as isize));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the bookkeeping touches
// only const-initialized thread locals, which allocate nothing.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_free(layout.size());
        on_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f`, catching a panic, and returns its result with the peak of bytes it held live at
/// once (on this thread, when [`Tracking`] is the global allocator; 0 otherwise). `hook` runs
/// before the abort of an allocation over [`HARD_LIMIT`].
pub fn measure<T>(hook: fn(usize), f: impl FnOnce() -> T) -> (std::thread::Result<T>, usize) {
    HOOK.with(|h| h.set(Some(hook)));
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ARMED.with(|a| a.set(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    ARMED.with(|a| a.set(false));
    (out, PEAK.with(Cell::get).max(0) as usize)
}
