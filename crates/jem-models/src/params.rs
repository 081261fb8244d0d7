//! Named parameters and buffers, kept in name order for reproducible optimizers and files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{ModelError, Result};

/// The trainable parameters (`Var`s, seen by optimizers) and the buffers (BatchNorm running
/// statistics: updated by the model, never by an optimizer) of a model, by PyTorch-style
/// name (`f.layer1.0.bn1.weight`). Iteration is in name order.
#[derive(Clone, Debug)]
pub struct ParamStore {
    params: BTreeMap<String, Var>,
    buffers: BTreeMap<String, Var>,
    device: Device,
}

impl ParamStore {
    /// An empty store whose values will live on `device`.
    pub fn new(device: &Device) -> Self {
        Self {
            params: BTreeMap::new(),
            buffers: BTreeMap::new(),
            device: device.clone(),
        }
    }

    /// Adds a trainable parameter and returns it.
    pub fn add_param(&mut self, name: &str, value: Tensor) -> Result<Var> {
        self.add(name, value, false)
    }

    /// Adds a buffer and returns it.
    pub fn add_buffer(&mut self, name: &str, value: Tensor) -> Result<Var> {
        self.add(name, value, true)
    }

    fn add(&mut self, name: &str, value: Tensor, buffer: bool) -> Result<Var> {
        if self.get(name).is_some() {
            return Err(ModelError::Invalid(format!("`{name}` defined twice")));
        }
        let v = Var::from_tensor(&value)?;
        let map = if buffer {
            &mut self.buffers
        } else {
            &mut self.params
        };
        map.insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// Trainable parameters in name order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Buffers in name order.
    pub fn buffers(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.buffers.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// A parameter or buffer by name.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.params.get(name).or_else(|| self.buffers.get(name))
    }

    /// Number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.params.values().map(|v| v.elem_count()).sum()
    }

    /// Device of the values.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every parameter and buffer as detached copies, by name.
    pub fn snapshot(&self) -> Result<BTreeMap<String, Tensor>> {
        self.params
            .iter()
            .chain(&self.buffers)
            .map(|(k, v)| Ok((k.clone(), v.as_detached_tensor().copy()?)))
            .collect()
    }

    /// Overwrites values from `tensors` (by name). Every parameter and buffer must be
    /// present with its shape; entries not in the store are returned (ignored).
    pub fn load_tensors(
        &self,
        tensors: &HashMap<String, Tensor>,
        source: &str,
    ) -> Result<Vec<String>> {
        for (name, var) in self.params.iter().chain(&self.buffers) {
            let t = tensors
                .get(name)
                .ok_or_else(|| ModelError::Invalid(format!("{source}: no tensor `{name}`")))?;
            if t.dims() != var.dims() {
                return Err(ModelError::Invalid(format!(
                    "{source}: `{name}` has shape {:?}, the model expects {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            let t = t.to_dtype(var.dtype())?.to_device(var.device())?;
            var.set(&t)?;
        }
        let mut extra: Vec<String> = tensors
            .keys()
            .filter(|k| self.get(k).is_none())
            .cloned()
            .collect();
        extra.sort();
        Ok(extra)
    }

    /// Saves parameters and buffers as safetensors (PyTorch names), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let map: HashMap<String, Tensor> = self
            .snapshot()?
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        let bytes = safetensors::serialize(&map, None)
            .map_err(|e| ModelError::Invalid(format!("{}: {e}", path.display())))?;
        Ok(jem_io::write_atomic(path, &bytes)?)
    }

    /// Loads a safetensors file written by [`ParamStore::save`] (or converted from PyTorch).
    pub fn load(&self, path: &Path) -> Result<Vec<String>> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
            ModelError::Invalid(format!("{}: cannot read safetensors: {e}", path.display()))
        })?;
        self.load_tensors(&tensors, &path.display().to_string())
    }

    /// Copies every value of `other` (same names and shapes) into this store.
    pub fn copy_from(&self, other: &ParamStore) -> Result<()> {
        let map: HashMap<String, Tensor> = other.snapshot()?.into_iter().collect();
        self.load_tensors(&map, "copy").map(|_| ())
    }

    /// The dtype of the parameters (f32 when empty).
    pub fn dtype(&self) -> DType {
        self.params
            .values()
            .next()
            .map_or(DType::F32, |v| v.dtype())
    }
}
