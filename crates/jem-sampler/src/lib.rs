//! # jem-sampler
//!
//! Sampling from the energy `E(x) = -LSE(f(x))` of a classifier:
//!
//! - [`SgldRule`]: the update rules the JEM family uses, by name: the SADA-JEM / JEM++
//!   training rule (gradient clipped to [-1, 1], step 1, no noise, samples clamped to
//!   [-1, 1]), true Langevin as in JEM (step 1, noise 0.01, no clipping), and the reference's
//!   unclipped evaluation rule;
//! - [`Sgld`]: K steps of a rule, unconditional (ascending `sum LSE`) or class-conditional
//!   (ascending `sum f(x)[y]`), with the BatchNorm mode to use while sampling;
//! - [`ReplayBuffer`]: persistent chains with reinitialization from uniform noise or from
//!   per-class Gaussians of the data ([`InitKind`], "informative initialization");
//! - [`init`]: draws from those initial distributions, on any device.
//!
//! All randomness comes from the caller's seeded generator, never from candle's.

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod buffer;
pub mod init;
pub mod sgld;

pub use buffer::ReplayBuffer;
pub use init::InitKind;
pub use sgld::{Sgld, SgldRule};

/// Errors of the sampler.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// A bad setting or file; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// Writing a file atomically failed (the message names the file and the step).
    #[error(transparent)]
    Write(#[from] jem_io::AtomicWriteError),
    /// An error of the model.
    #[error(transparent)]
    Model(#[from] jem_models::ModelError),
    /// An error of the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`SamplerError`].
pub type Result<T> = std::result::Result<T, SamplerError>;
