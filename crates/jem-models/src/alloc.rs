//! Allocator settings for conv-net training on the CPU.

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
