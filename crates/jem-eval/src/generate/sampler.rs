//! The chains: the reference's eval-time step, unconditional and class-conditional.

use std::collections::BTreeSet;

use candle_core::{D, DType, Device, Tensor};
use jem_data::ClassGaussians;
use jem_data::rng::ChaCha8Rng;
use jem_io::progress::{Progress, ProgressMode};
use jem_models::BnMode;
use jem_models::jem::{Classifier, class_logit, input_gradient, log_density};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use super::*;
use crate::{EvalError, Result};

/// What the chains sample from: a classifier, the run's class statistics and sample shape.
pub struct Sampler<'a, M: Classifier + ?Sized> {
    /// The model.
    pub model: &'a M,
    /// Per-class Gaussians for the informative initialization, if the run has them.
    pub gaussians: Option<&'a ClassGaussians>,
    /// `[C, H, W]` of one sample.
    pub shape: [usize; 3],
    /// Classes of the model.
    pub num_classes: usize,
    /// Where the model runs.
    pub device: &'a Device,
}

/// Chains after sampling (tensors on the CPU, model space [-1, 1]).
#[derive(Clone, Debug)]
pub struct Chains {
    /// Final samples `[N, C, H, W]`.
    pub samples: Tensor,
    /// Conditional chains: the class of each chain (class-major: `per_class` chains of class
    /// 0, then of class 1, ...).
    pub labels: Option<Vec<u32>>,
    /// Where they started.
    pub init: ChainInit,
    /// `(steps done, samples)` at the requested snapshot steps, in increasing order.
    pub snapshots: Vec<(usize, Tensor)>,
}

impl<M: Classifier + ?Sized> Sampler<'_, M> {
    fn resolve_init(&self, init: ChainInit) -> Result<ChainInit> {
        match (init, self.gaussians) {
            (ChainInit::Auto, Some(_)) | (ChainInit::Informative, Some(_)) => {
                Ok(ChainInit::Informative)
            }
            (ChainInit::Auto, None) | (ChainInit::Uniform, _) => Ok(ChainInit::Uniform),
            (ChainInit::Informative, None) => Err(EvalError::Invalid(
                "generate: init = informative needs per-class Gaussians, and this run has none \
                 (its config does not use the informative initialization)"
                    .into(),
            )),
        }
    }

    fn gaussians_checked(&self) -> Result<&ClassGaussians> {
        let g = self.gaussians.ok_or_else(|| {
            EvalError::Invalid("generate: no per-class Gaussians for the informative init".into())
        })?;
        if g.shape != self.shape {
            return Err(EvalError::Invalid(format!(
                "generate: the class statistics are for samples of shape {:?}, the chains are {:?}",
                g.shape, self.shape
            )));
        }
        Ok(g)
    }

    /// `n` unconditional chains run for `opts.n_steps` steps ascending `sum LSE(f(x))`.
    pub fn unconditional(&self, opts: &GenerateOptions) -> Result<Chains> {
        opts.validate()?;
        let init = self.resolve_init(opts.init)?;
        let mut rng = jem_data::rng::rng_for(&[opts.seed, 0x6e6, 1]);
        let n = opts.n_chains;
        let x0 = match init {
            ChainInit::Informative => {
                let g = self.gaussians_checked()?;
                let k = g.num_classes() as u32;
                let classes: Vec<u32> = (0..n).map(|_| rng.random_range(0..k)).collect();
                jem_sampler::init::informative(g, &classes, &mut rng, self.device)?
            }
            _ => jem_sampler::init::uniform(n, self.shape, &mut rng, self.device)?,
        };
        let (samples, snapshots) =
            self.run_chains(&x0, None, opts.n_steps, opts, &mut rng, "unconditional")?;
        Ok(Chains {
            samples,
            labels: None,
            init,
            snapshots,
        })
    }

    /// `opts.per_class` chains per class run for `opts.cond_steps` steps ascending
    /// `sum f(x)[y]`, each started from its own class's Gaussian when available.
    pub fn conditional(&self, opts: &GenerateOptions) -> Result<Chains> {
        opts.validate()?;
        let init = self.resolve_init(opts.init)?;
        let mut rng = jem_data::rng::rng_for(&[opts.seed, 0x6e6, 2]);
        let labels: Vec<u32> = (0..self.num_classes as u32)
            .flat_map(|c| std::iter::repeat_n(c, opts.per_class))
            .collect();
        let x0 = match init {
            ChainInit::Informative => {
                let g = self.gaussians_checked()?;
                if g.num_classes() != self.num_classes {
                    return Err(EvalError::Invalid(format!(
                        "generate: the class statistics have {} classes, the model {}",
                        g.num_classes(),
                        self.num_classes
                    )));
                }
                jem_sampler::init::informative(g, &labels, &mut rng, self.device)?
            }
            _ => jem_sampler::init::uniform(labels.len(), self.shape, &mut rng, self.device)?,
        };
        let (samples, snapshots) = self.run_chains(
            &x0,
            Some(&labels),
            opts.cond_steps,
            opts,
            &mut rng,
            "conditional",
        )?;
        Ok(Chains {
            samples,
            labels: Some(labels),
            init,
            snapshots,
        })
    }

    /// Runs the chains `x0` in batches of `opts.batch`; returns the final samples and the
    /// snapshots, on the CPU.
    fn run_chains(
        &self,
        x0: &Tensor,
        labels: Option<&[u32]>,
        steps: usize,
        opts: &GenerateOptions,
        rng: &mut ChaCha8Rng,
        what: &str,
    ) -> Result<(Tensor, Vec<(usize, Tensor)>)> {
        let n = x0.dim(0)?;
        let wanted: BTreeSet<usize> = opts
            .snapshots
            .iter()
            .copied()
            .filter(|&s| s < steps)
            .collect();
        let mut finals = Vec::new();
        let mut snaps: Vec<(usize, Vec<Tensor>)> =
            wanted.iter().map(|&s| (s, Vec::new())).collect();
        let batches = n.div_ceil(opts.batch.max(1));
        let progress = Progress::new(
            &format!("generate {what}"),
            (batches * steps) as u64,
            "steps",
            ProgressMode::shown(opts.progress),
        );
        let mut start = 0;
        while start < n {
            let len = opts.batch.min(n - start);
            let mut x = x0.narrow(0, start, len)?.detach();
            let y = match labels {
                Some(l) => Some(Tensor::from_slice(
                    &l[start..start + len],
                    len,
                    self.device,
                )?),
                None => None,
            };
            for step in 0..=steps {
                if let Some(slot) = snaps.iter_mut().find(|(s, _)| *s == step) {
                    slot.1.push(x.to_device(&Device::Cpu)?);
                }
                if step == steps {
                    break;
                }
                let mode = opts.bn.mode_at(step);
                let (g, score) = match &y {
                    None => input_gradient(self.model, &x, mode)?,
                    Some(y) => {
                        jem_sampler::sgld::conditional_gradient_and_logit(self.model, &x, y, mode)?
                    }
                };
                x = sgld_step(&x, &g, opts, rng)?;
                if opts.progress && ((step + 1) % opts.progress_every == 0 || step + 1 == steps) {
                    // reading the score back waits for the device: only every few steps
                    let mean = score.to_dtype(DType::F64)?.mean_all()?.to_scalar::<f64>()?;
                    let name = if y.is_some() { "f(x)[y]" } else { "log p(x)" };
                    let bn = if mode == BnMode::Eval {
                        "running-stats"
                    } else {
                        "batch-stats"
                    };
                    progress.set_message(format!(
                        "chains {start}..{} of {n}, mean {name} {mean:.4} at step {} ({bn} BN)",
                        start + len,
                        step + 1,
                    ));
                }
                progress.inc(1);
            }
            finals.push(x.to_device(&Device::Cpu)?);
            start += len;
        }
        progress.finish();
        let cat = |v: &[Tensor]| -> Result<Tensor> {
            if v.is_empty() {
                let [c, h, w] = self.shape;
                Ok(Tensor::zeros((0, c, h, w), DType::F32, &Device::Cpu)?)
            } else {
                Ok(Tensor::cat(v, 0)?)
            }
        };
        let snapshots = snaps
            .iter()
            .map(|(s, v)| Ok((*s, cat(v)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok((cat(&finals)?, snapshots))
    }

    /// Mean `LSE(f(x))`, and with labels the mean `f(x)[y]` and the fraction classified as
    /// `y`, in eval-mode BatchNorm, over `x` (`[N, C, H, W]`, any device) in batches.
    pub fn summarize(
        &self,
        x: &Tensor,
        labels: Option<&[u32]>,
        batch: usize,
    ) -> Result<(f64, Option<f64>, Option<f64>)> {
        let n = x.dim(0)?;
        let (mut lse_sum, mut fy_sum, mut hits) = (0f64, 0f64, 0usize);
        let mut start = 0;
        while start < n {
            let len = batch.max(1).min(n - start);
            let xb = x.narrow(0, start, len)?.to_device(self.device)?;
            let logits = self.model.logits(&xb, BnMode::Eval)?.detach();
            lse_sum += log_density(&logits)?
                .to_dtype(DType::F64)?
                .sum_all()?
                .to_scalar::<f64>()?;
            if let Some(l) = labels {
                let yl = &l[start..start + len];
                let y = Tensor::from_slice(yl, len, self.device)?;
                fy_sum += class_logit(&logits, &y)?
                    .to_dtype(DType::F64)?
                    .sum_all()?
                    .to_scalar::<f64>()?;
                let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
                hits += pred.iter().zip(yl).filter(|(p, y)| p == y).count();
            }
            start += len;
        }
        let m = n.max(1) as f64;
        Ok(match labels {
            Some(_) => (lse_sum / m, Some(fy_sum / m), Some(hits as f64 / m)),
            None => (lse_sum / m, None, None),
        })
    }
}

/// `x <- clamp(x + step * g + noise * eps, -1, 1)`: the reference's eval-time rule (2.3,
/// `eval_sadajem.py: sample_q`), no gradient clip.
fn sgld_step(
    x: &Tensor,
    g: &Tensor,
    opts: &GenerateOptions,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    let mut moved = (x + (g * opts.step_size)?)?;
    if opts.noise > 0.0 {
        let sigma = opts.noise as f32;
        let eps: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                let e: f32 = StandardNormal.sample(rng);
                e * sigma
            })
            .collect();
        moved = (moved + Tensor::from_vec(eps, x.shape(), x.device())?)?;
    }
    Ok(moved.clamp(-1f32, 1f32)?.detach())
}
