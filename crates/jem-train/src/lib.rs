//! Training of joint energy-based models: SADA-JEM's Algorithm 1 and its family.
//!
//! - [`config`]: the experiment description (TOML presets in `configs/`, `--set` overrides);
//! - [`algorithm`]: one iteration of Algorithm 1 for any [`algorithm::TrainableClassifier`]:
//!   the buffer's draw, the passes, the check, the update, the write-back;
//! - [`step`]: the passes of an iteration on given batches, in the reference's order;
//! - [`Trainer`]: the loop around it: data streams, replay buffer, learning-rate schedule,
//!   logs, evaluations, checkpoints, resume and the divergence guard;
//! - [`checkpoint`]: the checkpoint file;
//! - [`bench`]: speed of the building blocks and parity between devices (`jem bench`).
//!
//! Every random draw of iteration `i` comes from generators seeded by `(seed, i)` and the
//! data batches are pure functions of their position, so a run resumed from a checkpoint
//! continues bit for bit as if it had not stopped.

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod algorithm;
pub mod bench;
pub mod checkpoint;
mod complete;
pub mod config;
pub mod data;
pub mod eval;
mod figures;
pub mod import;
pub mod interrupt;
pub mod lock;
mod log;
mod rollback;
mod run;
mod rundir;
pub mod step;
mod trainer;

pub use checkpoint::{Checkpoint, Progress};
pub use config::TrainConfig;
pub use trainer::{RunSummary, TrainOptions, Trainer, build_model};

/// Errors of training; messages name the file, key or iteration concerned.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad configuration value.
    #[error("config: {0}")]
    Config(String),
    /// Data could not be read.
    #[error(transparent)]
    Data(Box<jem_data::DataError>),
    /// Data could not be read, in a context the data error does not say (the config key).
    #[error("{context}: {source}")]
    DataFor {
        /// What needed the data.
        context: String,
        /// The cause.
        #[source]
        source: Box<jem_data::DataError>,
    },
    /// A checkpoint could not be read or written.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Training diverged more often than the guard allows.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// The run folder cannot be used.
    #[error("run folder: {0}")]
    RunDir(String),
    /// Reading or writing a file of the run failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written atomically (the error names the file and the step).
    #[error(transparent)]
    Write(#[from] jem_io::AtomicWriteError),
    /// A JSON record could not be written or read.
    #[error("{what}: {source}")]
    Json {
        /// The record or file.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Model errors.
    #[error(transparent)]
    Model(#[from] jem_models::ModelError),
    /// Optimizer errors.
    #[error(transparent)]
    Optim(#[from] jem_optim::OptimError),
    /// Sampler errors.
    #[error(transparent)]
    Sampler(#[from] jem_sampler::SamplerError),
    /// Metric errors.
    #[error(transparent)]
    Metric(#[from] jem_metrics::MetricError),
    /// Figure errors.
    #[error(transparent)]
    Plot(#[from] jem_plot::PlotError),
    /// Tensor errors.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    /// An I/O error about `path`, its cause kept.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<jem_data::DataError> for TrainError {
    fn from(e: jem_data::DataError) -> Self {
        // boxed: the data error is large and every Result of the crate carries its size
        Self::Data(Box::new(e))
    }
}

/// Result with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;
