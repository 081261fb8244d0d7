//! Checkpoints: one safetensors file holding the model (parameters and BatchNorm buffers),
//! the optimizer state, the replay buffer, the resolved config and the progress, written
//! atomically (temporary file, flushed, renamed).
//!
//! Tensors are named `model/<name>` (PyTorch names), `optim/<name>` and `replay_buffer`;
//! the metadata holds `format`, `config` (TOML), `progress` (JSON) and `optim` (the
//! optimizer's kind and scalars, JSON).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use jem_optim::OptimState;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// Value of the `format` metadata.
pub const FORMAT: &str = "sadajem-checkpoint-1";

/// The `contents` metadata of a [`Checkpoint::model_only`] file (`all` otherwise).
const MODEL_ONLY: &str = "model";

/// One divergence and what the guard did about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollbackEvent {
    /// The iteration that diverged.
    pub iteration: u64,
    /// What was detected (non-finite loss, |loss| or |energy| above the limit, ...).
    pub cause: String,
    /// The iteration training went back to (`None`: the guard's budget was spent and the run
    /// stopped).
    pub to_iteration: Option<u64>,
    /// What changed for the retry, e.g. `new random stream (seed offset 1)`.
    pub change: String,
}

/// Changes made by the divergence guard so far (carried across rollbacks).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardState {
    /// Rollbacks so far.
    pub failures: usize,
    /// Added to the seed of every random stream (`new-seed`).
    pub seed_offset: u64,
    /// Factor on the scheduled learning rate (`lower-lr`).
    pub lr_scale: f64,
    /// SGLD steps added (`more-steps`).
    pub extra_steps: usize,
    /// Every divergence so far, in order (absent in checkpoints of older versions).
    #[serde(default)]
    pub events: Vec<RollbackEvent>,
}

impl GuardState {
    /// No recovery applied.
    pub fn new() -> Self {
        Self {
            lr_scale: 1.0,
            ..Self::default()
        }
    }
}

/// Where training stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Iterations completed.
    pub iteration: u64,
    /// Seconds of training so far (evaluation excluded), over all sessions.
    pub train_seconds: f64,
    /// Best selection accuracy and its iteration.
    pub best: Option<(f64, u64)>,
    /// Divergence recoveries.
    pub guard: GuardState,
    /// The model's dropout generator (hex of [`jem_models::wrn::WideResNet::dropout_state`]);
    /// absent in checkpoints of older versions and of runs without dropout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout_rng: Option<String>,
}

impl Progress {
    /// The start of a run.
    pub fn start() -> Self {
        Self {
            iteration: 0,
            train_seconds: 0.0,
            best: None,
            guard: GuardState::new(),
            dropout_rng: None,
        }
    }
}

/// The content of a checkpoint file.
pub struct Checkpoint {
    /// Resolved config (TOML text).
    pub config: String,
    /// Progress.
    pub progress: Progress,
    /// Model tensors by PyTorch name.
    pub model: BTreeMap<String, Tensor>,
    /// Optimizer state.
    pub optim: OptimState,
    /// Replay buffer, if the run has one.
    pub replay_buffer: Option<Tensor>,
    /// The model part only ([`Checkpoint::model_only`]): for evaluation, not for resuming.
    pub model_only: bool,
}

#[derive(Serialize, Deserialize)]
struct OptimMeta {
    kind: String,
    scalars: BTreeMap<String, f64>,
}

fn corrupt(path: &Path, msg: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint(format!(
        "{}: not a readable sadajem checkpoint ({msg})",
        path.display()
    ))
}

fn meta_field<'a>(meta: &'a HashMap<String, String>, key: &str, path: &Path) -> Result<&'a String> {
    meta.get(key)
        .ok_or_else(|| corrupt(path, format!("no `{key}` metadata")))
}

/// The progress in a checkpoint's metadata, after checking that it is one of ours.
fn progress_of(meta: &HashMap<String, String>, path: &Path) -> Result<Progress> {
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(corrupt(
            path,
            format!("format is {:?}, expected {FORMAT}", meta.get("format")),
        ));
    }
    serde_json::from_str(meta_field(meta, "progress", path)?).map_err(|e| corrupt(path, e))
}

/// The progress of the checkpoint at `path`, from its header alone (the tensors, 42 MB for a
/// generative run, are not read).
pub fn read_progress(path: &Path) -> Result<Progress> {
    use std::io::Read;
    let io = |e| TrainError::io(path, e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|e| corrupt(path, e))?;
    let n = u64::from_le_bytes(n);
    if n > len.saturating_sub(8) || n > 100 << 20 {
        return Err(corrupt(
            path,
            format!("a header of {n} bytes in a {len}-byte file"),
        ));
    }
    let header = jem_io::read_exact_bounded(&mut f, n).map_err(|e| corrupt(path, e))?;
    let mut v: serde_json::Value = serde_json::from_slice(&header).map_err(|e| corrupt(path, e))?;
    let meta: HashMap<String, String> =
        serde_json::from_value(v["__metadata__"].take()).map_err(|e| corrupt(path, e))?;
    progress_of(&meta, path)
}

impl Checkpoint {
    /// The model part of this checkpoint (weights, BatchNorm statistics, config, progress)
    /// without the optimizer's tensors and the replay buffer: what evaluation needs of a
    /// run, about 1/35 of a generative WRN-10-2 run's checkpoint (1.2 MB against 42 MB).
    /// Training cannot resume from it.
    pub fn model_only(&self) -> Checkpoint {
        let mut optim = OptimState::new(&self.optim.kind);
        optim.scalars = self.optim.scalars.clone();
        Checkpoint {
            config: self.config.clone(),
            progress: self.progress.clone(),
            model: self.model.clone(),
            optim,
            replay_buffer: None,
            model_only: true,
        }
    }

    /// Writes the checkpoint to `path` atomically: a failure leaves any previous file intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let cpu = |t: &Tensor| -> Result<Tensor> { Ok(t.to_device(&Device::Cpu)?.contiguous()?) };
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (k, t) in &self.model {
            tensors.push((format!("model/{k}"), cpu(t)?));
        }
        for (k, t) in &self.optim.tensors {
            tensors.push((format!("optim/{k}"), cpu(t)?));
        }
        if let Some(b) = &self.replay_buffer {
            tensors.push(("replay_buffer".into(), cpu(b)?));
        }
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("config".to_string(), self.config.clone()),
            (
                "contents".to_string(),
                if self.model_only { MODEL_ONLY } else { "all" }.to_string(),
            ),
            (
                "progress".to_string(),
                serde_json::to_string(&self.progress).map_err(|e| corrupt(path, e))?,
            ),
            (
                "optim".to_string(),
                serde_json::to_string(&OptimMeta {
                    kind: self.optim.kind.clone(),
                    scalars: self.optim.scalars.clone(),
                })
                .map_err(|e| corrupt(path, e))?,
            ),
        ]);
        let bytes = safetensors::serialize(tensors, Some(meta))
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
        Ok(jem_io::write_atomic(path, &bytes)?)
    }

    /// Reads a checkpoint; a truncated, corrupted or foreign file gives an error naming it.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(path, e))?;
        let meta = header
            .metadata()
            .clone()
            .ok_or_else(|| corrupt(path, "no metadata"))?;
        let progress = progress_of(&meta, path)?;
        let field = |k: &str| meta_field(&meta, k, path);
        let om: OptimMeta = serde_json::from_str(field("optim")?).map_err(|e| corrupt(path, e))?;
        let all =
            candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| corrupt(path, e))?;
        let mut model = BTreeMap::new();
        let mut optim = OptimState::new(&om.kind);
        optim.scalars = om.scalars;
        let mut replay_buffer = None;
        for (k, t) in all {
            if let Some(n) = k.strip_prefix("model/") {
                model.insert(n.to_string(), t);
            } else if let Some(n) = k.strip_prefix("optim/") {
                optim.tensors.insert(n.to_string(), t);
            } else if k == "replay_buffer" {
                replay_buffer = Some(t);
            } else {
                return Err(corrupt(path, format!("unexpected tensor `{k}`")));
            }
        }
        if model.is_empty() {
            return Err(corrupt(path, "no model tensors"));
        }
        Ok(Self {
            config: field("config")?.clone(),
            progress,
            model,
            optim,
            replay_buffer,
            // files written before this key existed hold everything
            model_only: meta.get("contents").map(String::as_str) == Some(MODEL_ONLY),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let t = |v: f32| Tensor::from_vec(vec![v; 6], (2, 3), &Device::Cpu).unwrap();
        let mut optim = OptimState::new("sgd");
        optim.tensors.insert("momentum_buffer.w".into(), t(2.0));
        optim.scalars.insert("lr".into(), 0.05);
        Checkpoint {
            config: "name = \"x\"\n".into(),
            progress: Progress {
                iteration: 7,
                ..Progress::start()
            },
            model: BTreeMap::from([("w".to_string(), t(1.0))]),
            optim,
            replay_buffer: Some(t(-1.0).reshape((1, 1, 2, 3)).unwrap()),
            model_only: false,
        }
    }

    #[test]
    fn the_model_part_round_trips_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let full = sample();
        full.model_only().save(&path).unwrap();
        let back = Checkpoint::load(&path, &Device::Cpu).unwrap();
        assert!(back.model_only);
        assert!(back.replay_buffer.is_none() && back.optim.tensors.is_empty());
        assert_eq!(back.optim.scalars["lr"], 0.05);
        assert_eq!(back.progress, full.progress);
        assert_eq!(back.config, full.config);
        let (a, b) = (&back.model["w"], &full.model["w"]);
        assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
        let whole = dir.path().join("last.safetensors");
        full.save(&whole).unwrap();
        assert!(!Checkpoint::load(&whole, &Device::Cpu).unwrap().model_only);
    }

    #[test]
    fn round_trips_every_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        sample().save(&path).unwrap();
        let back = Checkpoint::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back.progress.iteration, 7);
        assert_eq!(back.optim.scalars["lr"], 0.05);
        assert_eq!(back.config, "name = \"x\"\n");
        let v: Vec<f32> = back.optim.tensors["momentum_buffer.w"]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(v, vec![2.0; 6]);
        assert_eq!(back.replay_buffer.unwrap().dims(), &[1, 1, 2, 3]);
        // no temporary file is left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_progress_reads_from_the_header_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("best.safetensors");
        let ck = sample();
        ck.save(&path).unwrap();
        assert_eq!(read_progress(&path).unwrap(), ck.progress);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..20]).unwrap();
        let e = read_progress(&path).unwrap_err().to_string();
        assert!(
            e.contains("best.safetensors") && e.contains("not a readable"),
            "{e}"
        );
    }

    #[test]
    fn truncated_or_foreign_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        sample().save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = Checkpoint::load(&path, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("last.safetensors") && e.contains("not a readable"),
            "{e}"
        );
        std::fs::write(&path, b"garbage").unwrap();
        let e = Checkpoint::load(&path, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("last.safetensors"), "{e}");
        let other = dir.path().join("plain.safetensors");
        let t = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&HashMap::from([("w".to_string(), t)]), &other).unwrap();
        let e = Checkpoint::load(&other, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("plain.safetensors") && e.contains("metadata"),
            "{e}"
        );
    }
}
