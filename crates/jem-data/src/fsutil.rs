//! Atomic writes with this crate's error type: [`jem_io::atomic`] under its old path.

use std::path::Path;

use crate::error::{DataError, Result};

pub use jem_io::temp_path;

/// Writes `bytes` to `path` atomically ([`jem_io::write_atomic`]). A failure (such as a full
/// disk) leaves `path` untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    jem_io::write_atomic(path, bytes).map_err(into_data_error)
}

/// Like [`write_atomic`], with a closure that writes the content.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    jem_io::write_atomic_with(path, write).map_err(into_data_error)
}

fn into_data_error(e: jem_io::AtomicWriteError) -> DataError {
    DataError::Write(e)
}
