//! Errors of the model crate.

use std::path::{Path, PathBuf};

/// Errors of the model crate; messages name the file, tensor or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A bad configuration or an incompatible checkpoint.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file atomically failed (the message names the file and the step).
    #[error(transparent)]
    Write(#[from] jem_io::AtomicWriteError),
    /// An error of the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    /// An I/O error naming `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;
