//! The error type of the data crate: every variant names the file, URL or field at fault.

use std::path::{Path, PathBuf};

/// Errors of the data crate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading or writing a file failed.
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
    /// A file does not follow its format (bad magic, truncated, label out of range, ...).
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where in the file.
        msg: String,
    },
    /// A file the data set needs is not there.
    #[error("{path}: not found ({what}). {hint}")]
    Missing {
        /// The file that is not there.
        path: PathBuf,
        /// What it would have held.
        what: String,
        /// How to get it.
        hint: String,
    },
    /// A file's checksum is not the published one.
    #[error("{path}: {algo} checksum mismatch: expected {expected}, got {actual}{note}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The digest (`md5`, `sha256`).
        algo: &'static str,
        /// The published digest.
        expected: String,
        /// The file's digest.
        actual: String,
        /// What happened to the file (e.g. deleted).
        note: String,
    },
    /// A download failed (`url` names the URL or the file).
    #[error("downloading {url} failed: {msg}")]
    Download {
        /// The URL (or file).
        url: String,
        /// What went wrong.
        msg: String,
    },
    /// A bad argument or configuration value; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// An image file could not be decoded (the message names it; the cause is kept).
    #[cfg(feature = "celeba")]
    #[error(transparent)]
    Image(#[from] jem_io::image::ImageDecodeError),
    /// An error of the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// A format error for `path`.
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        DataError::Format {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    /// An I/O error for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Attach a path to I/O errors: `file.read(..).at(path)?`.
pub trait IoContext<T> {
    /// Turns an `io::Error` into [`DataError::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| DataError::io(path, e))
    }
}
