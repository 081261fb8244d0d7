//! A training run: setup, checkpoints, resume and rollback. The loop is in `run.rs`.

use std::path::{Path, PathBuf};

use candle_core::Device;
use jem_data::rng::rng_for;
use jem_models::{WideResNet, WrnConfig};
use jem_optim::{Adam, AdamConfig, Sam, Schedule, Sgd, SgdConfig};
use jem_sampler::{ReplayBuffer, Sgld};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, Progress, RollbackEvent};
use crate::config::{OptimKind, SamKind, TrainConfig};
use crate::data::RunData;
use crate::eval::EvalRecord;
use crate::lock::RunLock;
use crate::log::JsonLines;
use crate::step::Optimizers;
use crate::{Result, TrainError};

/// Where a run reads and writes, and on which device.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run folder (created).
    pub run_dir: PathBuf,
    /// Folder of the data sets.
    pub data_dir: PathBuf,
    /// Folder of cached statistics.
    pub cache_dir: PathBuf,
    /// Device to train on.
    pub device: Device,
    /// No progress bar or progress lines.
    pub quiet: bool,
}

/// What a finished (or stopped) run reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    /// Iterations completed.
    pub iterations: u64,
    /// Training minutes (evaluation excluded).
    pub train_minutes: f64,
    /// Iterations per second of training.
    pub iters_per_second: f64,
    /// The last evaluation.
    pub last_eval: Option<EvalRecord>,
    /// Best selection accuracy and its iteration.
    pub best: Option<(f64, u64)>,
    /// Divergences that were rolled back and retried.
    pub rollbacks: usize,
    /// Every divergence: iteration, cause, what changed for the retry.
    pub rollback_events: Vec<RollbackEvent>,
    /// The run stopped because it diverged more often than `guard.max_failures` allows.
    pub diverged: bool,
    /// Why the run stopped.
    pub stopped: String,
}

/// A training run in memory.
pub struct Trainer {
    pub(crate) cfg: TrainConfig,
    pub(crate) opts: TrainOptions,
    pub(crate) data: RunData,
    pub(crate) model: WideResNet,
    pub(crate) opt: Optimizers,
    pub(crate) schedule: Schedule,
    pub(crate) buffer: Option<ReplayBuffer>,
    pub(crate) progress: Progress,
    pub(crate) iters_per_epoch: u64,
    pub(crate) log: JsonLines,
    pub(crate) evals: JsonLines,
    /// The evaluation logged at the iteration a resumed run starts from (not redone).
    pub(crate) resumed_eval: Option<EvalRecord>,
    /// The run folder's lock, held for the trainer's life.
    _lock: RunLock,
}

/// Removes temporary files that killed processes left in the run folder, saying so.
fn remove_stale_temps(run_dir: &Path, quiet: bool) -> Result<()> {
    for f in crate::rundir::remove_stale_temps(run_dir)? {
        if !quiet {
            eprintln!(
                "removed {}, left by a process that no longer runs",
                f.display()
            );
        }
    }
    Ok(())
}

fn build_optim(cfg: &TrainConfig) -> Result<Optimizers> {
    let o = &cfg.optim;
    let base: Box<dyn jem_optim::Optimizer> = match o.kind {
        OptimKind::Sgd => Box::new(Sgd::new(SgdConfig {
            lr: o.lr,
            momentum: o.momentum,
            dampening: 0.0,
            nesterov: o.nesterov,
            weight_decay: o.weight_decay,
        })),
        OptimKind::Adam => Box::new(Adam::new(AdamConfig {
            lr: o.lr,
            beta1: o.betas[0],
            beta2: o.betas[1],
            eps: o.eps,
            weight_decay: o.weight_decay,
        })),
    };
    let sam = match o.sam {
        SamKind::None => None,
        SamKind::Sam => Some(Sam::new(o.rho, false)?),
        SamKind::Asam => Some(Sam::new(o.rho, true)?),
    };
    Ok(Optimizers { base, sam })
}

/// The model a config describes, for data of `shape` with `classes` classes.
pub fn build_model(
    cfg: &TrainConfig,
    shape: [usize; 3],
    classes: usize,
    device: &Device,
) -> Result<WideResNet> {
    let m = &cfg.model;
    let wrn = WrnConfig {
        depth: m.depth,
        width: m.width,
        in_channels: shape[0],
        num_classes: classes,
        norm: m.norm,
        dropout: m.dropout,
        activation: m.activation,
        bn_momentum: m.bn_momentum,
        bn_eps: m.bn_eps,
    };
    Ok(WideResNet::new(wrn, cfg.seed, device)?)
}

impl Trainer {
    /// Starts a new run in `opts.run_dir` (which must not hold a run already): loads the
    /// data, builds the model, optimizer and replay buffer, writes `config.toml` and the
    /// iteration-0 checkpoint (the first rollback target). Nothing is created when the data
    /// cannot be loaded; temporary files a killed process left in the folder are removed.
    pub fn new(cfg: TrainConfig, opts: TrainOptions) -> Result<Self> {
        let last = opts.run_dir.join("last.safetensors");
        if last.exists() {
            return Err(TrainError::RunDir(format!(
                "{} already holds a run; continue it with `jem train --resume {}` or choose another --out",
                opts.run_dir.display(),
                opts.run_dir.display()
            )));
        }
        let data = RunData::load(&cfg, &opts.data_dir, &opts.cache_dir)?;
        std::fs::create_dir_all(opts.run_dir.join("samples"))
            .map_err(|e| TrainError::io(&opts.run_dir, e))?;
        let lock = RunLock::acquire(&opts.run_dir)?;
        remove_stale_temps(&opts.run_dir, opts.quiet)?;
        let model = build_model(&cfg, data.shape, data.num_classes, &opts.device)?;
        let buffer = if cfg.loss.px > 0.0 {
            let mut rng = rng_for(&[cfg.seed, 0, u64::MAX]);
            Some(ReplayBuffer::new(
                cfg.sampler.buffer_size,
                data.shape,
                cfg.sampler.init,
                data.gaussians.as_ref(),
                cfg.sampler.reinit_freq,
                &mut rng,
                &opts.device,
            )?)
        } else {
            None
        };
        let t = Self::assemble(cfg, opts, data, model, buffer, Progress::start(), lock)?;
        jem_io::write_atomic(
            &t.opts.run_dir.join("config.toml"),
            t.cfg.to_toml()?.as_bytes(),
        )?;
        t.save_checkpoint("last.safetensors")?;
        Ok(t)
    }

    /// Continues the run in `opts.run_dir` from its `last.safetensors`. `overrides` may only
    /// change `run.*` and `eval.*` keys (when to stop, log, evaluate and checkpoint). Log
    /// lines of iterations after the checkpoint (a run killed after it) are dropped, as the
    /// resumed run does those iterations again, and so are temporary files of dead processes.
    pub fn resume(opts: TrainOptions, overrides: &[String]) -> Result<Self> {
        let path = opts.run_dir.join("last.safetensors");
        if !path.exists() {
            return Err(TrainError::RunDir(format!(
                "{} has no last.safetensors to resume from",
                opts.run_dir.display()
            )));
        }
        let lock = RunLock::acquire(&opts.run_dir)?;
        let ck = Checkpoint::load(&path, &opts.device)?;
        // refused before the data sets load
        if ck.model_only {
            return Err(TrainError::Checkpoint(format!(
                "{} holds the model only (`jem model export`), without the optimizer state \
                 and the replay buffer a run needs: training cannot resume from it",
                path.display()
            )));
        }
        let mut table: toml::Table = ck.config.parse().map_err(|e| {
            TrainError::Checkpoint(format!(
                "{}: its config does not parse: {e}",
                path.display()
            ))
        })?;
        for o in overrides {
            let key = o.split('=').next().unwrap_or_default().trim();
            if !(key.starts_with("run.") || key.starts_with("eval.")) {
                return Err(TrainError::Config(format!(
                    "--set {o}: a resumed run can only change run.* and eval.* keys"
                )));
            }
            crate::config::apply_override(&mut table, o)?;
        }
        let text = toml::to_string(&table).map_err(|e| TrainError::Config(e.to_string()))?;
        let cfg = TrainConfig::from_toml(&text, &path.display().to_string())?;
        let data = RunData::load(&cfg, &opts.data_dir, &opts.cache_dir)?;
        let model = build_model(&cfg, data.shape, data.num_classes, &opts.device)?;
        let mut t = Self::assemble(cfg, opts, data, model, None, ck.progress.clone(), lock)?;
        t.restore(ck, &path)?;
        if let Some(name) = crate::complete::reconcile_best(&t.opts.run_dir, &mut t.progress)?
            && !t.opts.quiet
        {
            eprintln!(
                "best.safetensors was written after the checkpoint this run resumes from; kept \
                 as {name}, and the best model is chosen again from here"
            );
        }
        remove_stale_temps(&t.opts.run_dir, t.opts.quiet)?;
        t.resumed_eval = crate::rundir::trim_logs(&t.opts.run_dir, &t.progress)?;
        jem_io::write_atomic(
            &t.opts.run_dir.join("config.toml"),
            t.cfg.to_toml()?.as_bytes(),
        )?;
        Ok(t)
    }

    fn assemble(
        cfg: TrainConfig,
        opts: TrainOptions,
        data: RunData,
        model: WideResNet,
        buffer: Option<ReplayBuffer>,
        progress: Progress,
        lock: RunLock,
    ) -> Result<Self> {
        let (_, clf) = data.train_loaders(&cfg, 0, &opts.device)?;
        let iters_per_epoch = clf.batches_per_epoch() as u64;
        let opt = build_optim(&cfg)?;
        let schedule = Schedule {
            base_lr: cfg.optim.lr,
            warmup_iters: cfg.schedule.warmup_iters,
            decay: cfg.schedule.decay.clone(),
        };
        schedule.validate()?;
        let log = JsonLines::new(opts.run_dir.join("train.jsonl"));
        let evals = JsonLines::new(opts.run_dir.join("eval.jsonl"));
        Ok(Self {
            cfg,
            opts,
            data,
            model,
            opt,
            schedule,
            buffer,
            progress,
            iters_per_epoch,
            log,
            evals,
            resumed_eval: None,
            _lock: lock,
        })
    }

    /// The resolved configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// The model being trained.
    pub fn model(&self) -> &WideResNet {
        &self.model
    }

    /// Progress so far.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The replay buffer, when the run samples.
    pub fn buffer(&self) -> Option<&ReplayBuffer> {
        self.buffer.as_ref()
    }

    /// Iterations of one epoch.
    pub fn iters_per_epoch(&self) -> u64 {
        self.iters_per_epoch
    }

    /// The sampler of the current iteration (K plus the guard's extra steps).
    pub(crate) fn sampler(&self) -> Sgld {
        Sgld {
            rule: self.cfg.sampler.rule,
            steps: self.cfg.sampler.steps + self.progress.guard.extra_steps,
            bn_mode: self.cfg.sampler.bn_mode,
        }
    }

    /// True when every parameter and buffer is finite.
    pub(crate) fn model_is_finite(&self) -> Result<bool> {
        for (_, v) in self.model.store.params().chain(self.model.store.buffers()) {
            let s = v
                .as_tensor()
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
            if !s.is_finite() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes the current state to `name` in the run folder (atomically).
    pub(crate) fn save_checkpoint(&self, name: &str) -> Result<()> {
        let mut progress = self.progress.clone();
        if self.cfg.model.dropout > 0.0 {
            progress.dropout_rng = Some(crate::complete::dropout_hex(&self.model.dropout_state()?));
        }
        let ck = Checkpoint {
            config: self.cfg.to_toml()?,
            progress,
            model: self.model.store.snapshot()?,
            optim: self.opt.base.state()?,
            replay_buffer: self.buffer.as_ref().map(|b| b.data().clone()),
            model_only: false,
        };
        ck.save(&self.opts.run_dir.join(name))
    }

    pub(crate) fn restore(&mut self, ck: Checkpoint, path: &Path) -> Result<()> {
        let src = path.display().to_string();
        let params: Vec<(String, Vec<usize>)> = (self.model.store.params())
            .map(|(n, v)| (n.to_string(), v.dims().to_vec()))
            .collect();
        crate::complete::check(&ck, &self.cfg, self.data.shape, &params, &src)?;
        let model: std::collections::HashMap<String, candle_core::Tensor> =
            ck.model.into_iter().collect();
        self.model.store.load_tensors(&model, &src)?;
        self.opt
            .base
            .load_state(&ck.optim.to_device(&self.opts.device)?)
            .map_err(|e| TrainError::Checkpoint(format!("{src}: {e}")))?;
        // (complete::check has made sure a sampling run's checkpoint has its buffer)
        self.buffer = match ck.replay_buffer {
            Some(b) if self.cfg.loss.px > 0.0 => Some(ReplayBuffer::from_tensor(
                b,
                self.cfg.sampler.init,
                self.cfg.sampler.reinit_freq,
            )?),
            _ => None,
        };
        self.progress = ck.progress;
        match &self.progress.dropout_rng {
            Some(hex) => self
                .model
                .set_dropout_state(&crate::complete::parse_dropout_hex(hex, &src)?)?,
            None if self.cfg.model.dropout > 0.0
                && self.progress.iteration > 0
                && !self.opts.quiet =>
            {
                eprintln!(
                    "{src} predates saved dropout generators: dropout continues from its seed, \
                     so this run differs from an uninterrupted one"
                );
            }
            None => {}
        }
        Ok(())
    }
}
