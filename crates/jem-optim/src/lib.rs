//! # jem-optim
//!
//! Optimizers for candle with the exact semantics of PyTorch and of the SAM reference
//! implementation (davda54/sam), as SADA-JEM uses them:
//!
//! - [`Sgd`]: `torch.optim.SGD` (momentum, dampening, Nesterov, coupled weight decay on
//!   every parameter that has a gradient);
//! - [`Adam`]: `torch.optim.Adam` (coupled weight decay, bias correction);
//! - [`Sam`]: SAM and ASAM; the caller runs the two passes between
//!   [`Sam::first_step`] and [`Sam::second_step`];
//! - [`Schedule`]: linear warm-up by iteration, then multi-step decay by epoch or cosine;
//! - [`OptimState`]: momentum buffers and step counts by parameter name, saved as
//!   safetensors, for bit-exact resume.
//!
//! Parameters are passed as `(name, &Var)` pairs; a parameter without a gradient in the
//! `GradStore` is skipped, as PyTorch skips `p.grad is None`.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use jem_optim::{Optimizer, Sgd, SgdConfig};
//! let w = Var::new(&[1.0f32, 2.0], &Device::Cpu)?;
//! let loss = (w.as_tensor() * 3.0)?.sum_all()?; // d loss / d w = 3
//! let grads = loss.backward()?;
//! let mut sgd = Sgd::new(SgdConfig { lr: 0.1, ..SgdConfig::default() });
//! sgd.step(&[("w", &w)], &grads)?;
//! assert_eq!(w.to_vec1::<f32>()?, vec![0.7, 1.7]);
//! # Ok::<(), jem_optim::OptimError>(())
//! ```

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod adam;
mod sam;
mod schedule;
mod sgd;
mod state;

pub use adam::{Adam, AdamConfig};
pub use sam::Sam;
pub use schedule::{Decay, Schedule};
pub use sgd::{Sgd, SgdConfig};
pub use state::OptimState;

use candle_core::Var;
use candle_core::backprop::GradStore;

/// Errors of the optimizers.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A bad setting or an incompatible saved state; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// A state file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An error of the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`OptimError`].
pub type Result<T> = std::result::Result<T, OptimError>;

/// A first-order optimizer over named parameters.
pub trait Optimizer {
    /// One update of every parameter that has a gradient in `grads`.
    fn step(&mut self, params: &[(&str, &Var)], grads: &GradStore) -> Result<()>;
    /// The learning rate of the next step.
    fn lr(&self) -> f64;
    /// Sets the learning rate (schedules call this every iteration).
    fn set_lr(&mut self, lr: f64);
    /// Momentum buffers, step counts and the learning rate, by parameter name.
    fn state(&self) -> Result<OptimState>;
    /// Restores a state saved by [`Optimizer::state`].
    fn load_state(&mut self, state: &OptimState) -> Result<()>;
}
