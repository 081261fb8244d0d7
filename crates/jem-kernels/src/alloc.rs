//! Allocator and thread settings for conv-net training on the CPU.

/// Keeps freed activation buffers in the process (glibc): without this, every large buffer
/// (above glibc's adaptive mmap threshold) is a fresh mapping whose pages the kernel faults in
/// and zeroes on first touch, about a tenth of a training step's time. Call once at the start
/// of `main`, before other threads exist; does nothing on other platforms.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; the caller runs it before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// Turns off candle's own element-wise thread pool unless the user set `CANDLE_NUM_THREADS`.
/// Call once at the start of `main`, before other threads exist.
///
/// candle 0.11 splits element-wise operations of 64K elements or more over its own thread
/// pool, whose threads spin while they wait, beside rayon's pool that runs this crate's
/// convolutions and BatchNorm. With both pools on the same cores, a spinning thread takes the
/// core of the thread it waits for: on 2 cores, candle's main thread spent half of an SGLD
/// step spinning in its barrier (`BENCHMARKS.md`, "Measurements behind the kernels'
/// choices"). The workspace's patched
/// candle-core (`vendor/candle-core/PATCHED.md`) runs those operations on rayon's pool
/// instead; with stock candle they run on the calling thread.
pub fn tune_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called before any other thread exists (see above), so no thread reads the
        // environment concurrently.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}
