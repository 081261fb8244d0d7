//! Options and results of the generation task.

use jem_models::BnMode;
use serde::{Deserialize, Serialize};

use crate::{EvalError, Result};

/// Steps of one `sample_q` call in the reference's generation script (`--n_steps 10`);
/// [`SamplerBn::Reference`] uses running statistics for this many steps.
pub const REFERENCE_CALL_STEPS: usize = 10;

/// BatchNorm while sampling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerBn {
    /// As the reference's `uncond_samples` (2.3): `main` calls `f.eval()` but `sample_q`
    /// ends with `f.train()`, so the first call ([`REFERENCE_CALL_STEPS`] steps) uses the
    /// running statistics and every later step the batch's statistics. The running
    /// statistics are never updated here (in the reference they are, but in train mode
    /// they do not affect the samples).
    #[default]
    Reference,
    /// Running statistics throughout (`f.eval()`): chains are independent of each other
    /// and of the batch size.
    Eval,
    /// The batch's statistics throughout (train mode, running statistics left alone), as
    /// the JEM++ maintainer recommends for generation.
    Batch,
}

impl SamplerBn {
    /// The BatchNorm mode of step `step` (0-based).
    pub fn mode_at(self, step: usize) -> BnMode {
        match self {
            SamplerBn::Reference if step < REFERENCE_CALL_STEPS => BnMode::Eval,
            SamplerBn::Reference | SamplerBn::Batch => BnMode::TrainFrozen,
            SamplerBn::Eval => BnMode::Eval,
        }
    }
}

/// Where chains start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChainInit {
    /// The per-class Gaussians when the run has them, else uniform noise.
    #[default]
    Auto,
    /// Per-class Gaussians of the training data, clamped to [-1, 1] (the reference's
    /// `init_inform`); unconditional chains pick a class uniformly, conditional chains start
    /// from their own class. An error when the run has no class statistics.
    Informative,
    /// Uniform noise in [-1, 1].
    Uniform,
}

/// Settings of [`generate`](super::generate); the defaults are the reference's generation script.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateOptions {
    /// Unconditional chains (reference: 100); 0 skips them.
    pub n_chains: usize,
    /// Steps of each unconditional chain (reference: 100 calls x 10 steps = 1,000).
    pub n_steps: usize,
    /// Conditional chains per class; 0 skips them.
    pub per_class: usize,
    /// Steps of each conditional chain.
    pub cond_steps: usize,
    /// Step size of `x <- clamp(x + step * grad + noise * eps, -1, 1)` (reference: 1).
    pub step_size: f64,
    /// Standard deviation of the added noise (reference: 0).
    pub noise: f64,
    /// BatchNorm while sampling.
    pub bn: SamplerBn,
    /// Where the chains start.
    pub init: ChainInit,
    /// Chains per forward pass (reference: 100, all chains in one batch). With batch
    /// statistics the batch composition changes the samples.
    pub batch: usize,
    /// Steps after which the unconditional and conditional chains are also drawn
    /// (`chains-step<k>.png`, `conditional-step<k>.png`; 0 = the initial draws); steps not
    /// below the chain length are ignored (the final grid is always written).
    pub snapshots: Vec<usize>,
    /// At most this many images in the buffer and unconditional grids.
    pub grid_images: usize,
    /// Images per row of the buffer and unconditional grids.
    pub per_row: usize,
    /// Seed of the initial draws and the noise.
    pub seed: u64,
    /// Print progress on stderr.
    pub progress: bool,
    /// Steps between progress lines.
    pub progress_every: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            n_chains: 100,
            n_steps: 1000,
            per_class: 10,
            cond_steps: 1000,
            step_size: 1.0,
            noise: 0.0,
            bn: SamplerBn::Reference,
            init: ChainInit::Auto,
            batch: 100,
            snapshots: vec![0, 10, 100],
            grid_images: 100,
            per_row: 10,
            seed: 1,
            progress: false,
            progress_every: 100,
        }
    }
}

impl GenerateOptions {
    /// Checks the settings; errors name the option.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EvalError::Invalid(format!("generate: {m}")));
        if !(self.step_size.is_finite() && self.step_size >= 0.0) {
            return bad(format!("step_size must be >= 0, got {}", self.step_size));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return bad(format!("noise must be >= 0, got {}", self.noise));
        }
        for (name, v) in [
            ("batch", self.batch),
            ("grid_images", self.grid_images),
            ("per_row", self.per_row),
            ("progress_every", self.progress_every),
        ] {
            if v == 0 {
                return bad(format!("{name} must be > 0"));
            }
        }
        Ok(())
    }
}

/// The replay-buffer grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BufferGrid {
    /// The PNG, relative to the output folder.
    pub file: String,
    /// Images drawn (the first ones of the buffer).
    pub shown: usize,
    /// Images in the buffer.
    pub buffer_size: usize,
}

/// The chains at one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TracePoint {
    /// Steps done (0 = the initial draws).
    pub step: usize,
    /// Mean `LSE(f(x))` (unnormalized log p(x)) over the chains, eval-mode BatchNorm.
    pub mean_log_px: f64,
    /// Conditional chains: mean `f(x)[y]` of their own class, eval-mode BatchNorm.
    pub mean_target_logit: Option<f64>,
    /// Conditional chains: fraction classified as their own class, eval-mode BatchNorm.
    pub target_accuracy: Option<f64>,
    /// Its grid, relative to the output folder.
    pub grid: String,
}

/// One set of chains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainsReport {
    /// Chains run.
    pub chains: usize,
    /// Steps of each.
    pub steps: usize,
    /// Where they started (`informative` or `uniform`).
    pub init: ChainInit,
    /// The grid of the final samples.
    pub grid: String,
    /// The final samples, `[N, C, H, W]` f32 pixels in [0, 1].
    pub images_npy: String,
    /// Conditional chains: their classes, `[N]` int64.
    pub labels_npy: Option<String>,
    /// The snapshots, then the final samples.
    pub trace: Vec<TracePoint>,
    /// Sampling time.
    pub seconds: f64,
}

/// `jem eval generate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerateResult {
    /// The checkpoint.
    pub checkpoint: String,
    /// Its training iterations.
    pub iteration: u64,
    /// The replay-buffer grid, when the checkpoint has a buffer.
    pub buffer: Option<BufferGrid>,
    /// The unconditional chains, unless skipped.
    pub unconditional: Option<ChainsReport>,
    /// The class-conditional chains, unless skipped.
    pub conditional: Option<ChainsReport>,
    /// Parts skipped and why.
    pub notes: Vec<String>,
    /// The options used.
    pub options: GenerateOptions,
}
