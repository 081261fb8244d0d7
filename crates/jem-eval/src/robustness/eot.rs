//! BPDA+EOT through an SGLD purification defence (the reference's `purify_and_predict`,
//! `eot_defense_verification`), used when [`BpdaEot::is_active`].

use candle_core::{D, Tensor};
use jem_models::BnMode;
use jem_models::jem::{Classifier, input_gradient};
use rand::Rng;
use rand_distr::StandardNormal;

use super::config::BpdaEot;
use super::pgd::{ce_sum, grad_wrt, hits};
use crate::Result;

/// `reps` copies of `x` stacked along the batch dimension, `[reps * N, ...]` (copy-major, as
/// the reference's `X.repeat([reps, 1, 1, 1])`).
fn replicate(x: &Tensor, reps: usize) -> Result<Tensor> {
    let mut shape = vec![1usize; x.rank()];
    shape[0] = reps;
    Ok(x.repeat(shape)?)
}

/// `langevin_steps` steps of `x <- x + step * grad_x LSE(f(x)) + noise * N(0, I)`, eval-mode
/// BatchNorm, noise from `rng`.
pub(super) fn purify<M, R>(model: &M, x: &Tensor, e: &BpdaEot, rng: &mut R) -> Result<Tensor>
where
    M: Classifier + ?Sized,
    R: Rng + ?Sized,
{
    let mut x = x.detach();
    for _ in 0..e.langevin_steps {
        let (g, _) = input_gradient(model, &x, BnMode::Eval)?;
        x = (x + (g * e.langevin_step_size)?)?;
        if e.langevin_noise > 0.0 {
            let noise: Vec<f64> = (0..x.elem_count())
                .map(|_| e.langevin_noise * rng.sample::<f64, _>(StandardNormal))
                .collect();
            let noise = Tensor::from_vec(noise, x.shape(), x.device())?.to_dtype(x.dtype())?;
            x = (x + noise)?;
        }
        x = x.detach();
    }
    Ok(x)
}

/// Logits `[reps * N, C]` averaged over the copies: `[N, C]`.
fn mean_over_copies(logits: &Tensor, reps: usize) -> Result<Tensor> {
    let (rn, c) = logits.dims2()?;
    Ok(logits.reshape((reps, rn / reps, c))?.mean(0)?)
}

/// The stochastic classifier's per-image correctness at `x` (logits averaged over
/// `attack_reps` purified copies) and, when `need_grad`, the BPDA+EOT attack gradient: the
/// input gradient of the cross-entropy of the averaged logits at the purified copies,
/// averaged over the copies.
pub(super) fn eval<M, R>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    labels: &[u32],
    e: &BpdaEot,
    need_grad: bool,
    rng: &mut R,
) -> Result<(Vec<bool>, Option<Tensor>)>
where
    M: Classifier + ?Sized,
    R: Rng + ?Sized,
{
    let reps = e.attack_reps;
    let purified = purify(model, &replicate(x, reps)?, e, rng)?;
    if need_grad {
        let (g, mean) = grad_wrt(&purified, |xp| {
            let logits = model.logits_input_only(xp, BnMode::Eval)?;
            let mean = mean_over_copies(&logits, reps)?;
            Ok((ce_sum(&mean, y)?, mean))
        })?;
        let mut shape = x.dims().to_vec();
        shape.insert(0, reps);
        let g = g.reshape(shape)?.mean(0)?;
        Ok((hits(&mean, labels)?, Some(g)))
    } else {
        let logits = model.logits_input_only(&purified, BnMode::Eval)?.detach();
        Ok((hits(&mean_over_copies(&logits, reps)?, labels)?, None))
    }
}

/// Whether the large-sample prediction (`defense_reps` purified copies of the single image
/// `x`, `[1, ...]`) classifies it as `label` (false when `defense_reps` is 0).
pub(super) fn confirm<M, R>(
    model: &M,
    x: &Tensor,
    label: u32,
    e: &BpdaEot,
    rng: &mut R,
) -> Result<bool>
where
    M: Classifier + ?Sized,
    R: Rng + ?Sized,
{
    if e.defense_reps == 0 {
        return Ok(false);
    }
    let purified = purify(model, &replicate(x, e.defense_reps)?, e, rng)?;
    let logits = model.logits_input_only(&purified, BnMode::Eval)?.detach();
    let pred = mean_over_copies(&logits, e.defense_reps)?
        .argmax(D::Minus1)?
        .to_vec1::<u32>()?;
    Ok(pred.first() == Some(&label))
}
