//! Where the images behind FID and IS come from: the checkpoint's replay buffer (the
//! reference's protocol, `Task/eval_buffer.py: cond_is_fid`) or fresh chains run with the
//! reference's eval-time sampler from the informative initialization; and the one-line
//! description of the protocol that every result carries.

use candle_core::Tensor;
use jem_models::jem::Classifier;
use serde::{Deserialize, Serialize};

use crate::generate::{ChainInit, GenerateOptions, Sampler};
use crate::{EvalError, EvalSession, Result};

/// Default chains of [`SampleSource::Chains`] in the command line: enough images for a
/// usable FID, ten times the reference's 100 generation chains.
pub const DEFAULT_CHAINS: usize = 1000;

/// Default steps of [`SampleSource::Chains`]: the reference's `eval_sadajem.sh` (100 calls
/// of 10 steps).
pub const DEFAULT_CHAIN_STEPS: usize = 1000;

/// Which images FID and IS are computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SampleSource {
    /// The checkpoint's replay buffer: the reference's protocol.
    #[default]
    Buffer,
    /// Fresh unconditional chains from the informative initialization (uniform noise when
    /// the run has no per-class Gaussians), run with the reference's eval-time sampler
    /// ([`GenerateOptions`]' defaults: step size 1, no noise, no gradient clip, the
    /// reference's BatchNorm switch, 100 chains per batch).
    Chains {
        /// Chains, one image each.
        chains: usize,
        /// Steps of each chain.
        steps: usize,
        /// Seed of the initial draws.
        seed: u64,
    },
}

impl SampleSource {
    /// Checks the chain settings; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if let SampleSource::Chains { chains, steps, .. } = *self {
            for (name, v) in [("chains", chains), ("steps", steps)] {
                if v == 0 {
                    return Err(EvalError::Invalid(format!(
                        "quality: source chains: {name} must be > 0, got 0"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The part of the result file's name after the metric: empty for the buffer, so the
    /// reference's protocol keeps its historical names, `-chains` for fresh chains.
    pub fn file_suffix(&self) -> &'static str {
        match self {
            SampleSource::Buffer => "",
            SampleSource::Chains { .. } => "-chains",
        }
    }
}

/// The sampler settings of fresh chains: `generate`'s defaults (the reference's eval
/// script), no conditional chains and no snapshots, which would only cost memory here.
pub fn chain_options(chains: usize, steps: usize, seed: u64, progress: bool) -> GenerateOptions {
    GenerateOptions {
        n_chains: chains,
        n_steps: steps,
        per_class: 0,
        snapshots: Vec::new(),
        init: ChainInit::Auto,
        seed,
        progress,
        ..GenerateOptions::default()
    }
}

/// Runs `chains` fresh unconditional chains for `steps` steps (in batches of
/// [`GenerateOptions`]' default, the reference's 100); returns the final samples (model
/// space, CPU) and where they started ([`ChainInit::Auto`]: informative when the run has
/// per-class Gaussians, else uniform).
pub fn fresh_chains<M: Classifier + ?Sized>(
    sampler: &Sampler<'_, M>,
    chains: usize,
    steps: usize,
    seed: u64,
    progress: bool,
) -> Result<(Tensor, ChainInit)> {
    SampleSource::Chains {
        chains,
        steps,
        seed,
    }
    .validate()?;
    let c = sampler.unconditional(&chain_options(chains, steps, seed, progress))?;
    Ok((c.samples, c.init))
}

/// The images to score (model space) and, for fresh chains, where they started.
pub(super) fn source_images(
    s: &EvalSession,
    opts: &super::QualityOptions,
) -> Result<(Tensor, Option<ChainInit>)> {
    match opts.source {
        SampleSource::Buffer => {
            let buffer = s.replay_buffer.clone().ok_or_else(|| {
                EvalError::Invalid(format!(
                    "{} has no replay buffer: FID and IS of the reference's protocol are of the \
                     buffer's samples (train with p(x) > 0, or use the chains source)",
                    s.checkpoint.display()
                ))
            })?;
            Ok((buffer, None))
        }
        SampleSource::Chains {
            chains,
            steps,
            seed,
        } => {
            let sampler = crate::generate::session_sampler(s);
            let (x, init) = fresh_chains(&sampler, chains, steps, seed, opts.progress)?;
            Ok((x, Some(init)))
        }
    }
}

/// The reference's kept fractions: 90 % for FID, 10 % for IS.
const REFERENCE_RATIOS: (f64, f64) = (0.9, 0.1);

/// `top 90 % per predicted class by confidence`, or `all kept` for a ratio of 1.
fn selection(ratio: f64) -> String {
    if ratio >= 1.0 {
        return "all kept".into();
    }
    // two decimals of a percent: 0.07 would otherwise print as 7.000000000000001
    let pct = (ratio * 1e4).round() / 100.0;
    format!("top {pct} % per predicted class by confidence")
}

/// One line saying which protocol produced the numbers: the source (buffer size, or chains,
/// steps, seed and initialization), then the selection of each metric asked (`fid_ratio` /
/// `is_ratio` when given), and `as the reference` when that is the reference's protocol.
pub fn protocol(
    source: &SampleSource,
    n_source: usize,
    init: Option<ChainInit>,
    fid_ratio: Option<f64>,
    is_ratio: Option<f64>,
) -> String {
    let from = match *source {
        SampleSource::Buffer => format!("replay buffer ({n_source} images)"),
        SampleSource::Chains { steps, seed, .. } => {
            let start = match init {
                Some(ChainInit::Uniform) => "the uniform init (the run has no per-class Gaussians)",
                _ => "the informative init",
            };
            format!(
                "{n_source} fresh chains from {start}, {steps} steps of the reference's eval \
                 sampler (step size 1, no noise), seed {seed}"
            )
        }
    };
    let kept = match (fid_ratio, is_ratio) {
        (Some(f), Some(i)) if f != i => {
            format!("FID: {}, IS: {}", selection(f), selection(i))
        }
        (Some(r), _) | (None, Some(r)) => selection(r),
        (None, None) => "nothing computed".into(),
    };
    let reference = source == &SampleSource::Buffer
        && fid_ratio.is_none_or(|f| f == REFERENCE_RATIOS.0)
        && is_ratio.is_none_or(|i| i == REFERENCE_RATIOS.1);
    let tail = if reference { ", as the reference" } else { "" };
    format!("{from}, {kept}{tail}")
}
