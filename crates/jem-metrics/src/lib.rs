//! Metrics of generative classifiers, standalone: the math on plain `f64` slices, and
//! pytorch-fid's FID Inception-v3 in candle behind the default feature `inception`.
//!
//! Features (all on by default): `fid` (FID and KID: faer's linear algebra, rayon),
//! `stats-files` (statistics as safetensors or pytorch-fid's `.npz`: safetensors, zip) and
//! `inception` (the network: candle, jem-kernels). With `default-features = false` the crate
//! is the dependency-free math: calibration, AUROC, accuracy, Inception Score, `.npy`.
//!
//! - [`fid`]: Fréchet distance between feature statistics, equal to pytorch-fid's (exact
//!   also for singular covariances), with [`stats_io`] to save and load statistics;
//! - [`mod@inception_score`]: the Inception Score in the TF / torch-fidelity convention;
//! - [`kid`]: the Kernel Inception Distance, torch-fidelity's estimator and subsets;
//! - [`mod@calibration`]: expected, maximum and RMS calibration error in the torchmetrics
//!   convention (`[lo, hi)` bins, a confidence of exactly 1 in a bin of its own) or the
//!   SADA-JEM reference's (`(lo, hi]` bins), with the per-bin table of a reliability diagram;
//! - [`ood`]: AUROC (in-distribution positive, ties half, as scikit-learn's
//!   `roc_auc_score`), the ROC curve, AUPR and the FPR at 95 % TPR;
//! - [`classification::accuracy`] and [`top_k_accuracy`];
//! - [`npy`]: NumPy `.npy` arrays in and out;
//! - `inception` (feature `inception`): the FID / IS network.
//!
//! ```
//! use jem_metrics::ood::auroc;
//! // every in-distribution score above every OOD score: a perfect detector
//! assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0])?, 1.0);
//! // all scores equal: chance
//! assert_eq!(auroc(&[1.0, 1.0], &[1.0])?, 0.5);
//! # Ok::<(), jem_metrics::MetricError>(())
//! ```

#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "stats-files"))]
pub struct ReadmeDoctests;

pub mod calibration;
pub mod classification;
#[cfg(feature = "fid")]
pub mod fid;
#[cfg(feature = "inception")]
pub mod inception;
pub mod inception_score;
#[cfg(feature = "fid")]
pub mod kid;
pub mod npy;
pub mod ood;
#[cfg(feature = "stats-files")]
pub mod stats_io;

pub use calibration::{Calibration, CalibrationBin, EceConvention, calibration};
pub use classification::{accuracy, confidences_and_hits, top_k_accuracy};
#[cfg(feature = "fid")]
pub use fid::{FidOptions, FidReport, GaussianStats, frechet_distance};
pub use inception_score::{InceptionScore, inception_score, inception_score_from_logits};
pub use ood::{OodReport, RocCurve, auroc, ood_report};

/// Errors of the metric functions: the message names the offending input.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// An input that the metric cannot be computed from.
    #[error("{0}")]
    Invalid(String),
    /// Writing a file failed (the message names the file and the step; the cause is kept).
    #[error(transparent)]
    Write(#[from] jem_io::AtomicWriteError),
    /// A file could not be opened or read (the cause is kept).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An image file could not be decoded (the message names it; the cause is kept).
    #[cfg(feature = "images")]
    #[error(transparent)]
    Image(#[from] jem_io::image::ImageDecodeError),
}

impl MetricError {
    /// A read error of `path`, its cause kept.
    pub fn read(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result with [`MetricError`].
pub type Result<T> = std::result::Result<T, MetricError>;

pub(crate) fn check_finite(name: &str, values: &[f64]) -> Result<()> {
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MetricError::Invalid(format!(
            "{name}[{i}] is {v}: every value must be finite"
        )));
    }
    Ok(())
}
