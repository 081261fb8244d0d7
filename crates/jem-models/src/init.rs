//! PyTorch's default initialization, drawn from our own seeded generator.
//!
//! `nn.Conv2d` / `nn.Linear` weights: `kaiming_uniform_(a = sqrt(5))`, which is
//! `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`; biases: the same bound. `fan_in` is
//! `in_channels * kh * kw` (or `in_features`). BatchNorm: weight 1, bias 0, running mean 0,
//! running variance 1.

use candle_core::{Device, Tensor};
use jem_rng::ChaCha8Rng;
use rand::Rng;

use crate::error::Result;

/// A tensor of `shape` with values uniform in `[-bound, bound)`.
pub fn uniform(
    shape: &[usize],
    bound: f64,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let b = bound as f32;
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-b..b)).collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// PyTorch's default weight or bias for a layer with `fan_in` inputs per output.
pub fn torch_default(
    shape: &[usize],
    fan_in: usize,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor> {
    uniform(shape, 1.0 / (fan_in as f64).sqrt(), rng, device)
}
