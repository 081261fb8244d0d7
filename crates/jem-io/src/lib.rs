//! Reading untrusted files without trusting their sizes, and writing files atomically.
//!
//! A file from the internet can declare any size in its header and a compressed stream can
//! inflate a thousandfold. The readers here grow their buffers only with the bytes actually
//! read, stop at a limit the caller justifies from the file itself, and say which limit was
//! hit. Nothing here allocates more than about twice the bytes it has read.
//!
//! ```
//! use std::io::Write;
//! use flate2::{Compression, write::ZlibEncoder};
//!
//! // 1 MiB of zeros compresses to about a kilobyte
//! let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
//! z.write_all(&vec![0u8; 1 << 20]).unwrap();
//! let packed = z.finish().unwrap();
//!
//! // the caller expected 100 bytes: reading stops just past them
//! let err = jem_io::inflate_zlib(&packed, 100).unwrap_err();
//! assert!(err.to_string().contains("more than the 100 bytes"));
//! assert_eq!(jem_io::inflate_zlib(&packed, 1 << 20).unwrap().len(), 1 << 20);
//! ```
//!
//! [`atomic`] writes every file of the workspace the same way: a temporary file in the
//! target's folder, flushed to disk, renamed over the target, and the folder flushed, so a
//! crash or a full disk leaves either the old file or the new one, never half of one.

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod bounded;

pub mod atomic;
#[cfg(feature = "image")]
pub mod image;
#[cfg(feature = "progress")]
pub mod progress;

pub use atomic::{AtomicWriteError, temp_path, write_atomic, write_atomic_with};
pub use bounded::{
    BoundedError, MAX_DEFLATE_RATIO, checked_product, inflate_gzip, inflate_zlib, max_inflated_len,
    read_exact_bounded, read_to_end_bounded,
};
