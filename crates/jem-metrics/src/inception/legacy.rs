//! Reader of PyTorch's legacy (non-zip, torch < 1.6) `torch.save` format.
//!
//! Such a file is a sequence of pickles followed by raw storages:
//!
//! 1. the magic number `0x1950a86a20f9469cfc6c`, 2. the format version 1001,
//! 3. a dict of system information (byte order, C type sizes), 4. the saved object, in which
//!    each tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and
//!    each storage a persistent id `('storage', storage_type, key, location, numel, view)`,
//! 5. the list of storage keys, in the order the storages follow;
//!
//! then, for each key, an 8-byte little-endian element count and the storage's elements in
//! little-endian order. The saved object must be a dict of name to tensor (a state dict);
//! entries that are not tensors are skipped.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use super::pickle::{Parser, Value};

/// The magic number's little-endian bytes.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const FORMAT_VERSION: i64 = 1001;

/// Whether `data` starts like a legacy checkpoint (a pickle of the magic number).
pub(crate) fn looks_legacy(data: &[u8]) -> bool {
    data.len() >= 4 && data[0] == 0x80 && data[2] == 0x8a && data[3] == 10
}

/// A tensor's reference into a storage, as pickled.
pub(crate) struct TensorRef {
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) dtype: Option<DType>,
    pub(crate) elem_size: usize,
    offset: usize,
    pub(crate) size: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    /// The bytes of its storage the view reaches (`(last element + 1) * element size`; 0
    /// for an empty tensor), `None` if that overflows.
    pub(crate) fn end(&self) -> Option<usize> {
        if self.size.contains(&0) {
            return Some(0);
        }
        let mut last = self.offset;
        for (&s, &st) in self.size.iter().zip(&self.stride) {
            last = (s - 1).checked_mul(st)?.checked_add(last)?;
        }
        last.checked_add(1)?.checked_mul(self.elem_size)
    }
}

/// The (dtype, element size) of a storage class; dtype `None` for types without a candle
/// counterpart (their tensors are skipped, but their bytes still have to be stepped over).
fn storage_type(class: &str) -> Option<(Option<DType>, usize)> {
    Some(match class {
        "FloatStorage" => (Some(DType::F32), 4),
        "DoubleStorage" => (Some(DType::F64), 8),
        "HalfStorage" => (Some(DType::F16), 2),
        "BFloat16Storage" => (Some(DType::BF16), 2),
        "LongStorage" => (Some(DType::I64), 8),
        "IntStorage" => (Some(DType::I32), 4),
        "ShortStorage" => (Some(DType::I16), 2),
        "ByteStorage" => (Some(DType::U8), 1),
        "CharStorage" | "BoolStorage" => (None, 1),
        _ => return None,
    })
}

fn usize_of(v: &Value) -> Option<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

fn usizes(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Tuple(items) => items.iter().map(usize_of).collect(),
        _ => None,
    }
}

/// Interprets a state-dict value as a tensor reference; `Ok(None)` if it is not a tensor.
pub(crate) fn tensor_ref(name: &str, v: &Value) -> Result<Option<TensorRef>, String> {
    let Value::Call { callable, args } = v else {
        return Ok(None);
    };
    let Value::Global { module, name: func } = callable.as_ref() else {
        return Ok(None);
    };
    if module != "torch._utils" {
        return Ok(None);
    }
    let Value::Tuple(args) = args.as_ref() else {
        return Err(format!("tensor `{name}`: arguments are not a tuple"));
    };
    if func == "_rebuild_parameter" {
        return match args.first() {
            Some(inner) => tensor_ref(name, inner),
            None => Err(format!("tensor `{name}`: empty parameter")),
        };
    }
    if func != "_rebuild_tensor_v2" && func != "_rebuild_tensor" {
        return Ok(None);
    }
    let bad = |what: &str| format!("tensor `{name}`: {what}");
    if args.len() < 4 {
        return Err(bad("fewer than 4 rebuild arguments"));
    }
    let Value::PersistentId(id) = &args[0] else {
        return Err(bad("storage is not a persistent id"));
    };
    let Value::Tuple(id) = id.as_ref() else {
        return Err(bad("storage id is not a tuple"));
    };
    let (class, key) = match id.as_slice() {
        [
            Value::Str(tag),
            Value::Global { name: class, .. },
            Value::Str(key),
            _,
            _,
            rest @ ..,
        ] if tag == "storage" => {
            if rest.first().is_some_and(|view| *view != Value::None) {
                return Err(bad("storage views (old torch) are not supported"));
            }
            (class, key)
        }
        _ => return Err(bad("malformed storage id")),
    };
    let (dtype, elem_size) =
        storage_type(class).ok_or_else(|| bad(&format!("unsupported storage type {class}")))?;
    let offset = usize_of(&args[1]).ok_or_else(|| bad("bad storage offset"))?;
    let size = usizes(&args[2]).ok_or_else(|| bad("bad size"))?;
    let stride = usizes(&args[3]).ok_or_else(|| bad("bad stride"))?;
    if size.len() != stride.len() {
        return Err(bad("size and stride differ in length"));
    }
    Ok(Some(TensorRef {
        name: name.to_string(),
        key: key.clone(),
        dtype,
        elem_size,
        offset,
        size,
        stride,
    }))
}

/// Reads all tensors of a legacy-format state dict held in `data`.
///
/// Errors are messages without the file name (the caller adds it).
pub(crate) fn read(data: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let mut p = Parser::new(data);
    let magic = p.load().map_err(|e| format!("magic number: {e}"))?;
    if magic != Value::BigInt(MAGIC.to_vec()) {
        return Err("not a PyTorch checkpoint (wrong magic number)".into());
    }
    let version = p.load().map_err(|e| format!("format version: {e}"))?;
    if version != Value::Int(FORMAT_VERSION) {
        return Err(format!("unsupported legacy format version {version:?}"));
    }
    if let Value::Dict(info) = p.load().map_err(|e| format!("system info: {e}"))? {
        let little = Value::Str("little_endian".into());
        if let Some((_, v)) = info.iter().find(|(k, _)| *k == little)
            && *v != Value::Bool(true)
        {
            return Err("big-endian checkpoints are not supported".into());
        }
    }
    let Value::Dict(entries) = p.load().map_err(|e| format!("saved object: {e}"))? else {
        return Err("the saved object is not a dict (state dict)".into());
    };
    let mut refs = Vec::new();
    for (k, v) in &entries {
        if let Value::Str(name) = k
            && let Some(r) = tensor_ref(name, v)?
        {
            refs.push(r);
        }
    }
    let Value::List(keys) = p.load().map_err(|e| format!("storage keys: {e}"))? else {
        return Err("the storage key list is not a list".into());
    };

    // locate each storage: (first byte, element count)
    let mut elem_sizes: HashMap<&str, usize> = HashMap::new();
    for r in &refs {
        let elem = *elem_sizes.entry(r.key.as_str()).or_insert(r.elem_size);
        if elem != r.elem_size {
            return Err(format!(
                "tensor `{}`: storage {} is used with {}-byte and {elem}-byte elements",
                r.name, r.key, r.elem_size
            ));
        }
    }
    let mut storages: HashMap<String, (usize, usize)> = HashMap::new();
    let mut pos = p.position();
    for key in &keys {
        let Value::Str(key) = key else {
            return Err(format!("storage key {key:?} is not a string"));
        };
        let elem = *elem_sizes
            .get(key.as_str())
            .ok_or_else(|| format!("storage {key} is used by no tensor"))?;
        let header = data
            .get(pos..pos + 8)
            .ok_or_else(|| format!("truncated: storage {key} missing at byte {pos}"))?;
        let mut count = [0u8; 8];
        count.copy_from_slice(header);
        let count = usize::try_from(u64::from_le_bytes(count)).unwrap_or(usize::MAX);
        let start = pos + 8;
        let end = count
            .checked_mul(elem)
            .and_then(|n| n.checked_add(start))
            .filter(|&e| e <= data.len())
            .ok_or_else(|| {
                format!("truncated: storage {key} ({count} elements) runs past the end of the file")
            })?;
        storages.insert(key.clone(), (start, count));
        pos = end;
    }

    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let Some(dtype) = r.dtype else { continue };
        let &(start, count) = storages
            .get(&r.key)
            .ok_or_else(|| format!("tensor `{}`: storage {} not in the file", r.name, r.key))?;
        let bytes = gather(&data[start..start + count * r.elem_size], &r, count)?;
        let t = Tensor::from_raw_buffer(&bytes, dtype, &r.size, &Device::Cpu)
            .map_err(|e| format!("tensor `{}`: {e}", r.name))?;
        out.push((r.name, t));
    }
    Ok(out)
}

/// The tensor's elements, row-major, copied out of its storage (any strides that do not
/// make it larger than its storage: a view with repeated elements, such as a stride-0
/// expansion, which `torch.save` never writes for parameters, is refused, so that what is
/// allocated is bounded by the file's size).
pub(crate) fn gather(storage: &[u8], r: &TensorRef, count: usize) -> Result<Vec<u8>, String> {
    let bad = || format!("tensor `{}`: view outside its storage", r.name);
    let numel = r
        .size
        .iter()
        .try_fold(1usize, |a, &s| a.checked_mul(s))
        .ok_or_else(bad)?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    if numel > count {
        return Err(format!(
            "tensor `{}`: {numel} elements from a storage of {count} (a view that repeats \
             elements is not supported)",
            r.name
        ));
    }
    let mut last = r.offset;
    for (&s, &st) in r.size.iter().zip(&r.stride) {
        last = (s - 1)
            .checked_mul(st)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(bad)?;
    }
    if last >= count {
        return Err(bad());
    }
    let e = r.elem_size;
    let mut out = Vec::with_capacity(numel * e);
    let mut index = vec![0usize; r.size.len()];
    for _ in 0..numel {
        let at: usize = r.offset
            + index
                .iter()
                .zip(&r.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.extend_from_slice(&storage[at * e..(at + 1) * e]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < r.size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(size: Vec<usize>, stride: Vec<usize>) -> TensorRef {
        TensorRef {
            name: "t".into(),
            key: "0".into(),
            dtype: Some(DType::F32),
            elem_size: 4,
            offset: 0,
            size,
            stride,
        }
    }

    /// A transposed view is copied in row-major order; a view larger than its storage (a
    /// stride-0 expansion of 2^40 elements, say) is an error, not a huge allocation.
    #[test]
    fn views_are_gathered_and_expansions_refused() {
        let storage: Vec<u8> = (0..6).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let t = gather(&storage, &view(vec![3, 2], vec![1, 3]), 6).unwrap();
        let vals: Vec<f32> = t
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(vals, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let err = gather(&storage, &view(vec![1 << 20, 1 << 20], vec![0, 0]), 6).unwrap_err();
        assert!(err.contains("repeats"), "{err}");
        let err = gather(&storage, &view(vec![2, 4], vec![4, 1]), 6).unwrap_err();
        assert!(err.contains("elements from a storage of 6"), "{err}");
    }
}
