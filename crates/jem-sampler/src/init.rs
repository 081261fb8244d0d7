//! Initial distributions of SGLD chains: uniform noise or per-class Gaussians.

use candle_core::{Device, Tensor};
use jem_data::ClassGaussians;
use jem_rng::ChaCha8Rng;
use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::{Result, SamplerError};

/// Where chains start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitKind {
    /// Uniform in [-1, 1] (JEM).
    Uniform,
    /// A sample of the Gaussian fitted to a class of the data, clamped to [-1, 1]
    /// (JEM++ and SADA-JEM's "informative initialization").
    Informative,
}

/// Draws `n` uniform samples of `shape` in [-1, 1].
pub fn uniform(
    n: usize,
    shape: [usize; 3],
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor> {
    let d: usize = shape.iter().product();
    let v: Vec<f32> = (0..n * d)
        .map(|_| rng.random_range(-1.0f32..=1.0))
        .collect();
    Ok(Tensor::from_vec(
        v,
        (n, shape[0], shape[1], shape[2]),
        device,
    )?)
}

/// Draws one sample of class `classes[i]` for each `i` from the per-class Gaussians,
/// `mu_k + L_k eps` (computed on `device`), clamped to [-1, 1].
pub fn informative(
    gaussians: &ClassGaussians,
    classes: &[u32],
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor> {
    let d = gaussians.dim();
    let k = gaussians.num_classes();
    if let Some(c) = classes.iter().find(|&&c| c as usize >= k) {
        return Err(SamplerError::Invalid(format!(
            "class {c} has no Gaussian ({k} classes)"
        )));
    }
    let eps: Vec<f32> = (0..classes.len() * d)
        .map(|_| rng.sample(StandardNormal))
        .collect();
    let eps = Tensor::from_vec(eps, (classes.len(), d), device)?;
    let mut rows: Vec<Option<Tensor>> = vec![None; classes.len()];
    for c in 0..k {
        let idx: Vec<u32> = (0..classes.len() as u32)
            .filter(|&i| classes[i as usize] == c as u32)
            .collect();
        if idx.is_empty() {
            continue;
        }
        let ids = Tensor::from_vec(idx.clone(), idx.len(), device)?;
        let l = Tensor::from_slice(&gaussians.chol[c * d * d..(c + 1) * d * d], (d, d), device)?;
        let mu = Tensor::from_slice(&gaussians.means[c * d..(c + 1) * d], (1, d), device)?;
        let x = eps
            .index_select(&ids, 0)?
            .matmul(&l.t()?)?
            .broadcast_add(&mu)?;
        for (j, &i) in idx.iter().enumerate() {
            rows[i as usize] = Some(x.get(j)?);
        }
    }
    let rows: Vec<Tensor> = rows
        .into_iter()
        .map(|r| r.expect("every row drawn"))
        .collect();
    let [c, h, w] = gaussians.shape;
    Ok(Tensor::stack(&rows, 0)?
        .reshape((classes.len(), c, h, w))?
        .clamp(-1f32, 1f32)?)
}

/// Draws `n` samples from `kind`; informative draws pick each sample's class uniformly at
/// random (as the reference's reinitialization). Returns the samples and the classes drawn
/// (all 0 for uniform noise).
pub fn draw(
    kind: InitKind,
    n: usize,
    shape: [usize; 3],
    gaussians: Option<&ClassGaussians>,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<(Tensor, Vec<u32>)> {
    match kind {
        InitKind::Uniform => Ok((uniform(n, shape, rng, device)?, vec![0; n])),
        InitKind::Informative => {
            let g = gaussians.ok_or_else(|| {
                SamplerError::Invalid(
                    "informative initialization needs the class statistics".into(),
                )
            })?;
            if g.shape != shape {
                return Err(SamplerError::Invalid(format!(
                    "class statistics are for samples of shape {:?}, the chains are {shape:?}",
                    g.shape
                )));
            }
            let classes: Vec<u32> = (0..n)
                .map(|_| rng.random_range(0..g.num_classes() as u32))
                .collect();
            Ok((informative(g, &classes, rng, device)?, classes))
        }
    }
}
