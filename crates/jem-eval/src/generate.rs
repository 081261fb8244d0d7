//! Generation (reference 6.3): a grid of the checkpoint's replay buffer, fresh long-run
//! unconditional chains as the reference's `eval_sadajem.py --eval uncond_samples`
//! (`scripts/eval_sadajem.sh`: 100 chains from the informative initialization, 1,000
//! unclipped steps of size 1, no noise, no reinitialization; the eval-time sampler of 2.3),
//! and class-conditional chains ascending `f(x)[y]` (log p(x|y) up to a constant), one grid
//! row per class.
//!
//! The samples are also saved as `.npy` (`[N, C, H, W]`, f32 pixels in [0, 1]) for
//! `jem metric fid --fake-images` / `jem metric is --images`. Everything is deterministic
//! given [`GenerateOptions::seed`]: initial draws and noise come from ChaCha8 generators,
//! never from candle's.
//!
//! The core runs on any [`Classifier`] through [`Sampler`]; [`generate`] is the thin wrapper
//! for an [`EvalSession`].

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor, Var};
use jem_data::ClassGaussians;
use jem_data::rng::ChaCha8Rng;
use jem_metrics::npy::write_npy;
use jem_models::BnMode;
use jem_models::jem::{Classifier, class_logit, input_gradient, log_density};
use jem_plot::save_grid;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::output::{plot_err, write_json};
use crate::{EvalError, EvalSession, Result};

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

/// Settings of [`generate`]; the defaults are the reference's generation script.
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
                informative(g, &classes, &mut rng, self.device)?
            }
            _ => uniform(n, self.shape, &mut rng, self.device)?,
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
                informative(g, &labels, &mut rng, self.device)?
            }
            _ => uniform(labels.len(), self.shape, &mut rng, self.device)?,
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
            let t0 = Instant::now();
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
                    Some(y) => conditional_gradient(self.model, &x, y, mode)?,
                };
                x = sgld_step(&x, &g, opts, rng)?;
                if opts.progress && ((step + 1) % opts.progress_every == 0 || step + 1 == steps) {
                    let mean = score.to_dtype(DType::F64)?.mean_all()?.to_scalar::<f64>()?;
                    let name = if y.is_some() { "f(x)[y]" } else { "log p(x)" };
                    eprintln!(
                        "generate {what}: chains {}..{} of {n}, step {}/{steps} done, mean {name} \
                         {mean:.4} before it ({} BN), {:.1}s",
                        start,
                        start + len,
                        step + 1,
                        if mode == BnMode::Eval {
                            "running-stats"
                        } else {
                            "batch-stats"
                        },
                        t0.elapsed().as_secs_f64()
                    );
                }
            }
            finals.push(x.to_device(&Device::Cpu)?);
            start += len;
        }
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

/// The gradient of `sum_i f(x_i)[y_i]` with respect to `x`, and `f(x)[y]` (`[N]`); the
/// same as `jem_sampler::sgld::conditional_gradient`.
pub fn conditional_gradient<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    mode: BnMode,
) -> Result<(Tensor, Tensor)> {
    let xv = Var::from_tensor(&x.detach())?;
    let fy = class_logit(&model.logits_input_only(xv.as_tensor(), mode)?, y)?;
    let grads = fy.sum_all()?.backward()?;
    let g = grads
        .get(xv.as_tensor())
        .cloned()
        .ok_or_else(|| EvalError::Invalid("no gradient reached the input".into()))?;
    Ok((g, fy.detach()))
}

/// `n` uniform samples of `shape` in [-1, 1] (`jem_sampler::init::uniform`).
pub fn uniform(
    n: usize,
    shape: [usize; 3],
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor> {
    Ok(jem_sampler::init::uniform(n, shape, rng, device)?)
}

/// One sample of class `classes[i]` per `i` from the per-class Gaussians, `mu_k + L_k eps`,
/// clamped to [-1, 1] (`jem_sampler::init::informative`).
pub fn informative(
    gaussians: &ClassGaussians,
    classes: &[u32],
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<Tensor> {
    Ok(jem_sampler::init::informative(
        gaussians, classes, rng, device,
    )?)
}

/// Writes a grid of the first `max_images` images of the replay buffer (model space,
/// `[N, C, H, W]`) to `path`; returns how many were drawn. An error that says so when there
/// is no buffer.
pub fn buffer_grid(
    buffer: Option<&Tensor>,
    max_images: usize,
    per_row: usize,
    path: &Path,
) -> Result<usize> {
    let b = buffer.ok_or_else(|| {
        EvalError::Invalid(
            "the checkpoint has no replay buffer (trained without the generative term, or saved \
             without it): nothing to draw"
                .into(),
        )
    })?;
    let dims = b.dims();
    if dims.len() != 4 || dims[0] == 0 || !(dims[1] == 1 || dims[1] == 3) {
        return Err(EvalError::Invalid(format!(
            "the checkpoint's replay buffer has shape {dims:?}, expected [N > 0, 1 or 3, H, W]"
        )));
    }
    let shown = dims[0].min(max_images.max(1));
    save_grid(path, &b.narrow(0, 0, shown)?, per_row.max(1)).map_err(plot_err)?;
    Ok(shown)
}

/// Writes `x` (model space) as `[N, C, H, W]` f32 pixels `(x + 1) / 2` clamped to [0, 1].
pub fn write_pixels_npy(path: &Path, x: &Tensor) -> Result<()> {
    let v: Vec<f32> = x
        .to_dtype(DType::F32)?
        .affine(0.5, 0.5)?
        .clamp(0f32, 1f32)?
        .flatten_all()?
        .to_vec1()?;
    Ok(write_npy(path, x.dims(), &v)?)
}

/// Grids, `.npy` files and the trace of one set of chains.
fn report_chains<M: Classifier + ?Sized>(
    sampler: &Sampler<'_, M>,
    chains: &Chains,
    steps: usize,
    prefix: &str,
    opts: &GenerateOptions,
    seconds: f64,
    out: &Path,
) -> Result<ChainsReport> {
    let n = chains.samples.dim(0)?;
    // conditional: all chains, one row per class; unconditional: the first grid_images
    let (shown, per_row) = match &chains.labels {
        Some(_) => (n, opts.per_class.max(1)),
        None => (n.min(opts.grid_images), opts.per_row),
    };
    let draw = |x: &Tensor, file: &str| -> Result<()> {
        save_grid(&out.join(file), &x.narrow(0, 0, shown)?, per_row).map_err(plot_err)
    };
    let labels = chains.labels.as_deref();
    let mut trace = Vec::new();
    let steps_and_samples = chains
        .snapshots
        .iter()
        .map(|(s, x)| (*s, x, format!("{prefix}-step{s}.png")))
        .chain(std::iter::once((
            steps,
            &chains.samples,
            format!("{prefix}.png"),
        )));
    for (step, x, grid) in steps_and_samples {
        draw(x, &grid)?;
        let (mean_log_px, mean_target_logit, target_accuracy) =
            sampler.summarize(x, labels, opts.batch)?;
        trace.push(TracePoint {
            step,
            mean_log_px,
            mean_target_logit,
            target_accuracy,
            grid,
        });
    }
    let images_npy = format!("{prefix}.npy");
    write_pixels_npy(&out.join(&images_npy), &chains.samples)?;
    let labels_npy = match labels {
        Some(l) => {
            let file = format!("{prefix}-labels.npy");
            let v: Vec<i64> = l.iter().map(|&c| i64::from(c)).collect();
            write_npy(&out.join(&file), &[v.len()], &v)?;
            Some(file)
        }
        None => None,
    };
    Ok(ChainsReport {
        chains: n,
        steps,
        init: chains.init,
        grid: format!("{prefix}.png"),
        images_npy,
        labels_npy,
        trace,
        seconds,
    })
}

/// The whole task on any classifier: writes into `out` the buffer grid `buffer.png`
/// (skipped with a note when there is no buffer), the unconditional chains (`chains.png`,
/// `chains-step<k>.png`, `chains.npy`), the conditional chains (`conditional.png` with one
/// row per class, `conditional-step<k>.png`, `conditional.npy`, `conditional-labels.npy`)
/// and `generate.json`.
pub fn generate_with<M: Classifier + ?Sized>(
    sampler: &Sampler<'_, M>,
    replay_buffer: Option<&Tensor>,
    checkpoint: &str,
    iteration: u64,
    opts: &GenerateOptions,
    out: &Path,
) -> Result<GenerateResult> {
    opts.validate()?;
    if opts.n_chains == 0 && opts.per_class == 0 && replay_buffer.is_none() {
        return Err(EvalError::Invalid(
            "generate: nothing to do: n_chains and per_class are 0 and the checkpoint has no \
             replay buffer"
                .into(),
        ));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| EvalError::Io(format!("creating {}: {e}", out.display())))?;
    let mut notes = Vec::new();
    let buffer = match buffer_grid(
        replay_buffer,
        opts.grid_images,
        opts.per_row,
        &out.join("buffer.png"),
    ) {
        Ok(shown) => Some(BufferGrid {
            file: "buffer.png".into(),
            shown,
            buffer_size: replay_buffer.map_or(0, |b| b.dim(0).unwrap_or(0)),
        }),
        Err(EvalError::Invalid(m)) => {
            notes.push(format!("buffer.png not written: {m}"));
            None
        }
        Err(e) => return Err(e),
    };
    let unconditional = if opts.n_chains > 0 {
        let t0 = Instant::now();
        let chains = sampler.unconditional(opts)?;
        let secs = t0.elapsed().as_secs_f64();
        Some(report_chains(
            sampler,
            &chains,
            opts.n_steps,
            "chains",
            opts,
            secs,
            out,
        )?)
    } else {
        notes.push("unconditional chains skipped (n_chains = 0)".into());
        None
    };
    let conditional = if opts.per_class > 0 {
        let t0 = Instant::now();
        let chains = sampler.conditional(opts)?;
        let secs = t0.elapsed().as_secs_f64();
        Some(report_chains(
            sampler,
            &chains,
            opts.cond_steps,
            "conditional",
            opts,
            secs,
            out,
        )?)
    } else {
        notes.push("conditional chains skipped (per_class = 0)".into());
        None
    };
    let result = GenerateResult {
        checkpoint: checkpoint.to_string(),
        iteration,
        buffer,
        unconditional,
        conditional,
        notes,
        options: opts.clone(),
    };
    write_json(out, "generate.json", &result)?;
    Ok(result)
}

/// `jem eval generate` on a checkpoint: [`generate_with`] on the session's model, class
/// statistics and replay buffer.
pub fn generate(s: &EvalSession, opts: &GenerateOptions, out: &Path) -> Result<GenerateResult> {
    let sampler = Sampler {
        model: &s.model,
        gaussians: s.data.gaussians.as_ref(),
        shape: s.data.shape,
        num_classes: s.data.num_classes,
        device: &s.device,
    };
    generate_with(
        &sampler,
        s.replay_buffer.as_ref(),
        &s.checkpoint.display().to_string(),
        s.iteration,
        opts,
        out,
    )
}
