//! The evaluation protocols of SADA-JEM (reference section 6) on trained checkpoints.
//!
//! - [`session`]: a checkpoint, its config, its data and model, ready to evaluate;
//! - [`classify`]: test accuracy with a per-class table, and calibration (ECE in both
//!   conventions, reliability diagram);
//! - [`ood`]: OOD detection with log p(x), max p(y|x) and input-gradient scores, an AUROC
//!   table and log p(x) histograms;
//! - [`robustness`]: white-box PGD under L-infinity and L2;
//! - [`landscape`]: energy along filter-normalized random directions (Li et al.).
//!
//! Every task returns a serializable result; the `jem eval` command writes it as JSON next
//! to its PNG figures.

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod attack;
pub mod classify;
pub mod energy;
pub mod generate;
pub mod landscape;
pub mod ood;
pub mod output;
pub mod quality;
pub mod robustness;
pub mod session;

pub use session::EvalSession;

/// Errors of the evaluation tasks; messages name the offending input.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A bad argument or input.
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A model error.
    #[error(transparent)]
    Model(#[from] jem_models::ModelError),
    /// A figure could not be drawn or written.
    #[error(transparent)]
    Plot(#[from] jem_plot::PlotError),
    /// A file or folder could not be created or read.
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
    /// A result could not be encoded as JSON.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file it was meant for.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Loading the checkpoint, its config or its data failed.
    #[error(transparent)]
    Train(#[from] jem_train::TrainError),
    /// A metric could not be computed.
    #[error(transparent)]
    Metric(#[from] jem_metrics::MetricError),
    /// A sampler error.
    #[error(transparent)]
    Sampler(#[from] jem_sampler::SamplerError),
    /// A data set could not be loaded.
    #[error(transparent)]
    Data(#[from] jem_data::DataError),
}

/// Result with [`EvalError`].
pub type Result<T> = std::result::Result<T, EvalError>;
