//! The SADA-JEM iteration as `../shared/bench/torch_baseline.py --measure sadajem_iter`
//! times it, for like-for-like speed comparisons: the labelled batch doubles as the positive
//! batch (one forward gives the cross-entropy and E(x+)), the chains run with BatchNorm in
//! eval mode, and both SAM passes see two batches (labelled and negatives) instead of the
//! three of [`crate::step`] (positives, negatives, labelled). Training never uses this.

use std::time::Instant;

use candle_core::{Tensor, Var};
use jem_data::rng::ChaCha8Rng;
use jem_models::{BnMode, WideResNet, jem};
use jem_sampler::{ReplayBuffer, Sgld};

use crate::Result;
use crate::step::Optimizers;

/// `CE(f(x_lab), y) + E(x_lab) - E(x_neg)` with BatchNorm in `mode`.
fn loss(
    model: &WideResNet,
    x_lab: &Tensor,
    y_lab: &Tensor,
    x_neg: &Tensor,
    mode: BnMode,
) -> Result<Tensor> {
    let lp = model.logits(x_lab, mode)?;
    let lq = model.logits(x_neg, mode)?;
    let ce = jem::cross_entropy(&lp, y_lab)?;
    let gap = (jem::log_density(&lq)?.mean_all()? - jem::log_density(&lp)?.mean_all()?)?;
    Ok((ce + gap)?)
}

/// One iteration: K eval-mode SGLD steps from the buffer, SAM's two passes over the labelled
/// batch and the negatives, the base step, the chains written back. Returns the
/// milliseconds of the sampling and of the rest (SAM, the step, the write-back), as the
/// script's `sgld_ms` and `sam_ms` split them.
pub(super) fn iteration(
    model: &WideResNet,
    buffer: &mut ReplayBuffer,
    (x_lab, y_lab): (&Tensor, &Tensor),
    sgld_steps: usize,
    opt: &mut Optimizers,
    rng: &mut ChaCha8Rng,
) -> Result<[f64; 2]> {
    let (slots, start) = buffer.sample(x_lab.dim(0)?, None, rng)?;
    let sgld = Sgld {
        bn_mode: BnMode::Eval,
        ..Sgld::reference(sgld_steps)
    };
    let t0 = Instant::now();
    let x_neg = sgld.run(model, &start, None, rng)?;
    let t1 = Instant::now();
    let params: Vec<(&str, &Var)> = model.store.params().collect();
    let g1 = loss(model, x_lab, y_lab, &x_neg, BnMode::Train)?.backward()?;
    match opt.sam.as_mut() {
        None => opt.base.step(&params, &g1)?,
        Some(sam) => {
            sam.first_step(&params, &g1)?;
            drop(g1);
            let g2 = loss(model, x_lab, y_lab, &x_neg, BnMode::TrainFrozen)?.backward()?;
            sam.second_step(&params, &g2, opt.base.as_mut())?;
        }
    }
    buffer.store(&slots, &x_neg)?;
    Ok([
        (t1 - t0).as_secs_f64() * 1e3,
        t1.elapsed().as_secs_f64() * 1e3,
    ])
}
