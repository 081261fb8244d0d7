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

mod options;
mod sampler;

pub use options::*;
pub use sampler::*;

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Tensor};
use jem_metrics::npy::write_npy;
use jem_models::jem::Classifier;
use jem_plot::save_grid;

use crate::output::{plot_err, write_json};
use crate::{EvalError, EvalSession, Result};

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
    crate::output::ensure_dir(out)?;
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

/// The chains of a checkpoint: its model, class statistics, sample shape and device.
pub fn session_sampler(s: &EvalSession) -> Sampler<'_, jem_models::WideResNet> {
    Sampler {
        model: &s.model,
        gaussians: s.data.gaussians.as_ref(),
        shape: s.data.shape,
        num_classes: s.data.num_classes,
        device: &s.device,
    }
}

/// `jem eval generate` on a checkpoint: [`generate_with`] on the session's model, class
/// statistics and replay buffer.
pub fn generate(s: &EvalSession, opts: &GenerateOptions, out: &Path) -> Result<GenerateResult> {
    generate_with(
        &session_sampler(s),
        s.replay_buffer.as_ref(),
        &s.checkpoint.display().to_string(),
        s.iteration,
        opts,
        out,
    )
}
