//! Byte readers bounded by what the file can justify.

use std::fmt;
use std::io::{self, Read};

use flate2::read::{GzDecoder, ZlibDecoder};

/// The largest expansion of a deflate stream: each 258-byte match costs at least two bits
/// (plus block overhead), so `n` compressed bytes inflate to at most about `1032 * n` bytes.
/// A header that declares more than that is lying.
pub const MAX_DEFLATE_RATIO: u64 = 1032;

/// Why a bounded read failed.
#[derive(Debug)]
pub enum BoundedError {
    /// The stream held more bytes than the limit allowed.
    TooLong {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The stream ended early or was corrupt.
    Io(io::Error),
}

impl fmt::Display for BoundedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { limit } => write!(
                f,
                "the stream holds more than the {limit} bytes its header declares"
            ),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BoundedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::TooLong { .. } => None,
        }
    }
}

impl From<io::Error> for BoundedError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads all of `reader` into `out` (appending), failing with [`BoundedError::TooLong`] as soon
/// as more than `limit` bytes arrive. The buffer grows with the bytes read, never to `limit`
/// up front, so a lying limit costs nothing.
pub fn read_to_end_bounded<R: Read>(
    reader: R,
    limit: u64,
    out: &mut Vec<u8>,
) -> Result<(), BoundedError> {
    let start = out.len();
    let mut taken = reader.take(limit.saturating_add(1));
    taken.read_to_end(out)?;
    if (out.len() - start) as u64 > limit {
        out.truncate(start);
        return Err(BoundedError::TooLong { limit });
    }
    Ok(())
}

/// Reads exactly `n` bytes, growing the buffer only as they arrive (`read_exact` into a
/// zeroed `vec![0; n]` would allocate a lying `n` first).
pub fn read_exact_bounded<R: Read>(reader: R, n: u64) -> Result<Vec<u8>, BoundedError> {
    let mut out = Vec::new();
    reader.take(n).read_to_end(&mut out)?;
    if (out.len() as u64) < n {
        return Err(BoundedError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("truncated: {} of {n} bytes", out.len()),
        )));
    }
    Ok(out)
}

/// The most bytes `compressed_len` bytes of deflate data can inflate to.
pub fn max_inflated_len(compressed_len: usize) -> u64 {
    (compressed_len as u64)
        .saturating_mul(MAX_DEFLATE_RATIO)
        .saturating_add(64)
}

/// Inflates a zlib stream of at most `limit` bytes.
pub fn inflate_zlib(data: &[u8], limit: u64) -> Result<Vec<u8>, BoundedError> {
    let mut out = Vec::new();
    read_to_end_bounded(ZlibDecoder::new(data), limit, &mut out)?;
    Ok(out)
}

/// Inflates a gzip stream of at most `limit` bytes.
pub fn inflate_gzip(data: &[u8], limit: u64) -> Result<Vec<u8>, BoundedError> {
    let mut out = Vec::new();
    read_to_end_bounded(GzDecoder::new(data), limit, &mut out)?;
    Ok(out)
}

/// `a * b * ...` of sizes read from a file, or `None` on overflow.
pub fn checked_product<'a>(sizes: impl IntoIterator<Item = &'a usize>) -> Option<usize> {
    sizes.into_iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_exactly() {
        let data = [7u8; 10];
        let mut out = Vec::new();
        read_to_end_bounded(&data[..], 10, &mut out).unwrap();
        assert_eq!(out.len(), 10);
        let mut out = vec![1];
        let e = read_to_end_bounded(&data[..], 9, &mut out).unwrap_err();
        assert!(matches!(e, BoundedError::TooLong { limit: 9 }));
        assert_eq!(out, vec![1], "a failed read leaves the buffer as it was");
        assert_eq!(read_exact_bounded(&data[..], 4).unwrap(), vec![7; 4]);
        assert!(read_exact_bounded(&data[..], 11).is_err());
        // a lying length allocates nothing up front
        assert!(read_exact_bounded(&data[..], u64::MAX).is_err());
    }

    #[test]
    fn products_overflow_to_none() {
        assert_eq!(checked_product(&[2, 3, 4]), Some(24));
        assert_eq!(checked_product(&[]), Some(1));
        assert_eq!(checked_product(&[usize::MAX, 2]), None);
        assert_eq!(max_inflated_len(usize::MAX), u64::MAX);
    }
}
