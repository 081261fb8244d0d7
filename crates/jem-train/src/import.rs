//! The reference's PyTorch checkpoints (`{"model_state_dict": ..., "replay_buffer": ...}`,
//! `torch.save`) as our model-only checkpoints, which every `jem eval` task reads.
//!
//! A `.pt` holds weights and, from the reference's training, the replay buffer, but no data
//! set or settings: those come from a preset ([`TrainConfig`]) whose network must match the
//! weights (depth, width, channels and classes are checked tensor by tensor).

use std::path::Path;

use candle_core::Device;
use jem_models::torch_import::{load_torch_state, read_torch_checkpoint};
use jem_optim::OptimState;

use crate::checkpoint::{Checkpoint, Progress};
use crate::config::OptimKind;
use crate::config::TrainConfig;
use crate::trainer::build_model;
use crate::{Result, TrainError};

/// What [`import_torch_checkpoint`] made.
pub struct Imported {
    /// The model-only checkpoint (weights, BatchNorm statistics, the preset, the replay
    /// buffer when the `.pt` has one).
    pub checkpoint: Checkpoint,
    /// Tensors of the `.pt` that the network does not use (the reference's unused
    /// `energy_output` head).
    pub ignored: Vec<String>,
}

/// Reads the reference's `.pt` at `pt` into the network that `config` describes.
pub fn import_torch_checkpoint(pt: &Path, config: &TrainConfig) -> Result<Imported> {
    let torch = read_torch_checkpoint(pt)?;
    let dims = |name: &str| torch.state.get(name).map(|t| t.dims().to_vec());
    let (Some(stem), Some(head)) = (dims("f.conv1.weight"), dims("class_output.weight")) else {
        return Err(TrainError::Checkpoint(format!(
            "{}: no `f.conv1.weight` or `class_output.weight`: not a JEM-family Wide-ResNet",
            pt.display()
        )));
    };
    let (in_channels, classes) = (stem[1], head[0]);
    let model = build_model(config, [in_channels, 32, 32], classes, &Device::Cpu)?;
    let ignored = load_torch_state(&model.store, &torch, pt).map_err(|e| {
        TrainError::Checkpoint(format!(
            "{e} (the preset `{}` must describe the checkpoint's network: WRN-{}-{} here)",
            config.name, config.model.depth, config.model.width
        ))
    })?;
    let kind = match config.optim.kind {
        OptimKind::Sgd => "sgd",
        OptimKind::Adam => "adam",
    };
    let checkpoint = Checkpoint {
        config: config.to_toml()?,
        progress: Progress::start(),
        model: model.store.snapshot()?,
        optim: OptimState::new(kind),
        replay_buffer: torch.replay_buffer,
        model_only: true,
    };
    Ok(Imported {
        checkpoint,
        ignored,
    })
}
