//! Decoding untrusted image files (PNG, JPEG) with bounded memory: a few bytes of header
//! can declare 65535 x 65535 pixels, so the side and the decoder's allocations are capped
//! before any pixel buffer exists.
//!
//! ```
//! use jem_io::image::{ImageLimits, decode_rgb8};
//!
//! let dir = tempfile::tempdir()?;
//! let file = dir.path().join("one.png");
//! image::RgbImage::new(3, 2).save(&file)?;
//! let img = decode_rgb8(&file, ImageLimits::default())?;
//! assert_eq!(img.dimensions(), (3, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// The caps of one decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    /// The largest width and height accepted.
    pub max_side: u32,
    /// The most bytes the decoder may allocate.
    pub max_alloc: u64,
}

impl Default for ImageLimits {
    /// 4096 pixels a side, 256 MiB (a 4096 x 4096 RGBA image is 64 MiB).
    fn default() -> Self {
        Self {
            max_side: 4096,
            max_alloc: 256 << 20,
        }
    }
}

/// Why an image could not be decoded.
#[derive(Debug)]
pub struct ImageDecodeError {
    /// The file.
    pub path: PathBuf,
    /// The limits it was decoded under.
    pub limits: ImageLimits,
    /// The cause.
    pub kind: ImageDecodeErrorKind,
}

/// The cause of an [`ImageDecodeError`].
#[derive(Debug)]
pub enum ImageDecodeErrorKind {
    /// The file could not be opened or read.
    Open(std::io::Error),
    /// Not a decodable image, truncated, or over the limits.
    Decode(image::ImageError),
}

impl fmt::Display for ImageDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ImageDecodeErrorKind::Open(e) => write!(f, "{}: cannot open: {e}", self.path.display()),
            ImageDecodeErrorKind::Decode(e) => write!(
                f,
                "{}: cannot decode (at most {} pixels a side): {e}",
                self.path.display(),
                self.limits.max_side
            ),
        }
    }
}

impl std::error::Error for ImageDecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ImageDecodeErrorKind::Open(e) => Some(e),
            ImageDecodeErrorKind::Decode(e) => Some(e),
        }
    }
}

/// Decodes `path` (format guessed from its bytes) to 8-bit RGB under `limits`.
pub fn decode_rgb8(path: &Path, limits: ImageLimits) -> Result<image::RgbImage, ImageDecodeError> {
    let fail = |kind| ImageDecodeError {
        path: path.to_path_buf(),
        limits,
        kind,
    };
    let mut reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| fail(ImageDecodeErrorKind::Open(e)))?;
    let mut caps = image::Limits::default();
    caps.max_image_width = Some(limits.max_side);
    caps.max_image_height = Some(limits.max_side);
    caps.max_alloc = Some(limits.max_alloc);
    reader.limits(caps);
    let img = reader
        .decode()
        .map_err(|e| fail(ImageDecodeErrorKind::Decode(e)))?;
    Ok(img.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A PNG that declares `w x h` pixels and holds one CRC-less IHDR chunk, no data.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(w.to_be_bytes());
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
        v.extend(13u32.to_be_bytes());
        v.extend(&ihdr);
        v.extend(crc32(&ihdr).to_be_bytes());
        v
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn a_huge_declared_size_is_refused_before_any_pixel_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "huge.png", &png_header(65535, 65535));
        let e = decode_rgb8(&p, ImageLimits::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("huge.png") && msg.contains("4096"), "{msg}");
        assert!(matches!(e.kind, ImageDecodeErrorKind::Decode(_)));
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        // within the side cap but over the allocation cap
        let p = write(dir.path(), "wide.png", &png_header(4000, 4000));
        let small = ImageLimits {
            max_side: 4096,
            max_alloc: 1 << 20,
        };
        assert!(decode_rgb8(&p, small).is_err());
    }

    #[test]
    fn truncated_foreign_and_missing_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.png");
        image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
            .save(&good)
            .unwrap();
        let bytes = std::fs::read(&good).unwrap();
        for (name, content) in [
            ("cut.png", &bytes[..bytes.len() / 2]),
            ("header-only.png", &png_header(8, 8)[..]),
            ("text.png", &b"not an image at all"[..]),
            ("empty.png", &b""[..]),
        ] {
            let p = write(dir.path(), name, content);
            let e = decode_rgb8(&p, ImageLimits::default()).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
        let e = decode_rgb8(&dir.path().join("absent.png"), ImageLimits::default()).unwrap_err();
        assert!(matches!(e.kind, ImageDecodeErrorKind::Open(_)), "{e}");
        let img = decode_rgb8(&good, ImageLimits::default()).unwrap();
        assert_eq!(img.get_pixel(7, 7).0, [1, 2, 3]);
    }
}
