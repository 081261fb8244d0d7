//! The IDX format of MNIST and Fashion-MNIST, gzip-compressed or raw.
//!
//! Layout: two zero bytes, a type byte (`0x08` = unsigned byte), the number of dimensions,
//! one big-endian `u32` per dimension, then the data. Images are `[N, 28, 28]`, labels `[N]`.

use std::io::Write;
use std::path::Path;

use flate2::{Compression, read::GzDecoder, write::GzEncoder};

use crate::error::{DataError, IoContext, Result};
use crate::image_set::ImageSet;

/// A decoded IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    /// Sizes of the dimensions.
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file (gzip or raw, detected from the first bytes).
pub fn read_idx_file(path: &Path) -> Result<IdxArray> {
    let bytes = std::fs::read(path).at(path)?;
    parse_idx(&bytes, path)
}

/// Parses IDX bytes (gzip or raw); `name` is used in error messages.
pub fn parse_idx(bytes: &[u8], name: &Path) -> Result<IdxArray> {
    let raw;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        raw = gunzip_idx(bytes, name)?;
        &raw[..]
    } else {
        bytes
    };
    if bytes.len() < 4 {
        return Err(DataError::format(name, "truncated IDX header"));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::format(
            name,
            format!(
                "bad IDX magic number {:02x}{:02x}{:02x}{:02x} (not an IDX file)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::format(
            name,
            format!(
                "IDX data type 0x{:02x} is not supported (only 0x08, unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 {
        return Err(DataError::format(name, "IDX file with zero dimensions"));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(DataError::format(name, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = idx_count(&dims, name)?;
    let body = &bytes[header..];
    if body.len() < count {
        return Err(DataError::format(
            name,
            format!(
                "truncated: dimensions {dims:?} need {count} data bytes, the file has {}",
                body.len()
            ),
        ));
    }
    if body.len() > count {
        return Err(DataError::format(
            name,
            format!(
                "{} unexpected bytes after the {count} data bytes of dimensions {dims:?}",
                body.len() - count
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

fn idx_count(dims: &[usize], name: &Path) -> Result<usize> {
    jem_io::checked_product(dims)
        .ok_or_else(|| DataError::format(name, format!("IDX dimensions {dims:?} overflow")))
}

/// Inflates a gzip-compressed IDX file, but only as far as its header justifies: the header
/// first, then the data bytes it declares (if deflate can produce that many from this file),
/// plus one byte to notice a stream that goes on.
fn gunzip_idx(bytes: &[u8], name: &Path) -> Result<Vec<u8>> {
    let corrupt =
        |e: jem_io::BoundedError| DataError::format(name, format!("corrupt gzip stream: {e}"));
    let mut z = GzDecoder::new(bytes);
    let mut out = jem_io::read_exact_bounded(&mut z, 4).map_err(corrupt)?;
    let ndim = out[3] as u64;
    out.extend(jem_io::read_exact_bounded(&mut z, 4 * ndim).map_err(corrupt)?);
    if out[..2] != [0, 0] || out[2] != 0x08 || ndim == 0 {
        return Ok(out); // parse_idx names the header's fault
    }
    let dims: Vec<usize> = out[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = idx_count(&dims, name)? as u64;
    let most = jem_io::max_inflated_len(bytes.len());
    if count > most {
        return Err(DataError::format(
            name,
            format!(
                "IDX dimensions {dims:?} declare {count} data bytes, more than a {}-byte gzip \
                 stream can hold ({most})",
                bytes.len()
            ),
        ));
    }
    jem_io::read_to_end_bounded(&mut z, count, &mut out).map_err(|e| match e {
        jem_io::BoundedError::TooLong { .. } => DataError::format(
            name,
            format!(
                "the gzip stream holds more than the {count} data bytes of dimensions {dims:?}"
            ),
        ),
        e => corrupt(e),
    })?;
    Ok(out)
}

/// Encodes an IDX array of unsigned bytes, gzip-compressed when `gzip` is set.
pub fn encode_idx(dims: &[usize], data: &[u8], gzip: bool) -> Result<Vec<u8>> {
    let expected: usize = dims.iter().product();
    if expected != data.len() || dims.is_empty() || dims.len() > 255 {
        return Err(DataError::Invalid(format!(
            "IDX dimensions {dims:?} do not match {} bytes",
            data.len()
        )));
    }
    let mut raw = vec![0u8, 0, 0x08, dims.len() as u8];
    for &d in dims {
        let d = u32::try_from(d)
            .map_err(|_| DataError::Invalid(format!("IDX dimension {d} too large")))?;
        raw.extend_from_slice(&d.to_be_bytes());
    }
    raw.extend_from_slice(data);
    if !gzip {
        return Ok(raw);
    }
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(&raw)
        .and_then(|_| enc.finish())
        .map_err(|e| DataError::Invalid(format!("gzip encoding failed: {e}")))
}

/// Writes an IDX file atomically (temporary file, then rename).
pub fn write_idx_file(path: &Path, dims: &[usize], data: &[u8], gzip: bool) -> Result<()> {
    crate::fsutil::write_atomic(path, &encode_idx(dims, data, gzip)?)
}

/// Builds an [`ImageSet`] from an image array `[N, H, W]` (or `[N, C, H, W]`) and a label
/// array `[N]`. `names` are the two sources, for error messages.
pub fn image_set_from_idx(
    images: IdxArray,
    labels: IdxArray,
    num_classes: usize,
    names: (&Path, &Path),
) -> Result<ImageSet> {
    let shape = match images.dims[..] {
        [_, h, w] => [1, h, w],
        [_, c, h, w] => [c, h, w],
        _ => {
            return Err(DataError::format(
                names.0,
                format!(
                    "image file has dimensions {:?}, expected [N, H, W]",
                    images.dims
                ),
            ));
        }
    };
    if labels.dims.len() != 1 {
        return Err(DataError::format(
            names.1,
            format!("label file has dimensions {:?}, expected [N]", labels.dims),
        ));
    }
    if labels.dims[0] != images.dims[0] {
        return Err(DataError::format(
            names.1,
            format!(
                "{} labels for the {} images of {}",
                labels.dims[0],
                images.dims[0],
                names.0.display()
            ),
        ));
    }
    if let Some((i, l)) = labels
        .data
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= num_classes)
    {
        return Err(DataError::format(
            names.1,
            format!("label {l} of record {i} is out of range (classes 0..{num_classes})"),
        ));
    }
    let labels = labels.data.iter().map(|&l| l as u32).collect();
    ImageSet::new(
        images.data,
        labels,
        shape,
        num_classes,
        &names.0.display().to_string(),
    )
}

/// Reads an image file and its label file into an [`ImageSet`].
pub fn load_idx_pair(images: &Path, labels: &Path, num_classes: usize) -> Result<ImageSet> {
    image_set_from_idx(
        read_idx_file(images)?,
        read_idx_file(labels)?,
        num_classes,
        (images, labels),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<usize>, Vec<u8>) {
        (vec![3, 2, 2], (0..12).collect())
    }

    #[test]
    fn roundtrip_raw_and_gzip() {
        let (dims, data) = sample();
        for gz in [false, true] {
            let bytes = encode_idx(&dims, &data, gz).unwrap();
            let a = parse_idx(&bytes, Path::new("x")).unwrap();
            assert_eq!(a.dims, dims);
            assert_eq!(a.data, data);
        }
    }

    #[test]
    fn header_bytes_are_official() {
        let bytes = encode_idx(&[2, 28, 28], &[0; 2 * 784], false).unwrap();
        assert_eq!(&bytes[..8], &[0, 0, 8, 3, 0, 0, 0, 2]);
        assert_eq!(&bytes[8..16], &[0, 0, 0, 28, 0, 0, 0, 28]);
    }

    #[test]
    fn errors_name_the_problem() {
        let (dims, data) = sample();
        let good = encode_idx(&dims, &data, false).unwrap();
        let name = Path::new("imgs.idx");
        let err = |b: &[u8]| parse_idx(b, name).unwrap_err().to_string();
        assert!(err(&good[..good.len() - 1]).contains("truncated"));
        assert!(err(&good[..6]).contains("truncated IDX header"));
        let mut bad = good.clone();
        bad[0] = 7;
        assert!(err(&bad).contains("magic"));
        let mut bad = good.clone();
        bad[2] = 0x0d;
        assert!(err(&bad).contains("not supported"));
        let mut long = good.clone();
        long.push(1);
        assert!(err(&long).contains("unexpected bytes"));
        let gz = encode_idx(&dims, &data, true).unwrap();
        assert!(err(&gz[..gz.len() / 2]).contains("imgs.idx"));
    }

    #[test]
    fn labels_checked() {
        let imgs = parse_idx(
            &encode_idx(&[2, 1, 1], &[1, 2], false).unwrap(),
            Path::new("i"),
        )
        .unwrap();
        let labels =
            parse_idx(&encode_idx(&[2], &[3, 10], false).unwrap(), Path::new("l")).unwrap();
        let e = image_set_from_idx(imgs.clone(), labels, 10, (Path::new("i"), Path::new("l")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("label 10 of record 1"), "{e}");
        let short = parse_idx(&encode_idx(&[1], &[3], false).unwrap(), Path::new("l")).unwrap();
        let e = image_set_from_idx(imgs, short, 10, (Path::new("i"), Path::new("l")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 labels for the 2 images"), "{e}");
    }
}
