//! Atomic writes with this crate's error type: [`jem_io::atomic`] under its old path.

use std::path::Path;

use crate::error::Result;

pub use jem_io::temp_path;

/// Writes `bytes` to `path` atomically ([`jem_io::write_atomic`]). A failure (such as a full
/// disk) leaves `path` untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(jem_io::write_atomic(path, bytes)?)
}

/// Like [`write_atomic`], with a closure that writes the content.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    Ok(jem_io::write_atomic_with(path, write)?)
}
