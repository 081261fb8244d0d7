//! NumPy `.npy` files (format versions 1 to 3): read any real or integer array, write f32 /
//! f64 arrays atomically.

use std::path::Path;

use crate::{MetricError, Result};

/// The values of an array, in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// `float32`.
    F32(Vec<f32>),
    /// `float64` (and `float16`, widened).
    F64(Vec<f64>),
    /// Signed integers of any width.
    Int(Vec<i64>),
    /// Unsigned integers of any width.
    UInt(Vec<u64>),
    /// `bool`.
    Bool(Vec<bool>),
}

/// An array read from a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// Its shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: NpyData,
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> MetricError {
    MetricError::Invalid(format!("{}: {msg}", path.display()))
}

impl NpyArray {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f64.
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            NpyData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            NpyData::F64(v) => v.clone(),
            NpyData::Int(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::UInt(v) => v.iter().map(|&x| x as f64).collect(),
            NpyData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
        }
    }

    /// The values as class labels: integers of any dtype, or floats holding integers, each
    /// in `0..classes`; `name` labels the errors.
    pub fn to_labels(&self, name: &str, classes: usize) -> Result<Vec<u32>> {
        let bad = |i: usize, v: String| {
            MetricError::Invalid(format!(
                "{name}[{i}] = {v} is not a class label in 0..{classes}"
            ))
        };
        let check = |i: usize, v: f64, shown: String| {
            if v.fract() == 0.0 && v >= 0.0 && v < classes as f64 {
                Ok(v as u32)
            } else {
                Err(bad(i, shown))
            }
        };
        match &self.data {
            NpyData::Int(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| check(i, x as f64, x.to_string()))
                .collect(),
            NpyData::UInt(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| check(i, x as f64, x.to_string()))
                .collect(),
            _ => self
                .to_f64()
                .into_iter()
                .enumerate()
                .map(|(i, x)| check(i, x, x.to_string()))
                .collect(),
        }
    }
}

/// Reads a `.npy` file; errors name the file and what is wrong with it.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| MetricError::read(path, e))?;
    parse_npy(&bytes).map_err(|m| invalid(path, m))
}

/// Parses the bytes of a `.npy` file.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr")
        .and_then(|v| v.strip_prefix('\'').and_then(|v| v.split('\'').next()))
        .ok_or("header has no 'descr'")?;
    let fortran = dict_value(header, "fortran_order")
        .map(|v| v.starts_with("True"))
        .ok_or("header has no 'fortran_order'")?;
    let shape_text = dict_value(header, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or("header has no 'shape'")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| format!("bad shape ({shape_text})"))?;
    let (order, kind, width) = parse_descr(descr)?;
    let body = &bytes[start + header_len..];
    let need = jem_io::checked_product(&shape)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| format!("shape {shape:?} of {descr} overflows"))?;
    if body.len() < need {
        return Err(format!(
            "truncated: shape {shape:?} of {descr} needs {need} data bytes, the file has {}",
            body.len()
        ));
    }
    let words = body[..need].chunks_exact(width).map(|c| {
        let mut w = [0u8; 8];
        w[..width].copy_from_slice(c);
        if order == '>' {
            w[..width].reverse();
        }
        u64::from_le_bytes(w)
    });
    let sign_extend = |w: u64| {
        let shift = 64 - 8 * width as u32;
        ((w << shift) as i64) >> shift
    };
    let data = match (kind, width) {
        ('f', 4) => NpyData::F32(words.map(|w| f32::from_bits(w as u32)).collect()),
        ('f', 8) => NpyData::F64(words.map(f64::from_bits).collect()),
        ('f', 2) => NpyData::F64(words.map(|w| f16_to_f64(w as u16)).collect()),
        ('i', _) => NpyData::Int(words.map(sign_extend).collect()),
        ('u', _) => NpyData::UInt(words.collect()),
        ('b', 1) => NpyData::Bool(words.map(|w| w != 0).collect()),
        _ => return Err(format!("unsupported dtype {descr}")),
    };
    let data = if fortran && shape.len() > 1 {
        to_c_order(data, &shape)
    } else {
        data
    };
    Ok(NpyArray { shape, data })
}

fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

fn parse_descr(descr: &str) -> std::result::Result<(char, char, usize), String> {
    let mut chars = descr.chars();
    let order = chars.next().ok_or("empty dtype")?;
    let kind = chars.next().ok_or("empty dtype")?;
    let width: usize = chars
        .as_str()
        .parse()
        .map_err(|_| format!("unsupported dtype {descr}"))?;
    if !matches!(order, '<' | '>' | '|' | '=') || !matches!(width, 1 | 2 | 4 | 8) {
        return Err(format!("unsupported dtype {descr}"));
    }
    if !matches!(kind, 'f' | 'i' | 'u' | 'b') {
        return Err(format!(
            "unsupported dtype {descr}: only real, integer and bool arrays"
        ));
    }
    Ok((if order == '>' { '>' } else { '<' }, kind, width))
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 if frac == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Reorders column-major values into row-major ones.
fn to_c_order(data: NpyData, shape: &[usize]) -> NpyData {
    fn reorder<T: Copy>(v: Vec<T>, shape: &[usize]) -> Vec<T> {
        let n = v.len();
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; shape.len()];
        for _ in 0..n {
            // Fortran offset of the C-order multi-index
            let (mut off, mut stride) = (0, 1);
            for (i, &s) in idx.iter().zip(shape) {
                off += i * stride;
                stride *= s;
            }
            out.push(v[off]);
            for d in (0..shape.len()).rev() {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    }
    match data {
        NpyData::F32(v) => NpyData::F32(reorder(v, shape)),
        NpyData::F64(v) => NpyData::F64(reorder(v, shape)),
        NpyData::Int(v) => NpyData::Int(reorder(v, shape)),
        NpyData::UInt(v) => NpyData::UInt(reorder(v, shape)),
        NpyData::Bool(v) => NpyData::Bool(reorder(v, shape)),
    }
}

/// Values [`write_npy`] can store.
pub trait NpyElement: Copy {
    /// The dtype descriptor, e.g. `<f8`.
    const DESCR: &'static str;
    /// Little-endian bytes.
    fn le_bytes(self, out: &mut Vec<u8>);
}

impl NpyElement for f64 {
    const DESCR: &'static str = "<f8";
    fn le_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn le_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
    fn le_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The bytes of a version-1 `.npy` file holding `values` with `shape` (C order).
pub fn npy_bytes<T: NpyElement>(shape: &[usize], values: &[T]) -> Result<Vec<u8>> {
    if shape.iter().product::<usize>() != values.len() {
        return Err(MetricError::Invalid(format!(
            "shape {shape:?} does not hold {} values",
            values.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_text}, }}",
        T::DESCR
    );
    // pad so that the data starts on a 64-byte boundary, ending with a newline
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in values {
        v.le_bytes(&mut out);
    }
    Ok(out)
}

/// Writes `values` with `shape` to `path` atomically (a temporary file in the same folder,
/// then a rename), so that a failed write never leaves a half-written file behind.
pub fn write_npy<T: NpyElement>(path: &Path, shape: &[usize], values: &[T]) -> Result<()> {
    write_atomic(path, &npy_bytes(shape, values)?)
}

/// Writes `bytes` to `path` atomically ([`jem_io::write_atomic`]: a temporary file, flushed,
/// renamed into place).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(jem_io::write_atomic(path, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_other_dtypes() {
        let b = npy_bytes(&[2, 3], &[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let a = parse_npy(&b).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.to_f64(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!((b.len() - 48) % 64, 0);
        // np.array([[1, -2], [3, 4]], dtype='>i2', order='F')
        let header = "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 2), }";
        let mut f = b"\x93NUMPY\x01\x00".to_vec();
        f.extend_from_slice(&(header.len() as u16).to_le_bytes());
        f.extend_from_slice(header.as_bytes());
        for v in [1i16, 3, -2, 4] {
            f.extend_from_slice(&v.to_be_bytes());
        }
        let a = parse_npy(&f).unwrap();
        assert_eq!(a.data, NpyData::Int(vec![1, -2, 3, 4]));
        assert!(a.to_labels("y", 5).is_err());
    }

    #[test]
    fn labels_accept_integer_floats_only_in_range() {
        let a = NpyArray {
            shape: vec![3],
            data: NpyData::F32(vec![0.0, 2.0, 1.0]),
        };
        assert_eq!(a.to_labels("labels", 3).unwrap(), vec![0, 2, 1]);
        let e = a.to_labels("labels", 2).unwrap_err().to_string();
        assert!(e.contains("labels[1] = 2"), "{e}");
        let a = NpyArray {
            shape: vec![1],
            data: NpyData::F64(vec![0.5]),
        };
        assert!(a.to_labels("labels", 3).is_err());
    }

    #[test]
    fn truncated_and_foreign_files_are_errors() {
        let b = npy_bytes(&[4], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let e = parse_npy(&b[..b.len() - 1]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        assert!(parse_npy(b"PK\x03\x04 not npy").is_err());
        assert!(parse_npy(&b[..20]).is_err());
        // a shape whose product overflows is an error, not a panic
        let header =
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }";
        let mut bomb = b"\x93NUMPY\x01\x00".to_vec();
        bomb.extend((header.len() as u16).to_le_bytes());
        bomb.extend(header.as_bytes());
        let e = parse_npy(&bomb).unwrap_err();
        assert!(e.contains("overflows"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let e = read_npy(&p).unwrap_err().to_string();
        assert!(e.contains("x.npy"), "{e}");
        write_npy(&p, &[2], &[1.0f64, 2.0]).unwrap();
        assert_eq!(read_npy(&p).unwrap().to_f64(), vec![1.0, 2.0]);
    }
}
