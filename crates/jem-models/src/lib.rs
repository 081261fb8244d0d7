//! # jem-models
//!
//! The model zoo of sadajem, on candle: the pre-activation Wide-ResNet of JEM / JEM++ /
//! SADA-JEM ([`wrn`]) built from small layers ([`layers`]) with PyTorch-exact BatchNorm
//! semantics ([`BnMode`]: train, train with frozen running statistics, eval), PyTorch's
//! default initialization from a seed ([`init`]), named parameters in a fixed order
//! ([`ParamStore`], safetensors with the reference's names), the JEM view of a classifier
//! ([`jem`]: log-density, energy, input gradients), a layer table ([`summary`]) and import of
//! the reference's PyTorch checkpoints ([`torch_import`]).
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use jem_models::{BnMode, WideResNet, WrnConfig, jem};
//! let model = WideResNet::new(WrnConfig::reference(10, 1, 10), 1, &Device::Cpu)?;
//! let x = Tensor::zeros((2, 3, 32, 32), candle_core::DType::F32, &Device::Cpu)?;
//! let logits = model.logits(&x, BnMode::Eval)?;
//! assert_eq!(logits.dims(), &[2, 10]);
//! let (grad, log_px) = jem::input_gradient(&model, &x, BnMode::Eval)?;
//! assert_eq!((grad.dims(), log_px.dims()), (&[2usize, 3, 32, 32][..], &[2usize][..]));
//! # Ok::<(), jem_models::ModelError>(())
//! ```

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod error;
pub mod init;
pub mod interop;
pub mod jem;
pub mod layers;
pub mod params;
pub mod summary;
pub mod torch_import;
pub mod wrn;

/// The CPU kernels this crate runs (re-exported from `jem-kernels`).
pub use jem_kernels::{alloc, conv};

pub use error::{ModelError, Result};
pub use layers::{BnMode, Params};
pub use params::ParamStore;
pub use wrn::{Activation, Norm, WideResNet, WrnConfig};
