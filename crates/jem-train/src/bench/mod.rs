//! Speed and device parity of the training building blocks, behind `jem bench`.
//!
//! [`run_measure`] times one of three measures on any device, with the batch sizes of the
//! paper by default (64 images for p(x) and SGLD, 128 labelled, K = 5, SAM rho 0.2):
//!
//! - [`Measure::ClfStep`]: train-mode forward of the labelled batch, cross-entropy,
//!   backward with respect to the parameters (no optimizer step);
//! - [`Measure::SgldStep`]: one step of the training sampler on the p(x) batch: forward in
//!   the sampler's BatchNorm mode (train, as the reference), gradient of `sum LSE` with
//!   respect to the input only, the reference's clipped update;
//! - [`Measure::SgldStepEval`]: the same step with eval-mode BatchNorm (running statistics),
//!   as `torch_baseline.py`'s `sgld_step` times it, for a like-for-like comparison with that
//!   script's measure (b);
//! - [`Measure::SadajemIter`]: one whole iteration of [`crate::step`]: chains drawn from a
//!   uniform replay buffer (5 % restarts), K SGLD steps, the x+ / x- / labelled passes, SAM
//!   with its frozen-BatchNorm second pass, SGD, the chains written back. Its rate counts
//!   labelled images, as a training run's.
//! - [`Measure::SadajemIterShared`]: the same iteration as `torch_baseline.py` times it (the
//!   labelled batch doubles as x+, eval-mode chains: two batches per SAM pass instead of
//!   three), for a like-for-like comparison with that script's measure (d).
//!
//! Each measure runs `warmup` untimed iterations, then `iters` timed ones, each ended by a
//! device synchronization; the rate is the batch over the median time. [`parity`] compares
//! two devices on the same computations.

mod parity;
mod shared;

pub use parity::{
    Comparison, FLOOR_FACTOR, FLOOR_PERTURBATION, FLOOR_PERTURBATION_TF32, ParityConfig,
    ParityReport, parity,
};

use std::time::Instant;

use candle_core::{Device, Tensor};
use jem_data::rng::{ChaCha8Rng, rng_for};
use jem_models::{BnMode, WideResNet, WrnConfig, jem};
use jem_optim::{Sam, Sgd, SgdConfig};
use jem_sampler::{InitKind, ReplayBuffer, Sgld};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::{L2Form, LossConfig, SecondPass};
use crate::step::{Optimizers, StepBatch, finish, first_pass};
use crate::{Result, TrainError};

/// What to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Classifier step on the labelled batch.
    ClfStep,
    /// One SGLD step on the p(x) batch.
    SgldStep,
    /// One SGLD step with eval-mode BatchNorm (the script's measure (b)).
    SgldStepEval,
    /// One full SADA-JEM iteration.
    SadajemIter,
    /// The iteration of `torch_baseline.py` (labelled batch shared as x+).
    SadajemIterShared,
}

impl Measure {
    /// The measures, in the order `all` runs them.
    pub const ALL: [Measure; 5] = [
        Measure::ClfStep,
        Measure::SgldStep,
        Measure::SgldStepEval,
        Measure::SadajemIter,
        Measure::SadajemIterShared,
    ];

    /// The measure's name (`clf_step`, `sgld_step`, `sadajem_iter`), as the PyTorch scripts.
    pub fn name(self) -> &'static str {
        match self {
            Measure::ClfStep => "clf_step",
            Measure::SgldStep => "sgld_step",
            Measure::SgldStepEval => "sgld_step_eval",
            Measure::SadajemIter => "sadajem_iter",
            Measure::SadajemIterShared => "sadajem_iter_shared",
        }
    }

    /// Parses a name of [`Measure::name`].
    pub fn parse(s: &str) -> Option<Measure> {
        Measure::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// Sizes and settings of a measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchConfig {
    /// WRN depth (28 in the paper).
    pub depth: usize,
    /// WRN widen factor (10 in the paper).
    pub width: usize,
    /// Classes (10).
    pub classes: usize,
    /// Batch of the p(x) term and of the SGLD chains (64 in the paper).
    pub batch_px: usize,
    /// Labelled batch (128 in the paper).
    pub batch_lab: usize,
    /// SGLD steps per iteration, K (5).
    pub sgld_steps: usize,
    /// SAM radius (0.2).
    pub rho: f64,
    /// Chains in the replay buffer (10,000).
    pub buffer_size: usize,
    /// Timed iterations (the median is reported).
    pub iters: usize,
    /// Untimed iterations first.
    pub warmup: usize,
    /// Seed of the weights, inputs and draws.
    pub seed: u64,
}

impl Default for BenchConfig {
    /// The paper's WRN-28-10 and batch sizes, 5 timed iterations after 2 warm-ups.
    fn default() -> Self {
        Self {
            depth: 28,
            width: 10,
            classes: 10,
            batch_px: 64,
            batch_lab: 128,
            sgld_steps: 5,
            rho: 0.2,
            buffer_size: 10_000,
            iters: 5,
            warmup: 2,
            seed: 1,
        }
    }
}

impl BenchConfig {
    /// The model's configuration (the reference's WRN).
    pub fn model(&self) -> WrnConfig {
        WrnConfig::reference(self.depth, self.width, self.classes)
    }

    fn validate(&self) -> Result<()> {
        if self.batch_px == 0 || self.batch_lab == 0 || self.iters == 0 {
            return Err(TrainError::Config(
                "bench: --batch-px, --batch-lab and --iters must be at least 1".into(),
            ));
        }
        if self.buffer_size == 0 {
            return Err(TrainError::Config(
                "bench: --buffer-size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The timing of one measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// The measure's name.
    pub measure: String,
    /// Images per timed iteration (labelled images for a full iteration).
    pub images_per_iter: usize,
    /// Images per second at the median time.
    pub images_per_s: f64,
    /// Median time of an iteration, milliseconds.
    pub median_ms: f64,
    /// Fastest iteration, milliseconds.
    pub min_ms: f64,
    /// Slowest iteration, milliseconds.
    pub max_ms: f64,
    /// Every timed iteration, milliseconds.
    pub times_ms: Vec<f64>,
    /// Median milliseconds of an iteration's phases, where the measure splits it
    /// (`sadajem_iter_shared`: `sgld` and `sam`, as `torch_baseline.py` prints them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases_ms: Vec<(String, f64)>,
}

/// Images uniform in [-1, 1], drawn on the CPU from `rng` and moved to `device`.
pub(crate) fn uniform_images(n: usize, rng: &mut ChaCha8Rng, device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    Ok(Tensor::from_vec(v, (n, 3, 32, 32), &candle_core::Device::Cpu)?.to_device(device)?)
}

/// Labels `i mod classes`, u32.
pub(crate) fn labels(n: usize, classes: usize, device: &Device) -> Result<Tensor> {
    let y: Vec<u32> = (0..n).map(|i| (i % classes) as u32).collect();
    Ok(Tensor::from_vec(y, n, device)?)
}

/// The reference's SGD (lr 0.1, momentum 0.9, weight decay 5e-4) wrapped in SAM.
pub(crate) fn sam_sgd(rho: f64) -> Result<Optimizers> {
    Ok(Optimizers {
        base: Box::new(Sgd::new(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            ..SgdConfig::default()
        })),
        sam: Some(Sam::new(rho, false)?),
    })
}

/// Algorithm 1's objective: p(x) and p(y|x) with weight 1, the same loss in both SAM passes.
pub(crate) const LOSS: LossConfig = LossConfig {
    px: 1.0,
    pyx: 1.0,
    l2: 0.0,
    l2_form: L2Form::MeanOfSquares,
    second_pass: SecondPass::Full,
};

/// Times `f` (`warmup` untimed calls, then `iters` timed ones, each followed by a device
/// synchronization); milliseconds of the timed calls.
fn time_calls(
    cfg: &BenchConfig,
    device: &Device,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    for _ in 0..cfg.warmup {
        f()?;
        device.synchronize()?;
    }
    let mut times = Vec::with_capacity(cfg.iters);
    for _ in 0..cfg.iters {
        let t0 = Instant::now();
        f()?;
        device.synchronize()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(times)
}

/// The median of non-empty `v`.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Times `measure` on `device` (see the module documentation).
pub fn run_measure(cfg: &BenchConfig, measure: Measure, device: &Device) -> Result<Timing> {
    cfg.validate()?;
    let model = WideResNet::new(cfg.model(), cfg.seed, device)?;
    let mut rng = rng_for(&[cfg.seed, 0xbe9c]);
    let mut phases: Vec<(String, f64)> = Vec::new();
    let (times, images) = match measure {
        Measure::ClfStep => {
            let x = uniform_images(cfg.batch_lab, &mut rng, device)?;
            let y = labels(cfg.batch_lab, cfg.classes, device)?;
            let times = time_calls(cfg, device, || {
                let logits = model.logits(&x, BnMode::Train)?;
                let grads = jem::cross_entropy(&logits, &y)?.backward()?;
                drop(grads);
                Ok(())
            })?;
            (times, cfg.batch_lab)
        }
        Measure::SgldStep | Measure::SgldStepEval => {
            let sgld = Sgld {
                bn_mode: if measure == Measure::SgldStep {
                    BnMode::Train
                } else {
                    BnMode::Eval
                },
                ..Sgld::reference(1)
            };
            let mut x = uniform_images(cfg.batch_px, &mut rng, device)?;
            let times = time_calls(cfg, device, || {
                x = sgld.run(&model, &x, None, &mut rng)?;
                Ok(())
            })?;
            (times, cfg.batch_px)
        }
        Measure::SadajemIter => {
            let mut buffer = uniform_buffer(cfg, &mut rng, device)?;
            let mut opt = sam_sgd(cfg.rho)?;
            let sgld = Sgld::reference(cfg.sgld_steps);
            let x_pos = uniform_images(cfg.batch_px, &mut rng, device)?;
            let x_lab = uniform_images(cfg.batch_lab, &mut rng, device)?;
            let y_lab = labels(cfg.batch_lab, cfg.classes, device)?;
            let times = time_calls(cfg, device, || {
                let (slots, start) = buffer.sample(cfg.batch_px, None, &mut rng)?;
                let batch = StepBatch {
                    x_pos: Some(x_pos.clone()),
                    x_start: Some(start),
                    x_lab: x_lab.clone(),
                    y_lab: y_lab.clone(),
                };
                let first = first_pass(&model, &batch, Some(&sgld), &mut rng, &LOSS)?;
                finish(&model, &first, &batch, &LOSS, &mut opt)?;
                if let Some(x_neg) = &first.x_neg {
                    buffer.store(&slots, x_neg)?;
                }
                Ok(())
            })?;
            (times, cfg.batch_lab)
        }
        Measure::SadajemIterShared => {
            let mut buffer = uniform_buffer(cfg, &mut rng, device)?;
            let mut opt = sam_sgd(cfg.rho)?;
            let x_lab = uniform_images(cfg.batch_lab, &mut rng, device)?;
            let y_lab = labels(cfg.batch_lab, cfg.classes, device)?;
            let mut split: Vec<[f64; 2]> = Vec::new();
            let times = time_calls(cfg, device, || {
                split.push(shared::iteration(
                    &model,
                    &mut buffer,
                    (&x_lab, &y_lab),
                    cfg.sgld_steps,
                    &mut opt,
                    &mut rng,
                )?);
                Ok(())
            })?;
            // the timed calls are the last `iters`
            let timed = &split[split.len() - times.len()..];
            let phase = |i: usize| median(&timed.iter().map(|s| s[i]).collect::<Vec<_>>());
            phases = vec![("sgld".into(), phase(0)), ("sam".into(), phase(1))];
            (times, cfg.batch_lab)
        }
    };
    let med = median(&times);
    Ok(Timing {
        measure: measure.name().to_string(),
        images_per_iter: images,
        images_per_s: images as f64 / (med / 1e3),
        median_ms: med,
        min_ms: times.iter().copied().fold(f64::INFINITY, f64::min),
        max_ms: times.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        times_ms: times,
        phases_ms: phases,
    })
}

/// The benchmark's replay buffer: `cfg.buffer_size` uniform 3x32x32 chains, 5 % restarts.
pub(crate) fn uniform_buffer(
    cfg: &BenchConfig,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<ReplayBuffer> {
    Ok(ReplayBuffer::new(
        cfg.buffer_size,
        [3, 32, 32],
        InitKind::Uniform,
        None,
        0.05,
        rng,
        device,
    )?)
}

/// Hours of a training run of `epochs` epochs over `train_images` labelled images, in
/// iterations of `batch_lab` labelled images (the last partial batch counted as a whole one:
/// 50,000 / 128 is 391 iterations per epoch) taking `iter_ms` each; evaluations not counted.
pub fn hours_per_run(iter_ms: f64, train_images: usize, batch_lab: usize, epochs: usize) -> f64 {
    let iters = train_images.div_ceil(batch_lab.max(1)) * epochs;
    iters as f64 * iter_ms / 1e3 / 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lengths() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn measure_names_round_trip() {
        for m in Measure::ALL {
            assert_eq!(Measure::parse(m.name()), Some(m));
        }
        assert_eq!(Measure::parse("nope"), None);
    }

    #[test]
    fn a_cifar_run_has_391_iterations_per_epoch() {
        // 391 * 200 iterations of 1 s
        assert!((hours_per_run(1000.0, 50_000, 128, 200) - 78_200.0 / 3600.0).abs() < 1e-9);
    }

    #[test]
    fn a_tiny_iteration_is_timed() {
        let cfg = BenchConfig {
            depth: 10,
            width: 1,
            batch_px: 2,
            batch_lab: 4,
            sgld_steps: 1,
            buffer_size: 8,
            iters: 1,
            warmup: 0,
            ..BenchConfig::default()
        };
        for m in Measure::ALL {
            let t = run_measure(&cfg, m, &Device::Cpu).expect("measure");
            assert_eq!(t.times_ms.len(), 1);
            assert!(t.images_per_s > 0.0 && t.images_per_s.is_finite());
        }
    }
}
