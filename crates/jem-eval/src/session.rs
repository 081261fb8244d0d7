//! A checkpoint opened for evaluation: its resolved config, its data sets and the model with
//! the checkpoint's weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use jem_io::progress::{Progress, ProgressMode};
use jem_models::WideResNet;
use jem_train::data::RunData;
use jem_train::{Checkpoint, TrainConfig, build_model};

use crate::Result;

/// Everything an evaluation task needs.
pub struct EvalSession {
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// The run's resolved config (stored in the checkpoint).
    pub config: TrainConfig,
    /// Its data: test split, OOD sets of the config, the model-space transform.
    pub data: RunData,
    /// The model with the checkpoint's weights.
    pub model: WideResNet,
    /// The replay buffer saved with the checkpoint (model space), if any.
    pub replay_buffer: Option<Tensor>,
    /// Where the model runs.
    pub device: Device,
    /// Completed training iterations of the checkpoint.
    pub iteration: u64,
    /// Show the progress of long tasks on stderr ([`jem_io::progress`]: a bar on a
    /// terminal, plain lines otherwise). Off after [`open`](Self::open).
    pub progress: bool,
}

impl EvalSession {
    /// Opens `checkpoint` (a `.safetensors` checkpoint of `jem train`), loads the data sets
    /// its config names from `data_dir` (class statistics cached in `cache_dir`) and builds
    /// the model on `device`.
    pub fn open(
        checkpoint: &Path,
        data_dir: &Path,
        cache_dir: &Path,
        device: &Device,
    ) -> Result<Self> {
        let ck = Checkpoint::load(checkpoint, device)?;
        let source = format!("the config stored in {}", checkpoint.display());
        let config = TrainConfig::from_toml(&ck.config, &source)?;
        let data = RunData::load(&config, data_dir, cache_dir)?;
        let model = build_model(&config, data.shape, data.num_classes, device)?;
        let tensors: HashMap<String, Tensor> = ck.model.into_iter().collect();
        model
            .store
            .load_tensors(&tensors, &checkpoint.display().to_string())?;
        Ok(Self {
            checkpoint: checkpoint.to_path_buf(),
            config,
            data,
            model,
            replay_buffer: ck.replay_buffer,
            device: device.clone(),
            iteration: ck.progress.iteration,
            progress: false,
        })
    }

    /// The session with progress shown (or not).
    pub fn with_progress(mut self, show: bool) -> Self {
        self.progress = show;
        self
    }

    /// A progress counter for a task of this session: shown when [`progress`](Self::progress)
    /// is on.
    pub fn progress(&self, label: &str, total: u64, unit: &str) -> Progress {
        Progress::new(label, total, unit, ProgressMode::shown(self.progress))
    }
}
