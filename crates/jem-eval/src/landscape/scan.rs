//! The scans: mean energy of a fixed batch at `theta + alpha d1 (+ beta d2)`.

use candle_core::{DType, Tensor, Var};
use jem_io::progress::{Progress, ProgressMode};
use jem_models::{BnMode, Params, WideResNet};
use serde::{Deserialize, Serialize};

use super::direction::{Direction, DirectionSpec};
use crate::{EvalError, Result};

/// Options of the scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanOptions {
    /// Images per forward pass (bounds memory; the mean is over the whole batch). Default 256.
    pub chunk_size: usize,
    /// Show the scan's progress on stderr ([`jem_io::progress`]). Default off.
    #[serde(skip)]
    pub progress: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            chunk_size: 256,
            progress: false,
        }
    }
}

impl ScanOptions {
    fn progress_of(&self, label: &str, points: usize) -> Progress {
        Progress::new(
            label,
            points as u64,
            "points",
            ProgressMode::shown(self.progress),
        )
    }
}

/// The energy along one direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Landscape1d {
    /// Step sizes `alpha`, strictly increasing.
    pub alphas: Vec<f64>,
    /// Mean energy `E(x) = -LSE(f(x))` of the batch at `theta + alphas[i] d`. Non-finite
    /// values are written as JSON `null` and read back as NaN.
    #[serde(with = "nullable")]
    pub energies: Vec<f64>,
    /// Images in the batch.
    pub samples: usize,
    /// How the direction was drawn, if it was drawn here.
    pub direction: Option<DirectionSpec>,
}

/// The energy over the plane of two directions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Landscape2d {
    /// Steps `alpha` along `d1`, strictly increasing.
    pub alphas: Vec<f64>,
    /// Steps `beta` along `d2`, strictly increasing.
    pub betas: Vec<f64>,
    /// `energies[i][j]`: mean energy at `theta + alphas[i] d1 + betas[j] d2` (one row per
    /// alpha; non-finite values as in [`Landscape1d::energies`]).
    #[serde(with = "nullable_rows")]
    pub energies: Vec<Vec<f64>>,
    /// Images in the batch.
    pub samples: usize,
    /// How `d1` was drawn, if it was drawn here.
    pub direction1: Option<DirectionSpec>,
    /// How `d2` was drawn, if it was drawn here.
    pub direction2: Option<DirectionSpec>,
}

/// Restores the saved parameters when dropped, so that an error (or a panic) in the middle
/// of a scan leaves the model as it was.
struct Restore {
    saved: Vec<(String, Var, Tensor)>,
    restored: bool,
}

impl Restore {
    /// Saves copies of the parameters that any of `dirs` moves.
    fn new(model: &WideResNet, dirs: &[&Direction]) -> Result<Self> {
        let mut saved = Vec::new();
        for (name, var) in model.store.params() {
            if dirs.iter().any(|d| d.get(name).is_some()) {
                let copy = var.as_detached_tensor().copy()?;
                saved.push((name.to_string(), var.clone(), copy));
            }
        }
        Ok(Self {
            saved,
            restored: false,
        })
    }

    /// Sets every saved parameter to `theta + sum_k c_k d_k` (exactly `theta` where all the
    /// coefficients on its directions are 0).
    fn set(&self, steps: &[(f64, &Direction)]) -> Result<()> {
        for (name, var, theta) in &self.saved {
            let mut t = theta.clone();
            for (c, d) in steps {
                if let Some(dt) = d.get(name)
                    && *c != 0.0
                {
                    t = (t + dt.affine(*c, 0.0)?)?;
                }
            }
            var.set(&t)?;
        }
        Ok(())
    }

    /// Puts the saved values back.
    fn restore(mut self) -> Result<()> {
        self.restored = true;
        for (_, var, theta) in &self.saved {
            var.set(theta)?;
        }
        Ok(())
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if !self.restored {
            for (_, var, theta) in &self.saved {
                let _ = var.set(theta);
            }
        }
    }
}

fn check_batch(batch: &Tensor, chunk_size: usize, chunk_arg: &str) -> Result<usize> {
    if batch.rank() != 4 || batch.dim(0)? == 0 {
        return Err(EvalError::Invalid(format!(
            "batch: expected images [N, C, H, W] with N >= 1, got shape {:?}",
            batch.dims()
        )));
    }
    if chunk_size == 0 {
        return Err(EvalError::Invalid(format!(
            "{chunk_arg} must be at least 1"
        )));
    }
    Ok(batch.dim(0)?)
}

fn check_steps(arg: &str, v: &[f64]) -> Result<()> {
    if v.is_empty() {
        return Err(EvalError::Invalid(format!(
            "{arg}: needs at least one value"
        )));
    }
    if v.iter().any(|x| !x.is_finite()) || v.windows(2).any(|w| w[1] <= w[0]) {
        return Err(EvalError::Invalid(format!(
            "{arg}: values must be finite and strictly increasing, got {v:?}"
        )));
    }
    Ok(())
}

/// The mean energy `E(x) = -LSE(f(x))` of `batch` (`[N, C, H, W]`, converted to the
/// model's dtype and device chunk by chunk) under the model's current parameters, BatchNorm
/// in eval mode, `chunk_size` images per forward pass; accumulated in f64.
pub fn mean_energy(model: &WideResNet, batch: &Tensor, chunk_size: usize) -> Result<f64> {
    let n = check_batch(batch, chunk_size, "chunk_size")?;
    let (device, dtype) = (model.store.device(), model.store.dtype());
    let mut sum = 0.0;
    for start in (0..n).step_by(chunk_size) {
        let len = chunk_size.min(n - start);
        let x = batch
            .narrow(0, start, len)?
            .to_device(device)?
            .to_dtype(dtype)?;
        let logits = model.logits_with(&x, BnMode::Eval, Params::Detached)?;
        let e = jem_models::jem::energy(&logits)?;
        sum += e.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    }
    Ok(sum / n as f64)
}

/// [`landscape_1d_with`] with the default [`ScanOptions`].
pub fn landscape_1d(
    model: &WideResNet,
    batch: &Tensor,
    direction: &Direction,
    alphas: &[f64],
) -> Result<Landscape1d> {
    landscape_1d_with(model, batch, direction, alphas, &ScanOptions::default())
}

/// The mean energy of `batch` (eval mode) at `theta + alpha d` for each of `alphas`
/// (finite, strictly increasing). The model's parameters are perturbed in place during
/// the scan (the model must not be used elsewhere meanwhile) and restored bit-exactly
/// afterwards, also on error; BatchNorm running statistics are never touched.
pub fn landscape_1d_with(
    model: &WideResNet,
    batch: &Tensor,
    direction: &Direction,
    alphas: &[f64],
    options: &ScanOptions,
) -> Result<Landscape1d> {
    let samples = check_batch(batch, options.chunk_size, "options.chunk_size")?;
    check_steps("alphas", alphas)?;
    direction.check(&model.store, "direction")?;
    let guard = Restore::new(model, &[direction])?;
    let mut energies = Vec::with_capacity(alphas.len());
    let progress = options.progress_of("landscape 1-D", alphas.len());
    for &a in alphas {
        guard.set(&[(a, direction)])?;
        energies.push(mean_energy(model, batch, options.chunk_size)?);
        progress.inc(1);
    }
    progress.finish();
    guard.restore()?;
    Ok(Landscape1d {
        alphas: alphas.to_vec(),
        energies,
        samples,
        direction: direction.spec(),
    })
}

/// [`landscape_2d_with`] with the default [`ScanOptions`].
pub fn landscape_2d(
    model: &WideResNet,
    batch: &Tensor,
    d1: &Direction,
    d2: &Direction,
    alphas: &[f64],
    betas: &[f64],
) -> Result<Landscape2d> {
    landscape_2d_with(model, batch, d1, d2, alphas, betas, &ScanOptions::default())
}

/// The mean energy of `batch` (eval mode) at `theta + alpha d1 + beta d2` on the grid
/// `alphas` x `betas` (each finite and strictly increasing); parameters restored as in
/// [`landscape_1d_with`]. Costs `alphas.len() * betas.len()` passes over the batch.
pub fn landscape_2d_with(
    model: &WideResNet,
    batch: &Tensor,
    d1: &Direction,
    d2: &Direction,
    alphas: &[f64],
    betas: &[f64],
    options: &ScanOptions,
) -> Result<Landscape2d> {
    let samples = check_batch(batch, options.chunk_size, "options.chunk_size")?;
    check_steps("alphas", alphas)?;
    check_steps("betas", betas)?;
    d1.check(&model.store, "d1")?;
    d2.check(&model.store, "d2")?;
    let guard = Restore::new(model, &[d1, d2])?;
    let mut energies = Vec::with_capacity(alphas.len());
    let progress = options.progress_of("landscape 2-D", alphas.len() * betas.len());
    for &a in alphas {
        let mut row = Vec::with_capacity(betas.len());
        for &b in betas {
            guard.set(&[(a, d1), (b, d2)])?;
            row.push(mean_energy(model, batch, options.chunk_size)?);
            progress.inc(1);
        }
        energies.push(row);
    }
    progress.finish();
    guard.restore()?;
    Ok(Landscape2d {
        alphas: alphas.to_vec(),
        betas: betas.to_vec(),
        energies,
        samples,
        direction1: d1.spec(),
        direction2: d2.spec(),
    })
}

/// `Vec<f64>` with non-finite values as `null` (read back as NaN).
mod nullable {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let v = Vec::<Option<f64>>::deserialize(d)?;
        Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}

/// `Vec<Vec<f64>>` with non-finite values as `null` (read back as NaN).
mod nullable_rows {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<f64>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|r| {
            r.iter()
                .map(|x| x.is_finite().then_some(*x))
                .collect::<Vec<_>>()
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
        let v = Vec::<Vec<Option<f64>>>::deserialize(d)?;
        Ok(v.into_iter()
            .map(|r| r.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
            .collect())
    }
}
