//! Robust accuracy over batches and radii.

use candle_core::Tensor;
use jem_models::jem::Classifier;
use serde::{Deserialize, Serialize};

use super::config::PgdConfig;
use super::pgd::pgd_trace;
use crate::{EvalError, Result};

/// The numbers of one radius.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpsResult {
    /// The radius, [0, 1]-pixel units (`eps * 255` in the reference's /255 units).
    pub eps: f64,
    /// Images attacked.
    pub n: usize,
    /// Images classified correctly without attack.
    pub clean_correct: usize,
    /// `clean_correct / n`.
    pub clean_accuracy: f64,
    /// Images classified correctly at the last PGD iterate.
    pub last_iterate_correct: usize,
    /// `last_iterate_correct / n`.
    pub last_iterate_accuracy: f64,
    /// Images classified correctly at every evaluated point (clean image, start, every
    /// iterate): the reference's accounting (`defended *= correct` at every step).
    pub robust_correct: usize,
    /// `robust_correct / n`: the reference's robust accuracy (at most
    /// `last_iterate_accuracy` and `clean_accuracy`).
    pub robust_accuracy: f64,
    /// The reference's accuracy-over-attack curve: the fraction still robust after the clean
    /// image, after the start point and after each step (`steps + 2` values; the last is
    /// `robust_accuracy`).
    pub per_step_accuracy: Vec<f64>,
}

/// `robust_accuracy`'s answer: one [`EpsResult`] per radius.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustnessResult {
    /// The attack (its `eps` is not used: each point has its own).
    pub config: PgdConfig,
    /// The seed of the random starts (and of the purification noise).
    pub seed: u64,
    /// Images attacked.
    pub n: usize,
    /// One entry per radius, in the order given.
    pub points: Vec<EpsResult>,
}

impl RobustnessResult {
    /// The entry of radius `eps` (compared exactly), if any.
    pub fn at(&self, eps: f64) -> Option<&EpsResult> {
        self.points.iter().find(|p| p.eps == eps)
    }
}

/// [`robust_accuracy_with_progress`] without progress reports.
pub fn robust_accuracy<M, I>(
    model: &M,
    batches: I,
    config: &PgdConfig,
    eps_list: &[f64],
    seed: u64,
) -> Result<RobustnessResult>
where
    M: Classifier + ?Sized,
    I: IntoIterator<Item = (Tensor, Tensor)>,
{
    robust_accuracy_with_progress(model, batches, config, eps_list, seed, |_, _| {})
}

/// Attacks every batch `(x, y)` (images `[N, ...]` in model space, integer labels `[N]`)
/// with `config` at each radius of `eps_list` ([0, 1]-pixel units; `config.eps` is
/// ignored), and counts the clean, last-iterate and every-step (reference) correct images.
///
/// Deterministic for a given `seed`: the random start of batch `b` at radius `eps` comes
/// from a ChaCha generator seeded with `(seed, b, eps)`, so a radius's numbers do not
/// depend on the other radii of the list. `progress(batches_done, images_done)` is called
/// after each batch.
pub fn robust_accuracy_with_progress<M, I, P>(
    model: &M,
    batches: I,
    config: &PgdConfig,
    eps_list: &[f64],
    seed: u64,
    mut progress: P,
) -> Result<RobustnessResult>
where
    M: Classifier + ?Sized,
    I: IntoIterator<Item = (Tensor, Tensor)>,
    P: FnMut(usize, usize),
{
    config.validate()?;
    if eps_list.is_empty() {
        return Err(EvalError::Invalid(
            "robust accuracy: `eps_list` is empty".into(),
        ));
    }
    for &eps in eps_list {
        config.with_eps(eps).validate().map_err(|e| {
            EvalError::Invalid(format!("robust accuracy: `eps_list` entry {eps}: {e}"))
        })?;
    }
    let steps = config.steps;
    let mut n = 0usize;
    let mut clean = vec![0usize; eps_list.len()];
    let mut last = vec![0usize; eps_list.len()];
    let mut per_step = vec![vec![0usize; steps + 2]; eps_list.len()];
    for (b, (x, y)) in batches.into_iter().enumerate() {
        for (k, &eps) in eps_list.iter().enumerate() {
            let cfg = config.with_eps(eps);
            let mut rng = jem_data::rng::rng_for(&[seed, 0x9d9, b as u64, eps.to_bits()]);
            let t = pgd_trace(model, &x, &y, &cfg, &mut rng).map_err(|e| match e {
                EvalError::Invalid(m) => EvalError::Invalid(format!("batch {b}, eps {eps}: {m}")),
                other => other,
            })?;
            clean[k] += t.clean_correct.iter().filter(|&&c| c).count();
            last[k] += t.last_correct.iter().filter(|&&c| c).count();
            for (acc, &r) in per_step[k].iter_mut().zip(&t.robust_per_step) {
                *acc += r;
            }
        }
        n += x.dim(0)?;
        progress(b + 1, n);
    }
    if n == 0 {
        return Err(EvalError::Invalid(
            "robust accuracy: `batches` holds no image".into(),
        ));
    }
    let frac = |c: usize| c as f64 / n as f64;
    let points = eps_list
        .iter()
        .enumerate()
        .map(|(k, &eps)| {
            let robust = per_step[k][steps + 1];
            EpsResult {
                eps,
                n,
                clean_correct: clean[k],
                clean_accuracy: frac(clean[k]),
                last_iterate_correct: last[k],
                last_iterate_accuracy: frac(last[k]),
                robust_correct: robust,
                robust_accuracy: frac(robust),
                per_step_accuracy: per_step[k].iter().map(|&c| frac(c)).collect(),
            }
        })
        .collect();
    Ok(RobustnessResult {
        config: *config,
        seed,
        n,
        points,
    })
}
