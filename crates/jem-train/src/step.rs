//! One training iteration of Algorithm 1, in the reference's order, on given batches.
//!
//! [`first_pass`] runs the forward passes with BatchNorm in train mode, updating the running
//! statistics in this order: the positive batch `x+`, the K SGLD steps from the chains'
//! starting points, the negatives `x-`, the labelled batch. The caller may inspect the loss
//! (the divergence guard) before [`finish`] back-propagates it and updates the weights:
//! with SAM / ASAM, the first step perturbs the weights, a second pass on the **same**
//! `x+`, `x-` and labelled batch (running statistics frozen) gives the gradient that the
//! base optimizer applies at the restored weights.
//!
//! [`crate::algorithm::iteration`] wraps these two with the replay buffer's draw and
//! write-back: the whole of one iteration of Algorithm 1.

use candle_core::{Tensor, Var};
use jem_data::rng::ChaCha8Rng;
use jem_models::{BnMode, jem};
use jem_optim::{Optimizer, Sam};
use jem_sampler::Sgld;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::algorithm::TrainableClassifier;
use crate::config::{L2Form, LossConfig, SecondPass};

/// The optimizer of a run: a base optimizer, optionally wrapped in SAM / ASAM.
pub struct Optimizers {
    /// SGD or Adam.
    pub base: Box<dyn Optimizer>,
    /// The sharpness-aware wrapper.
    pub sam: Option<Sam>,
}

/// The data of one iteration.
#[derive(Clone, Debug)]
pub struct StepBatch {
    /// Positive samples (not augmented in SADA-JEM); unused when `loss.px == 0`.
    pub x_pos: Option<Tensor>,
    /// Starting points of the chains (from the replay buffer).
    pub x_start: Option<Tensor>,
    /// Labelled, augmented images.
    pub x_lab: Tensor,
    /// Their labels (u32).
    pub y_lab: Tensor,
}

/// Scalars of one pass. Terms the objective does not compute stay 0 here (the energies when
/// `loss.px == 0`, cross-entropy and accuracy when `loss.pyx == 0`); the run log writes them
/// as `null`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Mean energy of the positive batch, `-mean LSE(f(x+))`.
    pub e_pos: f64,
    /// Mean energy of the negatives.
    pub e_neg: f64,
    /// Cross-entropy of the labelled batch.
    pub ce: f64,
    /// Accuracy on the labelled batch.
    pub acc: f64,
    /// The whole loss.
    pub loss: f64,
}

/// The first pass: its loss (with the graph), scalars, and the negatives.
pub struct FirstPass {
    /// Loss tensor to back-propagate.
    pub loss: Tensor,
    /// Its scalars.
    pub stats: StepStats,
    /// The SGLD samples (detached), to be written back to the buffer.
    pub x_neg: Option<Tensor>,
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

/// The L2 penalty on the energies of the positive and negative batches, from their per-sample
/// log-densities (`E = -LSE`, so the squares are the same).
fn l2_penalty(lse_pos: &Tensor, lse_neg: &Tensor, form: L2Form) -> Result<Tensor> {
    Ok(match form {
        L2Form::MeanOfSquares => (lse_pos.sqr()?.mean_all()? + lse_neg.sqr()?.mean_all()?)?,
        L2Form::SquareOfMean => (lse_pos.mean_all()?.sqr()? + lse_neg.mean_all()?.sqr()?)?,
    })
}

/// Loss of one pass given the per-sample log-densities of `x+` and the negatives; `full` adds
/// the `px` weight and the L2 term.
fn loss_pass<M: TrainableClassifier + ?Sized>(
    model: &M,
    mode: BnMode,
    lse_pos: Option<Tensor>,
    x_neg: Option<&Tensor>,
    batch: &StepBatch,
    w: &LossConfig,
    full: bool,
) -> Result<(Tensor, StepStats)> {
    let mut stats = StepStats::default();
    let mut loss: Option<Tensor> = None;
    let mut add = |t: Tensor| -> Result<()> {
        loss = Some(match loss.take() {
            None => t,
            Some(l) => (l + t)?,
        });
        Ok(())
    };
    if let (Some(lse_pos), Some(x_neg)) = (lse_pos, x_neg) {
        let lse_neg = jem::log_density(&model.logits(x_neg, mode)?)?;
        let (fp, fq) = (lse_pos.mean_all()?, lse_neg.mean_all()?);
        stats.e_pos = -scalar(&fp)?;
        stats.e_neg = -scalar(&fq)?;
        let mut lpx = (&fq - &fp)?;
        if full && w.l2 > 0.0 {
            lpx = (lpx + (l2_penalty(&lse_pos, &lse_neg, w.l2_form)? * w.l2)?)?;
        }
        add(if full { (lpx * w.px)? } else { lpx })?;
    }
    if w.pyx > 0.0 {
        let logits = model.logits(&batch.x_lab, mode)?;
        let ce = jem::cross_entropy(&logits, &batch.y_lab)?;
        stats.ce = scalar(&ce)?;
        stats.acc = jem::accuracy(&logits, &batch.y_lab)?;
        add(if full { (ce * w.pyx)? } else { ce })?;
    }
    let loss = loss.ok_or_else(|| crate::TrainError::Config("loss: no term is active".into()))?;
    stats.loss = scalar(&loss)?;
    Ok((loss, stats))
}

/// Forward passes of an iteration at the current weights (see the module documentation).
/// `sampler` and `batch.x_start` are needed when `w.px > 0`.
pub fn first_pass<M: TrainableClassifier + ?Sized>(
    model: &M,
    batch: &StepBatch,
    sampler: Option<&Sgld>,
    rng: &mut ChaCha8Rng,
    w: &LossConfig,
) -> Result<FirstPass> {
    let generative = w.px > 0.0;
    let (lse_pos, x_neg) = if generative {
        let (Some(x_pos), Some(x_start), Some(sgld)) = (&batch.x_pos, &batch.x_start, sampler)
        else {
            return Err(crate::TrainError::Config(
                "loss.px > 0 needs positives, chain starts and a sampler".into(),
            ));
        };
        let lse_pos = jem::log_density(&model.logits(x_pos, BnMode::Train)?)?;
        let x_neg = sgld.run(model, x_start, None, rng)?;
        (Some(lse_pos), Some(x_neg))
    } else {
        (None, None)
    };
    let (loss, stats) = loss_pass(
        model,
        BnMode::Train,
        lse_pos,
        x_neg.as_ref(),
        batch,
        w,
        true,
    )?;
    Ok(FirstPass { loss, stats, x_neg })
}

/// Back-propagates the first pass and updates the weights (with SAM: perturb, second pass
/// with frozen running statistics, restore, base step). Returns the second pass's scalars.
pub fn finish<M: TrainableClassifier + ?Sized>(
    model: &M,
    first: &FirstPass,
    batch: &StepBatch,
    w: &LossConfig,
    opt: &mut Optimizers,
) -> Result<Option<StepStats>> {
    let params: Vec<(&str, &Var)> = model.named_params();
    let g1 = first.loss.backward()?;
    let Some(sam) = opt.sam.as_mut() else {
        opt.base.step(&params, &g1)?;
        return Ok(None);
    };
    sam.first_step(&params, &g1)?;
    drop(g1);
    let lse_pos = match &batch.x_pos {
        Some(x) if first.x_neg.is_some() => {
            Some(jem::log_density(&model.logits(x, BnMode::TrainFrozen)?)?)
        }
        _ => None,
    };
    let full = w.second_pass == SecondPass::Full;
    let (loss2, stats2) = loss_pass(
        model,
        BnMode::TrainFrozen,
        lse_pos,
        first.x_neg.as_ref(),
        batch,
        w,
        full,
    )?;
    let g2 = loss2.backward()?;
    sam.second_step(&params, &g2, opt.base.as_mut())?;
    Ok(Some(stats2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use jem_models::{WideResNet, WrnConfig};

    /// `(LSE per image, log-softmax rows)` of logits, in f64, written out by hand.
    fn lse_rows(logits: &Tensor) -> Vec<f64> {
        let rows: Vec<Vec<f64>> = logits.to_dtype(DType::F64).unwrap().to_vec2().unwrap();
        rows.iter()
            .map(|r| {
                let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                m + r.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
            })
            .collect()
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    /// The first pass's loss with each L2 form against the objective written out in f64 from
    /// the model's logits: `mean LSE(x-) - mean LSE(x+) + l2 * L2`, no cross-entropy.
    #[test]
    fn both_l2_forms_match_the_objective_written_out() {
        let dev = Device::Cpu;
        let model = WideResNet::new(WrnConfig::reference(10, 1, 10), 3, &dev).unwrap();
        // seeded inputs: `Tensor::randn` draws from an unseeded generator, and on some draws
        // the gap below was too small to tell the forms apart (a flaky test)
        let randn = |mean: f32, std: f32, seed: u64| {
            use rand::Rng;
            let mut rng = jem_data::rng::rng_for(&[seed]);
            // Box-Muller
            let v: Vec<f32> = (0..6 * 3 * 32 * 32)
                .map(|_| {
                    let (u1, u2) = (rng.random::<f32>().max(1e-7), rng.random::<f32>());
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
                    mean + std * z
                })
                .collect();
            Tensor::from_vec(v, (6, 3, 32, 32), &dev).unwrap()
        };
        let x_pos = randn(0.0, 1.0, 11);
        let x_neg = randn(0.5, 2.0, 12);
        let batch = StepBatch {
            x_pos: Some(x_pos.clone()),
            x_start: Some(x_neg.clone()),
            x_lab: x_pos.clone(),
            y_lab: Tensor::zeros(6, DType::U32, &dev).unwrap(),
        };
        // zero SGLD steps: the negatives are the chains' starting points
        let sgld = Sgld::reference(0);
        // train-mode BatchNorm normalizes with the batch's own statistics, so these logits are
        // the ones the pass computes
        let lp = lse_rows(&model.logits(&x_pos, BnMode::Train).unwrap());
        let ln = lse_rows(&model.logits(&x_neg, BnMode::Train).unwrap());
        let sq = |v: &[f64]| v.iter().map(|x| x * x).collect::<Vec<_>>();
        let want_mean_of_squares = mean(&sq(&lp)) + mean(&sq(&ln));
        let want_square_of_mean = mean(&lp).powi(2) + mean(&ln).powi(2);
        // the two forms differ by the variance of LSE over a batch, small at initialization:
        // a large coefficient makes the difference stand far above f32 rounding
        let l2 = 100.0;
        let tol = |want: f64| 1e-6 * want.abs();
        let base = mean(&ln) - mean(&lp);
        let gap = l2 * (want_mean_of_squares - want_square_of_mean).abs();
        assert!(gap > 10.0 * tol(base + l2 * want_mean_of_squares), "{gap}");
        for (form, penalty) in [
            (L2Form::MeanOfSquares, want_mean_of_squares),
            (L2Form::SquareOfMean, want_square_of_mean),
        ] {
            let w = LossConfig {
                pyx: 0.0,
                l2,
                l2_form: form,
                ..LossConfig::default()
            };
            let mut rng = jem_data::rng::rng_for(&[1]);
            let first = first_pass(&model, &batch, Some(&sgld), &mut rng, &w).unwrap();
            let want = base + l2 * penalty;
            let got = first.stats.loss;
            assert!((got - want).abs() < tol(want), "{form:?}: {got} vs {want}");
        }
    }
}
