//! CPU kernels for [candle](https://github.com/huggingface/candle) conv nets, each a candle
//! custom op with its own backward pass, so they compose with candle's autograd:
//!
//! - [`conv::conv2d`]: 2-D convolution with bias as per-image GEMMs (the `gemm` crate, which
//!   picks AVX-512 or AVX2 kernels at run time): im2col, shifted GEMMs on zero-padded images
//!   for stride-1 layers of 8-64 channels, and Winograd F(4x4, 3x3) / F(2x2, 3x3) for 3x3
//!   stride-1 padding-1 layers, forward and both gradients, gradients only for the operands
//!   that need one;
//! - [`batch_norm`]: BatchNorm followed by an optional leaky ReLU in one pass, in batch
//!   statistics (train) and running statistics (eval) modes, with per-channel sums in f64 as
//!   PyTorch's CPU kernels;
//! - [`pool`]: max and average pooling (padding excluded from averages) for inference, one
//!   parallel pass over the image planes;
//! - [`alloc`]: allocator and thread settings that conv-net training on the CPU needs.
//!
//! On devices other than the CPU, or for dtypes other than f32, [`conv::conv2d`] falls back
//! to candle's own convolution; the BatchNorm functions are CPU f32 only (callers keep a
//! composed path for other devices). [`set_portable`] sends the CPU down those paths too,
//! to compute on a machine without a GPU what a GPU run computes.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let x = Tensor::randn(0f32, 1.0, (2, 8, 16, 16), &Device::Cpu)?;
//! let w = Tensor::randn(0f32, 0.1, (16, 8, 3, 3), &Device::Cpu)?;
//! let b = Tensor::zeros(16, candle_core::DType::F32, &Device::Cpu)?;
//! let y = jem_kernels::conv::conv2d(&x, &w, Some(&b), 1, 1)?;
//! assert_eq!(y.dims(), &[2, 16, 16, 16]);
//! // the same numbers as candle's own convolution
//! let stock = x.conv2d(&w, 1, 1, 1, 1)?;
//! let diff = (y - stock)?.abs()?.max_all()?.to_scalar::<f32>()?;
//! assert!(diff < 1e-4);
//! # Ok::<(), candle_core::Error>(())
//! ```

#![warn(missing_docs)]

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod alloc;
pub mod batch_norm;
pub mod conv;
pub mod pool;
mod simd;

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor};

static PORTABLE: AtomicBool = AtomicBool::new(false);

/// Sends every operation of this crate, and the callers that ask [`uses_kernels`], down the
/// path that other devices take (candle's own operations) on the CPU too. Process-wide, off
/// by default. It exists to check, on a machine without a GPU, what a GPU run computes
/// (`jem bench parity --portable`), and to compare the kernels with candle's operations.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let x = Tensor::zeros((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu)?;
/// assert!(jem_kernels::uses_kernels(&x));
/// jem_kernels::set_portable(true);
/// assert!(!jem_kernels::uses_kernels(&x));
/// jem_kernels::set_portable(false);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn set_portable(on: bool) {
    PORTABLE.store(on, Ordering::Relaxed);
}

/// Whether [`set_portable`] is on.
pub fn portable() -> bool {
    PORTABLE.load(Ordering::Relaxed)
}

/// Whether an operation on `x` runs on this crate's kernels: an f32 tensor on the CPU, with
/// [`set_portable`] off.
pub fn uses_kernels(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 && !portable()
}
