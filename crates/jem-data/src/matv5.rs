//! A reader (and writer) for MATLAB level-5 MAT-files, as used by SVHN's `*_32x32.mat`.
//!
//! Supports numeric arrays stored plainly or inside zlib-compressed elements (`miCOMPRESSED`,
//! which MATLAB and `scipy.io.savemat(do_compression=True)` write), little- or big-endian,
//! with the data stored in any numeric type (MATLAB stores a double array whose values fit in
//! a byte as `miUINT8`). Cells, structs, sparse and character arrays are skipped.

use std::io::Write;
use std::path::Path;

use flate2::{Compression, read::ZlibDecoder, write::ZlibEncoder};

use crate::error::{DataError, IoContext, Result};

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// MATLAB array class of a double array.
pub const MX_DOUBLE: u8 = 6;
/// MATLAB array class of a uint8 array.
pub const MX_UINT8: u8 = 9;

/// One numeric variable of a MAT-file.
#[derive(Clone, Debug, PartialEq)]
pub struct MatArray {
    /// Variable name.
    pub name: String,
    /// MATLAB class (`mxDOUBLE_CLASS` = 6, `mxUINT8_CLASS` = 9, ...).
    pub class: u8,
    /// Dimensions; the data is column-major (first index fastest).
    pub dims: Vec<usize>,
    mi_type: u32,
    big_endian: bool,
    bytes: Vec<u8>,
}

fn type_size(t: u32) -> Option<usize> {
    Some(match t {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        _ => return None,
    })
}

impl MatArray {
    /// Number of values.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// The values as bytes; fails (naming the variable) unless each is an integer in 0..=255.
    pub fn to_u8(&self) -> std::result::Result<Vec<u8>, String> {
        if self.mi_type == MI_UINT8 {
            return Ok(self.bytes.clone());
        }
        self.to_f64()
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                if v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
                    Ok(v as u8)
                } else {
                    Err(format!("value {v} at {i} of `{}` is not a byte", self.name))
                }
            })
            .collect()
    }

    /// The values as `f64`.
    pub fn to_f64(&self) -> Vec<f64> {
        let size = type_size(self.mi_type).expect("checked when read");
        self.bytes
            .chunks_exact(size)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..size].copy_from_slice(c);
                if self.big_endian {
                    b[..size].reverse();
                }
                match self.mi_type {
                    MI_INT8 => b[0] as i8 as f64,
                    MI_UINT8 => b[0] as f64,
                    MI_INT16 => i16::from_le_bytes([b[0], b[1]]) as f64,
                    MI_UINT16 => u16::from_le_bytes([b[0], b[1]]) as f64,
                    MI_INT32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                    MI_UINT32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                    MI_SINGLE => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                    MI_DOUBLE => f64::from_le_bytes(b),
                    MI_INT64 => i64::from_le_bytes(b) as f64,
                    _ => u64::from_le_bytes(b) as f64,
                }
            })
            .collect()
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    big: bool,
}

impl<'a> Cursor<'a> {
    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.buf.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// Next element: (type, data). `None` at the end; `Err` when truncated.
    fn next(&mut self) -> std::result::Result<Option<(u32, &'a [u8])>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let t = self
            .u32_at(self.pos)
            .ok_or("truncated element tag".to_string())?;
        if t >> 16 != 0 {
            let n = (t >> 16) as usize;
            let data = self
                .buf
                .get(self.pos + 4..self.pos + 4 + n.min(4))
                .ok_or("truncated small element")?;
            self.pos += 8;
            return Ok(Some((t & 0xffff, data)));
        }
        let n = self
            .u32_at(self.pos + 4)
            .ok_or("truncated element tag".to_string())? as usize;
        let start = self.pos + 8;
        let data = self.buf.get(start..start + n).ok_or_else(|| {
            format!(
                "truncated: an element at byte {} announces {n} bytes, {} remain",
                self.pos,
                self.buf.len().saturating_sub(start)
            )
        })?;
        self.pos = if t == MI_COMPRESSED {
            start + n
        } else {
            start + n.div_ceil(8) * 8
        };
        Ok(Some((t, data)))
    }
}

/// Reads every numeric variable of a MAT-file.
pub fn read_mat_file(path: &Path) -> Result<Vec<MatArray>> {
    let bytes = std::fs::read(path).at(path)?;
    parse_mat(&bytes).map_err(|m| DataError::format(path, m))
}

/// Parses MAT-file bytes; errors are plain messages (the caller adds the file name).
pub fn parse_mat(bytes: &[u8]) -> std::result::Result<Vec<MatArray>, String> {
    if bytes.len() < 128 {
        return Err("truncated: shorter than the 128-byte MAT-file header".into());
    }
    let big = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        _ => return Err("not a MATLAB 5.0 MAT-file (no endian indicator in the header; v7.3/HDF5 files are not supported)".into()),
    };
    let mut out = Vec::new();
    let mut cur = Cursor {
        buf: bytes,
        pos: 128,
        big,
    };
    while let Some((t, data)) = cur.next()? {
        match t {
            MI_MATRIX => out.extend(parse_matrix(data, big)?),
            MI_COMPRESSED => {
                let raw = inflate_element(data, big)?;
                let mut inner = Cursor {
                    buf: &raw,
                    pos: 0,
                    big,
                };
                while let Some((t, d)) = inner.next()? {
                    if t == MI_MATRIX {
                        out.extend(parse_matrix(d, big)?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Inflates a compressed element only as far as the element inside it declares (plus 8 bytes
/// of padding slack), and only if deflate can produce that much from `data`.
fn inflate_element(data: &[u8], big: bool) -> std::result::Result<Vec<u8>, String> {
    let corrupt = |e: jem_io::BoundedError| format!("corrupt compressed element: {e}");
    let mut z = ZlibDecoder::new(data);
    let mut raw = jem_io::read_exact_bounded(&mut z, 8).map_err(corrupt)?;
    let tag = Cursor {
        buf: &raw,
        pos: 0,
        big,
    };
    let t = tag.u32_at(0).unwrap_or(0);
    let declared = if t >> 16 != 0 {
        0
    } else {
        u64::from(tag.u32_at(4).unwrap_or(0))
    };
    let limit = declared + 8;
    let most = jem_io::max_inflated_len(data.len());
    if limit > most {
        return Err(format!(
            "a compressed element of {} bytes declares {declared} inflated bytes, more than \
             deflate can produce ({most})",
            data.len()
        ));
    }
    jem_io::read_to_end_bounded(&mut z, limit, &mut raw).map_err(|e| match e {
        jem_io::BoundedError::TooLong { .. } => {
            format!("a compressed element inflates past the {declared} bytes its element declares")
        }
        e => corrupt(e),
    })?;
    Ok(raw)
}

fn parse_matrix(data: &[u8], big: bool) -> std::result::Result<Option<MatArray>, String> {
    let mut cur = Cursor {
        buf: data,
        pos: 0,
        big,
    };
    let mut sub = || -> std::result::Result<(u32, &[u8]), String> {
        cur.next()?
            .ok_or_else(|| "truncated matrix element".to_string())
    };
    let (_, flags) = sub()?;
    if flags.len() < 4 {
        return Err("truncated array flags".into());
    }
    let class = if big { flags[3] } else { flags[0] };
    let complex = (if big { flags[2] } else { flags[1] }) & 0x08 != 0;
    if !(6..=15).contains(&class) {
        return Ok(None); // cell, struct, object, char, sparse: not needed here
    }
    let (dt, dims_raw) = sub()?;
    if dt != MI_INT32 {
        return Err(format!(
            "dimensions stored with type {dt}, expected miINT32"
        ));
    }
    let dims: Vec<usize> = dims_raw
        .chunks_exact(4)
        .map(|c| {
            let b = [c[0], c[1], c[2], c[3]];
            (if big {
                i32::from_be_bytes(b)
            } else {
                i32::from_le_bytes(b)
            })
            .max(0) as usize
        })
        .collect();
    let (_, name) = sub()?;
    let name = String::from_utf8_lossy(name).into_owned();
    let (mi_type, real) = sub()?;
    let size = type_size(mi_type)
        .ok_or_else(|| format!("variable `{name}`: unsupported data type {mi_type}"))?;
    let bytes = jem_io::checked_product(&dims).and_then(|n| n.checked_mul(size));
    if bytes != Some(real.len()) {
        return Err(format!(
            "variable `{name}`: {} data bytes for dimensions {dims:?} of {size}-byte values",
            real.len()
        ));
    }
    if complex {
        return Err(format!("variable `{name}` is complex; real data expected"));
    }
    Ok(Some(MatArray {
        name,
        class,
        dims,
        mi_type,
        big_endian: big,
        bytes: real.to_vec(),
    }))
}

/// Data of a variable to write.
pub enum MatData<'a> {
    /// Bytes, stored as `miUINT8`.
    U8(&'a [u8]),
    /// Doubles, stored as `miDOUBLE`.
    F64(&'a [f64]),
}

fn element(out: &mut Vec<u8>, t: u32, data: &[u8]) {
    if data.len() <= 4 && t != MI_MATRIX {
        out.extend_from_slice(&(((data.len() as u32) << 16) | t).to_le_bytes());
        let mut d = [0u8; 4];
        d[..data.len()].copy_from_slice(data);
        out.extend_from_slice(&d);
        return;
    }
    out.extend_from_slice(&t.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(8) * 8, 0);
}

/// Encodes a little-endian level-5 MAT-file with the given variables (class `class`, data
/// column-major), each in its own zlib-compressed element when `compress` is set.
pub fn encode_mat(vars: &[(&str, u8, &[usize], MatData)], compress: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut text = b"MATLAB 5.0 MAT-file, written by sadajem".to_vec();
    text.resize(116, b' ');
    out.extend_from_slice(&text);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    for (name, class, dims, data) in vars {
        let mut m = Vec::new();
        let mut flags = [0u8; 8];
        flags[0] = *class;
        element(&mut m, MI_UINT32, &flags);
        let d: Vec<u8> = dims
            .iter()
            .flat_map(|&x| (x as i32).to_le_bytes())
            .collect();
        element(&mut m, MI_INT32, &d);
        element(&mut m, MI_INT8, name.as_bytes());
        match data {
            MatData::U8(b) => element(&mut m, MI_UINT8, b),
            MatData::F64(v) => {
                let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                element(&mut m, MI_DOUBLE, &b)
            }
        }
        let mut whole = Vec::new();
        element(&mut whole, MI_MATRIX, &m);
        if compress {
            let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
            z.write_all(&whole).expect("write to a Vec");
            let c = z.finish().expect("write to a Vec");
            out.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(&c);
        } else {
            out.extend_from_slice(&whole);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_plain_and_compressed() {
        let x: Vec<u8> = (0..24).collect();
        let y = [10.0, 1.0, 3.0];
        for compress in [false, true] {
            let bytes = encode_mat(
                &[
                    ("X", MX_UINT8, &[2, 3, 4], MatData::U8(&x)),
                    ("y", MX_DOUBLE, &[3, 1], MatData::F64(&y)),
                ],
                compress,
            );
            let vars = parse_mat(&bytes).unwrap();
            assert_eq!(vars.len(), 2);
            assert_eq!(vars[0].name, "X");
            assert_eq!(vars[0].dims, vec![2, 3, 4]);
            assert_eq!(vars[0].to_u8().unwrap(), x);
            assert_eq!(vars[1].to_f64(), y.to_vec());
            assert_eq!(vars[1].to_u8().unwrap(), vec![10, 1, 3]);
        }
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let x: Vec<u8> = (0..200).map(|i| i as u8).collect();
        for compress in [false, true] {
            let bytes = encode_mat(&[("X", MX_UINT8, &[200], MatData::U8(&x))], compress);
            let e = parse_mat(&bytes[..bytes.len() - 9]).unwrap_err();
            assert!(e.contains("truncated") || e.contains("corrupt"), "{e}");
        }
        assert!(parse_mat(&[0u8; 50]).unwrap_err().contains("header"));
        assert!(
            parse_mat(&[b'x'; 200])
                .unwrap_err()
                .contains("not a MATLAB")
        );
    }
}
