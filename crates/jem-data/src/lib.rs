//! # jem-data
//!
//! The data sets of SADA-JEM and its family, read from their official on-disk formats and
//! fed to training as candle tensors:
//!
//! - readers: [`idx`] (MNIST, Fashion-MNIST), [`cifar`] (CIFAR-10/100 binary), [`svhn`]
//!   (MATLAB v5 `.mat`, through [`matv5`]), [`celeba`] (aligned JPEGs);
//! - [`datasets`]: names, splits, file locations and official downloads ([`download`]:
//!   checksums, resume, extraction), plus small [`embedded`] sets compiled in;
//! - [`transform`]: scaling to [-1, 1] and the reference augmentations;
//! - [`loader`]: seeded, prefetching batch streams (finite or cycling);
//! - [`derived`]: OOD sets (CIFAR10-interp, uniform noise, constant images);
//! - [`stats`]: per-class Gaussians (mean, Cholesky factor) for informative initialization.
//!
//! Everything random is seeded through [`rng`], independent of candle's CPU generator.

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod celeba;
pub mod cifar;
pub mod datasets;
pub mod derived;
pub mod download;
pub mod embedded;
pub mod error;
pub mod fsutil;
pub mod idx;
pub mod image_set;
pub mod info;
pub mod loader;
pub mod matv5;
pub mod stats;
pub mod svhn;
pub mod transform;

/// Seeded generators: the [`jem_rng`] crate, re-exported under its old path.
pub use jem_rng as rng;

pub use datasets::{DatasetName, LoadOptions, resolve_cache_dir, resolve_data_dir};
pub use error::{DataError, Result};
pub use image_set::{FloatImageSet, ImageSet};
pub use loader::{Batch, Batches, Loader, LoaderConfig, Position};
pub use stats::ClassGaussians;
pub use transform::{ImageSource, Transform};
