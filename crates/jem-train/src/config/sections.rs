//! The sections of a [`TrainConfig`](super::TrainConfig) and their defaults.

use jem_models::{Activation, BnMode, Norm};
use jem_optim::Decay;
use jem_sampler::{InitKind, SgldRule};
use serde::{Deserialize, Serialize};

/// Data settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Training data set (`jem data list`).
    pub dataset: String,
    /// Zero-pad images (centred, black) to this square size, e.g. 32 for 28x28 digits.
    pub pad_to: Option<usize>,
    /// Repeat a grayscale channel into three.
    pub gray_to_rgb: bool,
    /// Training images held out for validation (model selection; the paper's models train
    /// on all images: 0).
    pub valid_size: usize,
    /// Seed of the train / validation split (the same for every run seed).
    pub split_seed: u64,
    /// Batch of the p(x) term (x+) and of the SGLD chains.
    pub px_batch_size: usize,
    /// Batch of the classification term; one epoch is one pass of this batch stream.
    pub clf_batch_size: usize,
    /// Augment the p(x) batch too (JEM, JEM++); SADA-JEM does not.
    pub px_augment: bool,
    /// Augment the classification batch.
    pub clf_augment: bool,
    /// Reflect-pad by this many pixels and crop back (the augmentation's random crop).
    pub crop_pad: usize,
    /// Random horizontal flips in the augmentation (default: unless the data are digits).
    pub hflip: Option<bool>,
    /// Gaussian noise added to training images (JEM and JEM++: 0.03).
    pub noise_sigma: f32,
    /// Background threads preparing batches per stream.
    pub workers: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: "cifar10".into(),
            pad_to: None,
            gray_to_rgb: false,
            valid_size: 0,
            split_seed: 1234,
            px_batch_size: 64,
            clf_batch_size: 128,
            px_augment: false,
            clf_augment: true,
            crop_pad: 4,
            hflip: None,
            noise_sigma: 0.0,
            workers: 1,
        }
    }
}

/// The Wide-ResNet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Depth (6n + 4).
    pub depth: usize,
    /// Widen factor.
    pub width: usize,
    /// Normalization.
    pub norm: Norm,
    /// Nonlinearity.
    pub activation: Activation,
    /// Dropout between the convolutions of a block.
    pub dropout: f64,
    /// BatchNorm momentum (PyTorch convention; the reference: 0.9).
    pub bn_momentum: f64,
    /// BatchNorm epsilon.
    pub bn_eps: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            depth: 28,
            width: 10,
            norm: Norm::Batch,
            activation: Activation::LeakyRelu { slope: 0.2 },
            dropout: 0.0,
            bn_momentum: 0.9,
            bn_eps: 1e-5,
        }
    }
}

/// SGLD and the replay buffer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Steps per iteration (K).
    pub steps: usize,
    /// Update rule.
    pub rule: SgldRule,
    /// BatchNorm mode while sampling (the reference: train, updating running statistics).
    pub bn_mode: BnMode,
    /// Persistent chains.
    pub buffer_size: usize,
    /// Probability of restarting a drawn chain.
    pub reinit_freq: f64,
    /// Initial distribution: per-class Gaussians of the data (informative) or uniform.
    pub init: InitKind,
    /// Added to the diagonal of each class covariance.
    pub init_jitter: f64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            steps: 5,
            rule: SgldRule::REFERENCE,
            bn_mode: BnMode::Train,
            buffer_size: 10_000,
            reinit_freq: 0.05,
            init: InitKind::Informative,
            init_jitter: 1e-4,
        }
    }
}

/// How the second SAM pass computes the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecondPass {
    /// The same objective as the first pass (SAM as the paper describes it).
    Full,
    /// The released code: `-(fp - fq) + CE`, without the `px` weight and the L2 term.
    Reference,
}

/// How the L2 penalty on the energies is taken over a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum L2Form {
    /// IGEBM's (Du & Mordatch 2019, `l2_coeff * (mean(E(x+)^2) + mean(E(x-)^2))`): every
    /// sample's energy is pulled towards 0. The paper's Table 5 row "JEM++ w/o DA + L2" names
    /// IGEBM's regularization, so this is the default.
    MeanOfSquares,
    /// The released SADA-JEM code's (`l2_coeff * (fp^2 + fq^2)` with `fp`, `fq` the batch
    /// means of LSE): only the batch's mean energy is pulled towards 0.
    SquareOfMean,
}

/// Terms of the objective `px * [E(x+) - E(x-) + l2 * L2(E(x+), E(x-))] + pyx * CE`, with
/// `L2` as [`L2Form`] says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Weight of the generative term (0: a plain classifier, no sampling).
    pub px: f64,
    /// Weight of the cross-entropy (the reference only gates it on `pyx > 0`).
    pub pyx: f64,
    /// L2 penalty on the energies (IGEBM: 1; the JEM authors suggest ~0.1 against divergence).
    pub l2: f64,
    /// How the L2 penalty averages over the batch.
    pub l2_form: L2Form,
    /// Objective of the second SAM pass.
    pub second_pass: SecondPass,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            px: 1.0,
            pyx: 1.0,
            l2: 0.0,
            l2_form: L2Form::MeanOfSquares,
            second_pass: SecondPass::Full,
        }
    }
}

/// Base optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimKind {
    /// SGD with momentum.
    Sgd,
    /// Adam.
    Adam,
}

/// Sharpness-aware wrapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamKind {
    /// The base optimizer alone.
    None,
    /// SAM.
    Sam,
    /// Adaptive SAM.
    Asam,
}

/// Optimizer settings (PyTorch semantics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Base optimizer.
    pub kind: OptimKind,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// Coupled weight decay (every parameter, as PyTorch).
    pub weight_decay: f64,
    /// Adam betas.
    pub betas: [f64; 2],
    /// Adam epsilon.
    pub eps: f64,
    /// SAM / ASAM around the base optimizer.
    pub sam: SamKind,
    /// Neighbourhood radius (paper: SAM 0.2; code: ASAM 2.0).
    pub rho: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            kind: OptimKind::Sgd,
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            betas: [0.9, 0.999],
            eps: 1e-8,
            sam: SamKind::Sam,
            rho: 0.2,
        }
    }
}

/// Length and learning-rate schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Epochs (passes of the classification stream).
    pub epochs: usize,
    /// Linear warm-up iterations.
    pub warmup_iters: usize,
    /// Decay by epoch after the warm-up.
    pub decay: Decay,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            epochs: 200,
            warmup_iters: 1000,
            decay: Decay::MultiStep {
                milestones: vec![60, 120, 180],
                gamma: 0.2,
            },
        }
    }
}

/// Which accuracy selects the `best` checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectOn {
    /// The validation split (needs `data.valid_size > 0`).
    Valid,
    /// The test set, as the reference code does (reported results are then optimistic).
    Test,
    /// No `best` checkpoint.
    None,
}

/// Cadence of logs, evaluations and checkpoints, and extra stopping rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Stop after this many iterations in total (before the schedule ends).
    pub max_iters: Option<u64>,
    /// Stop after this many minutes of training (evaluation time not counted).
    pub max_minutes: Option<f64>,
    /// Iterations between lines of `train.jsonl`.
    pub log_every: u64,
    /// Iterations between PNG grids of the negatives (0: never).
    pub grid_every: u64,
    /// Iterations between evaluations (0: at the end of each epoch only).
    pub eval_every_iters: u64,
    /// Epochs between kept `epoch-NNNN` checkpoints (0: never).
    pub checkpoint_every_epochs: u64,
    /// Iterations between refreshes of `last` inside an epoch (0: once per epoch).
    pub checkpoint_every_iters: u64,
    /// Model selection.
    pub select_on: SelectOn,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            max_iters: None,
            max_minutes: None,
            log_every: 100,
            grid_every: 1000,
            eval_every_iters: 0,
            checkpoint_every_epochs: 10,
            checkpoint_every_iters: 0,
            select_on: SelectOn::None,
        }
    }
}

/// The evaluation run during training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Out-of-distribution test sets for AUROC (their test split, same geometry).
    pub ood: Vec<String>,
    /// Bins of the ECE (torchmetrics convention).
    pub ece_bins: usize,
    /// Images per evaluation batch.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            ood: Vec::new(),
            ece_bins: 15,
            batch_size: 500,
        }
    }
}

/// A change applied after a divergence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recovery {
    /// Continue with a different random stream (data order, sampler).
    NewSeed,
    /// Multiply the learning rate by `guard.lr_factor`.
    LowerLr,
    /// Add `guard.extra_steps` SGLD steps.
    MoreSteps,
}

/// Divergence detection and recovery. The default keeps the experiment as configured: a
/// divergence rolls back to the last checkpoint and retries with a new random stream and the
/// same hyper-parameters, at most `max_failures` times, then the run stops (the reference
/// stops at the first one; the JEM authors restarted diverged runs with a new seed).
/// `lower-lr` and `more-steps` change the experiment and are opt-in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Largest accepted |loss| (the reference stops above 1e5).
    pub max_abs_loss: f64,
    /// Largest accepted |E(x)| of the positive or negative batch.
    pub max_abs_energy: f64,
    /// Rollbacks allowed before the run stops.
    pub max_failures: usize,
    /// What each rollback changes (default: only the random stream).
    pub recovery: Vec<Recovery>,
    /// Learning-rate factor of `lower-lr`.
    pub lr_factor: f64,
    /// Steps added by `more-steps`.
    pub extra_steps: usize,
    /// Testing aid: make the loss NaN at these iterations (once each).
    pub inject_nan_at: Vec<u64>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_abs_loss: 1e5,
            max_abs_energy: 1e4,
            max_failures: 3,
            recovery: vec![Recovery::NewSeed],
            lr_factor: 0.5,
            extra_steps: 5,
            inject_nan_at: Vec::new(),
        }
    }
}
