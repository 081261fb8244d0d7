//! Import of PyTorch checkpoints of JEM, JEM++ and SADA-JEM (zip-format `.pt` files).
//!
//! The reference saves `{"model_state_dict": state_dict, "replay_buffer": Tensor}`; a raw
//! state dict is accepted too. Keys are `f.`-prefixed (`f.layer1.0.conv1.weight`); a
//! `module.` prefix (DataParallel) is stripped, `num_batches_tracked` entries are dropped,
//! and the unused `energy_output` head is reported as ignored.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use candle_core::pickle::{PthTensors, read_all_with_key};

use crate::error::{ModelError, Result};
use crate::params::ParamStore;

/// Tensors of a PyTorch checkpoint.
#[derive(Debug)]
pub struct TorchCheckpoint {
    /// The state dict, by (cleaned) name.
    pub state: HashMap<String, Tensor>,
    /// The replay buffer `[N, C, H, W]`, when the checkpoint has one.
    pub replay_buffer: Option<Tensor>,
}

/// Reads a `.pt` checkpoint written by the reference code.
pub fn read_torch_checkpoint(path: &Path) -> Result<TorchCheckpoint> {
    let bad = |e: candle_core::Error| {
        ModelError::Invalid(format!(
            "{}: not a readable PyTorch checkpoint (zip format, torch >= 1.6): {e}",
            path.display()
        ))
    };
    let entries = match read_all_with_key(path, Some("model_state_dict")) {
        Ok(v) if !v.is_empty() => v,
        _ => read_all_with_key(path, None).map_err(bad)?,
    };
    let mut state = HashMap::new();
    for (name, t) in entries {
        let name = name.strip_prefix("module.").unwrap_or(&name).to_string();
        if name.ends_with("num_batches_tracked") || name == "replay_buffer" {
            continue;
        }
        state.insert(name, t);
    }
    if state.is_empty() {
        return Err(ModelError::Invalid(format!(
            "{}: no model tensors found",
            path.display()
        )));
    }
    let replay_buffer = PthTensors::new(path, None)
        .and_then(|p| p.get("replay_buffer"))
        .ok()
        .flatten();
    Ok(TorchCheckpoint {
        state,
        replay_buffer,
    })
}

/// Loads the checkpoint's weights into `store`; returns the names it ignored (such as the
/// unused `energy_output.*` head).
pub fn load_torch_state(
    store: &ParamStore,
    ckpt: &TorchCheckpoint,
    source: &Path,
) -> Result<Vec<String>> {
    store.load_tensors(&ckpt.state, &source.display().to_string())
}
