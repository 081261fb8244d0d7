//! Experiment configuration: TOML presets with `extends`, `--set key=value` overrides, and
//! validation that names the offending key.
//!
//! The defaults are the paper's SADA-JEM on CIFAR-10 (WRN-28-10, SAM rho 0.2, K = 5);
//! presets in `configs/` change what their row of the paper changes.

use std::path::Path;

use jem_data::DatasetName;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

mod overrides;
mod sections;

pub use overrides::apply_override;
use overrides::read_table;
pub use sections::*;

/// A whole experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Short name of the experiment (run folders are named after it).
    pub name: String,
    /// What the preset reproduces.
    pub description: String,
    /// Seed of the model initialization, the data order and the sampler.
    pub seed: u64,
    /// Data sets, splits, batches and augmentation.
    pub data: DataConfig,
    /// The network.
    pub model: ModelConfig,
    /// SGLD and the replay buffer.
    pub sampler: SamplerConfig,
    /// Terms of the objective.
    pub loss: LossConfig,
    /// Optimizer (and SAM / ASAM around it).
    pub optim: OptimConfig,
    /// Length of training and learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Logging, evaluation and checkpoint cadence; extra stopping rules.
    pub run: RunConfig,
    /// What the periodic evaluation measures.
    pub eval: EvalConfig,
    /// Divergence detection and recovery.
    pub guard: GuardConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            name: "sadajem".into(),
            description: String::new(),
            seed: 1,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            sampler: SamplerConfig::default(),
            loss: LossConfig::default(),
            optim: OptimConfig::default(),
            schedule: ScheduleConfig::default(),
            run: RunConfig::default(),
            eval: EvalConfig::default(),
            guard: GuardConfig::default(),
        }
    }
}

fn invalid(key: &str, msg: impl std::fmt::Display) -> TrainError {
    TrainError::Config(format!("{key}: {msg}"))
}

/// Upper limits of the configuration values that size memory or time, so that a mistyped
/// value is an error naming its key rather than an allocation abort. Each is far above any
/// published setting (the paper: 32-pixel images, batch 64/128, WRN-28-10, a 10,000-image
/// buffer, 5-40 SGLD steps).
pub const LIMITS: [(&str, usize); 11] = [
    ("data.pad_to", jem_data::transform::MAX_SIDE),
    ("data.crop_pad", 256),
    ("data.px_batch_size", 16_384),
    ("data.clf_batch_size", 16_384),
    ("data.workers", 256),
    ("model.depth", 1_000),
    ("model.width", 64),
    ("sampler.buffer_size", 1_000_000),
    ("sampler.steps", 100_000),
    ("eval.batch_size", 16_384),
    ("eval.ece_bins", 100_000),
];

impl TrainConfig {
    /// Reads a preset, resolving `extends` (paths relative to the file), then applies
    /// `key=value` overrides, then validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let mut table = read_table(path, 0)?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        Self::from_table(table, &path.display().to_string())
    }

    /// Parses a TOML document (no `extends`), then validates.
    pub fn from_toml(text: &str, source: &str) -> Result<Self> {
        let table: toml::Table = text
            .parse()
            .map_err(|e| TrainError::Config(format!("{source}: {e}")))?;
        Self::from_table(table, source)
    }

    fn from_table(table: toml::Table, source: &str) -> Result<Self> {
        let cfg: TrainConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let path = e.path().to_string();
                TrainError::Config(format!("{source}: {path}: {}", e.inner()))
            })?;
        cfg.validate()
            .map_err(|e| TrainError::Config(format!("{source}: {e}")))?;
        Ok(cfg)
    }

    /// The resolved configuration as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| TrainError::Config(format!("cannot write config: {e}")))
    }

    /// The training data set.
    pub fn dataset(&self) -> Result<DatasetName> {
        self.data
            .dataset
            .parse()
            .map_err(|e| invalid("data.dataset", e))
    }

    /// Checks ranges and combinations; errors name the key.
    pub fn validate(&self) -> Result<()> {
        self.dataset()?;
        for (i, d) in self.eval.ood.iter().enumerate() {
            d.parse::<DatasetName>()
                .map_err(|e| invalid(&format!("eval.ood[{i}]"), e))?;
        }
        let d = &self.data;
        if d.px_batch_size == 0 || d.clf_batch_size == 0 {
            return Err(invalid(
                "data.px_batch_size / data.clf_batch_size",
                "must be at least 1",
            ));
        }
        if !(d.noise_sigma >= 0.0 && d.noise_sigma.is_finite()) {
            return Err(invalid("data.noise_sigma", "must be a finite number >= 0"));
        }
        let m = &self.model;
        if m.depth < 10 || !(m.depth - 4).is_multiple_of(6) {
            return Err(invalid("model.depth", format!("{} is not 6n + 4", m.depth)));
        }
        if m.width == 0 {
            return Err(invalid("model.width", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return Err(invalid("model.dropout", "must be in [0, 1)"));
        }
        let s = &self.sampler;
        s.rule.validate().map_err(|e| invalid("sampler.rule", e))?;
        if self.loss.px > 0.0 {
            if s.buffer_size == 0 {
                return Err(invalid("sampler.buffer_size", "must be at least 1"));
            }
            if !(0.0..=1.0).contains(&s.reinit_freq) {
                return Err(invalid("sampler.reinit_freq", "must be in [0, 1]"));
            }
        }
        let l = &self.loss;
        for (k, v) in [("loss.px", l.px), ("loss.pyx", l.pyx), ("loss.l2", l.l2)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(invalid(k, "must be a finite number >= 0"));
            }
        }
        if l.px == 0.0 && l.pyx == 0.0 {
            return Err(invalid(
                "loss.px / loss.pyx",
                "at least one must be positive",
            ));
        }
        let o = &self.optim;
        if !(o.lr >= 0.0 && o.lr.is_finite()) {
            return Err(invalid("optim.lr", "must be a finite number >= 0"));
        }
        if !(o.rho >= 0.0 && o.rho.is_finite()) {
            return Err(invalid("optim.rho", "must be a finite number >= 0"));
        }
        if self.schedule.epochs == 0 {
            return Err(invalid("schedule.epochs", "must be at least 1"));
        }
        if self.run.select_on == SelectOn::Valid && d.valid_size == 0 {
            return Err(invalid(
                "run.select_on",
                "`valid` needs data.valid_size > 0 (or select_on = \"none\" / \"test\")",
            ));
        }
        if self.run.log_every == 0 {
            return Err(invalid("run.log_every", "must be at least 1"));
        }
        if self.eval.ece_bins == 0 || self.eval.batch_size == 0 {
            return Err(invalid(
                "eval.ece_bins / eval.batch_size",
                "must be at least 1",
            ));
        }
        let g = &self.guard;
        if !(g.lr_factor > 0.0 && g.lr_factor <= 1.0) {
            return Err(invalid("guard.lr_factor", "must be in (0, 1]"));
        }
        self.check_limits()
    }

    /// The values that size memory, against [`LIMITS`].
    fn check_limits(&self) -> Result<()> {
        let (d, m, s, e) = (&self.data, &self.model, &self.sampler, &self.eval);
        let values = [
            d.pad_to.unwrap_or(0),
            d.crop_pad,
            d.px_batch_size,
            d.clf_batch_size,
            d.workers,
            m.depth,
            m.width,
            s.buffer_size,
            s.steps,
            e.batch_size,
            e.ece_bins,
        ];
        for (&(key, limit), value) in LIMITS.iter().zip(values) {
            if value > limit {
                return Err(invalid(
                    key,
                    format!("{value} is over the limit of {limit}"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
