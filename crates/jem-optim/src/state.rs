//! Saved optimizer state: tensors and scalars by name, in a safetensors file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{OptimError, Result};

/// Optimizer state: the kind (`sgd`, `adam`), named tensors (momentum buffers, moments) and
/// scalars (learning rate, step count).
#[derive(Clone, Debug)]
pub struct OptimState {
    /// Which optimizer wrote it.
    pub kind: String,
    /// Tensors by name (`momentum_buffer.<param>`).
    pub tensors: BTreeMap<String, Tensor>,
    /// Scalars by name.
    pub scalars: BTreeMap<String, f64>,
}

impl OptimState {
    /// An empty state of `kind`.
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_string(),
            tensors: BTreeMap::new(),
            scalars: BTreeMap::new(),
        }
    }

    pub(crate) fn expect_kind(&self, kind: &str) -> Result<()> {
        if self.kind != kind {
            return Err(OptimError::Invalid(format!(
                "optimizer state is for `{}`, not `{kind}`",
                self.kind
            )));
        }
        Ok(())
    }

    pub(crate) fn scalar(&self, name: &str) -> Result<f64> {
        self.scalars
            .get(name)
            .copied()
            .ok_or_else(|| OptimError::Invalid(format!("optimizer state has no `{name}`")))
    }

    pub(crate) fn tensors_with_prefix(&self, prefix: &str) -> BTreeMap<String, Tensor> {
        self.tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(prefix).map(|n| (n.to_string(), t.clone())))
            .collect()
    }

    /// Moves the tensors to `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let tensors = self
            .tensors
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.to_device(device)?)))
            .collect::<Result<_>>()?;
        Ok(Self {
            kind: self.kind.clone(),
            tensors,
            scalars: self.scalars.clone(),
        })
    }

    /// Serializes to safetensors bytes (kind and scalars in the metadata).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let cpu: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        let meta = HashMap::from([
            ("kind".to_string(), self.kind.clone()),
            (
                "scalars".to_string(),
                serde_json::to_string(&self.scalars)
                    .map_err(|e| OptimError::Invalid(e.to_string()))?,
            ),
        ]);
        safetensors::serialize(&cpu, Some(meta)).map_err(|e| OptimError::Invalid(e.to_string()))
    }

    /// Parses bytes written by [`OptimState::to_bytes`]; `source` names them in errors.
    pub fn from_bytes(bytes: &[u8], source: &str, device: &Device) -> Result<Self> {
        let bad = |m: String| OptimError::Invalid(format!("{source}: {m}"));
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not an optimizer state: {e}")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let kind = meta
            .get("kind")
            .cloned()
            .ok_or_else(|| bad("no `kind` metadata".into()))?;
        let scalars = meta
            .get("scalars")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| bad("bad `scalars` metadata".into()))?;
        let tensors = candle_core::safetensors::load_buffer(bytes, device)?
            .into_iter()
            .collect();
        Ok(Self {
            kind,
            tensors,
            scalars,
        })
    }

    /// Loads a state file.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| OptimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string(), device)
    }
}
