//! Algorithm 1 of the paper, one whole iteration, for any classifier: draw the chains'
//! starting points from the replay buffer (reinitialising some), run the passes of
//! [`crate::step`], let the caller check the loss, update the weights, write the negatives
//! back to their slots.
//!
//! [`Trainer`](crate::Trainer) runs this on a [`WideResNet`] with its data streams, schedule
//! and logs; a model of one's own only needs [`TrainableClassifier`].
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use jem_models::{WideResNet, WrnConfig};
//! use jem_data::rng::rng_for;
//! use jem_optim::{Sgd, SgdConfig};
//! use jem_sampler::{InitKind, ReplayBuffer, Sgld};
//! use jem_train::algorithm::{BufferChains, IterationData, iteration};
//! use jem_train::config::LossConfig;
//! use jem_train::step::Optimizers;
//!
//! let dev = Device::Cpu;
//! let config = WrnConfig { in_channels: 1, ..WrnConfig::reference(10, 1, 10) };
//! let model = WideResNet::new(config, 1, &dev)?;
//! let mut opt = Optimizers { base: Box::new(Sgd::new(SgdConfig::default())), sam: None };
//! let mut rng = rng_for(&[1, 0]);
//! let mut buffer = ReplayBuffer::new(64, [1, 32, 32], InitKind::Uniform, None, 0.05, &mut rng, &dev)?;
//! let data = IterationData {
//!     x_pos: Some(Tensor::rand(-1f32, 1f32, (4, 1, 32, 32), &dev)?),
//!     x_lab: Tensor::rand(-1f32, 1f32, (4, 1, 32, 32), &dev)?,
//!     y_lab: Tensor::new(&[0u32, 1, 2, 3], &dev)?,
//! };
//! let chains = BufferChains {
//!     buffer: &mut buffer,
//!     gaussians: None,
//!     sampler: &Sgld::reference(2),
//!     batch_size: 4,
//! };
//! let out = iteration(&model, data, Some(chains), &mut rng, &LossConfig::default(), &mut opt,
//!     |_stats| None)?;
//! assert!(out.diverged.is_none() && out.stats.loss.is_finite());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use candle_core::{Tensor, Var};
use jem_data::ClassGaussians;
use jem_data::rng::ChaCha8Rng;
use jem_models::WideResNet;
use jem_models::jem::Classifier;
use jem_sampler::{ReplayBuffer, Sgld};

use crate::Result;
use crate::config::LossConfig;
use crate::step::{Optimizers, StepBatch, StepStats, finish, first_pass};

/// What Algorithm 1 needs of a model: logits under each BatchNorm mode (the sampler's
/// [`Classifier`]) and its trainable parameters.
pub trait TrainableClassifier: Classifier {
    /// The trainable parameters by name, always in the same order (optimizer state and
    /// checkpoints follow it).
    fn named_params(&self) -> Vec<(&str, &Var)>;
}

impl TrainableClassifier for WideResNet {
    fn named_params(&self) -> Vec<(&str, &Var)> {
        self.store.params().collect()
    }
}

/// The data batches of one iteration.
#[derive(Clone, Debug)]
pub struct IterationData {
    /// The positive batch `x+` (not augmented in SADA-JEM); `None` without a generative term.
    pub x_pos: Option<Tensor>,
    /// The labelled batch (augmented).
    pub x_lab: Tensor,
    /// Its labels (u32).
    pub y_lab: Tensor,
}

/// Where the negatives come from: the replay buffer, the class Gaussians that reinitialise
/// chains (`None`: the buffer's own initialisation), and the sampler.
pub struct BufferChains<'a> {
    /// The persistent chains.
    pub buffer: &'a mut ReplayBuffer,
    /// The per-class Gaussians of the informative initialisation.
    pub gaussians: Option<&'a ClassGaussians>,
    /// The SGLD sampler (K steps).
    pub sampler: &'a Sgld,
    /// Chains per iteration.
    pub batch_size: usize,
}

/// What an iteration did.
#[derive(Debug)]
pub struct IterationOutcome {
    /// Scalars of the first pass (as the check saw them).
    pub stats: StepStats,
    /// The check's reason when it refused the step: nothing was updated and nothing written
    /// back then.
    pub diverged: Option<String>,
    /// The negatives (detached), also written back to the buffer after an accepted step.
    pub x_neg: Option<Tensor>,
}

/// One iteration of Algorithm 1. `rng` draws the buffer slots and reinitialisations, then
/// the SGLD noise, in that order (a resumed run repeats them bit for bit). `check` sees the
/// first pass's scalars before any update and may refuse the step with a reason (the
/// divergence guard); it may also alter the scalars (fault injection in tests).
pub fn iteration<M: TrainableClassifier + ?Sized>(
    model: &M,
    data: IterationData,
    chains: Option<BufferChains<'_>>,
    rng: &mut ChaCha8Rng,
    loss: &LossConfig,
    opt: &mut Optimizers,
    check: impl FnOnce(&mut StepStats) -> Option<String>,
) -> Result<IterationOutcome> {
    let (start, chains) = match chains {
        Some(c) if data.x_pos.is_some() => {
            let (idx, x0) = c.buffer.sample(c.batch_size, c.gaussians, rng)?;
            (Some((idx, x0)), Some(c))
        }
        _ => (None, None),
    };
    let batch = StepBatch {
        x_pos: data.x_pos,
        x_start: start.as_ref().map(|s| s.1.clone()),
        x_lab: data.x_lab,
        y_lab: data.y_lab,
    };
    let sampler = chains.as_ref().map(|c| c.sampler);
    let first = first_pass(model, &batch, sampler, rng, loss)?;
    let mut stats = first.stats;
    if let Some(reason) = check(&mut stats) {
        return Ok(IterationOutcome {
            stats,
            diverged: Some(reason),
            x_neg: None,
        });
    }
    finish(model, &first, &batch, loss, opt)?;
    if let (Some(c), Some((idx, _)), Some(x_neg)) = (chains, &start, &first.x_neg) {
        c.buffer.store(idx, x_neg)?;
    }
    Ok(IterationOutcome {
        stats,
        diverged: None,
        x_neg: first.x_neg,
    })
}
