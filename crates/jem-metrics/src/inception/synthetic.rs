//! Deterministic stand-in weights for the FID Inception: for tests, benchmarks and smoke
//! runs without the real weight file. Their features mean nothing, but they vary from image
//! to image, and `tests/golden/inception/make_golden.py` gives pytorch-fid's network the same
//! values, which is how this crate's network is proven equal to pytorch-fid's.
//!
//! For a tensor `name`, flat row-major index `i` and phase
//! `p = (sum of the UTF-8 bytes of name mod 97) * 0.1`, with
//! `q = 0.7548776662466927 * i^2` and `s(a) = sin(a * i + p + 2 pi (q - floor q))` in f64:
//!
//! | tensor | value |
//! |---|---|
//! | `*.conv.weight` | `sqrt(4 / fan_in) * s(0.9137)` |
//! | `*.bn.weight` | `1 + 0.2 * s(1.31)` |
//! | `*.bn.bias` | `0.1 * s(1.73)` |
//! | `*.bn.running_mean` | `0.1 * s(2.11)` |
//! | `*.bn.running_var` | `1 + 0.5 * s(2.93)^2` |
//! | `fc.weight` | `sqrt(1 / 2048) * s(0.577)` |
//! | `fc.bias` | `0.1 * s(0.331)` |
//!
//! each cast to f32.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::FidInception;
use crate::{MetricError, Result};

fn s(a: f64, i: usize, p: f64) -> f64 {
    let i = i as f64;
    let q = 0.7548776662466927 * (i * i);
    (a * i + p + std::f64::consts::TAU * (q - q.floor())).sin()
}

/// The formula values of one tensor of the network.
pub fn formula_tensor(name: &str, shape: &[usize]) -> Result<Tensor> {
    let p = (name.bytes().map(u64::from).sum::<u64>() % 97) as f64 * 0.1;
    let n: usize = shape.iter().product();
    let value = |i: usize| -> Option<f64> {
        Some(if name.ends_with(".conv.weight") {
            let fan_in: usize = shape[1..].iter().product();
            (4.0 / fan_in as f64).sqrt() * s(0.9137, i, p)
        } else if name.ends_with(".bn.weight") {
            1.0 + 0.2 * s(1.31, i, p)
        } else if name.ends_with(".bn.bias") {
            0.1 * s(1.73, i, p)
        } else if name.ends_with(".bn.running_mean") {
            0.1 * s(2.11, i, p)
        } else if name.ends_with(".bn.running_var") {
            let v = s(2.93, i, p);
            1.0 + 0.5 * (v * v)
        } else if name == "fc.weight" {
            (1.0f64 / 2048.0).sqrt() * s(0.577, i, p)
        } else if name == "fc.bias" {
            0.1 * s(0.331, i, p)
        } else {
            return None;
        })
    };
    let v: Vec<f32> = (0..n)
        .map(|i| value(i).map(|x| x as f32))
        .collect::<Option<_>>()
        .ok_or_else(|| MetricError::Invalid(format!("no formula for tensor {name}")))?;
    Tensor::from_vec(v, shape, &Device::Cpu)
        .map_err(|e| MetricError::Invalid(format!("{name}: {e}")))
}

/// Every tensor of the network (the names of [`FidInception::parameter_shapes`]) from the
/// formula, on the CPU.
pub fn formula_weights() -> Result<HashMap<String, Tensor>> {
    FidInception::parameter_shapes()
        .into_iter()
        .map(|(name, shape)| Ok((name.clone(), formula_tensor(&name, &shape)?)))
        .collect()
}
