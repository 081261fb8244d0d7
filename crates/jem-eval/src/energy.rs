//! `jem eval landscape`: the energy landscape of one or more checkpoints along
//! filter-normalized random directions (the paper's Figure 1), on a fixed batch of test
//! images in eval mode.

use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::landscape::{
    Direction, DirectionOptions, Landscape1d, Landscape2d, ScanOptions, landscape_1d_with,
    landscape_2d_with, linspace, save_landscape_1d, save_landscape_2d,
};
use crate::output::write_json;
use crate::{EvalError, EvalSession, Result};

/// What to scan.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LandscapeOptions {
    /// Test images in the fixed batch (the first ones of the test split).
    pub samples: usize,
    /// Points per axis, over `[-range, range]`.
    pub points: usize,
    /// Half-width of the scanned interval along each direction.
    pub range: f64,
    /// Seed of the first direction (the second uses `seed + 1`); the same seeds for every
    /// checkpoint.
    pub seed: u64,
    /// Also scan the 2-D plane (`points^2` evaluations) of the first checkpoint.
    pub two_d: bool,
}

impl Default for LandscapeOptions {
    fn default() -> Self {
        Self {
            samples: 100,
            points: 21,
            range: 1.0,
            seed: 1,
            two_d: false,
        }
    }
}

/// One checkpoint's landscape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointLandscape {
    /// Its label (the run folder's name).
    pub label: String,
    /// The checkpoint file.
    pub checkpoint: String,
    /// Along the first direction.
    pub one_d: Landscape1d,
    /// Over the plane of both directions (first checkpoint only, when asked).
    pub two_d: Option<Landscape2d>,
}

/// `jem eval landscape`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LandscapeResult {
    /// One entry per checkpoint.
    pub checkpoints: Vec<CheckpointLandscape>,
    /// The options used.
    pub options: LandscapeOptions,
}

/// The first `n` test images of a session, in model space.
pub fn test_batch(s: &EvalSession, n: usize) -> Result<Tensor> {
    let loader = s
        .data
        .eval_loader(s.data.test.clone(), n.max(1), &s.device)?;
    let b = loader
        .epoch(0)
        .next()
        .ok_or_else(|| EvalError::Invalid("the test split is empty".into()))??;
    Ok(b.images)
}

/// Scans every session; writes `out/landscape.json`, `out/landscape-1d.png` (all checkpoints
/// overlaid) and, with `two_d`, `out/landscape-2d.png`.
pub fn landscapes(
    sessions: &[(String, &EvalSession)],
    opts: &LandscapeOptions,
    out: &Path,
) -> Result<LandscapeResult> {
    if sessions.is_empty() || opts.points == 0 || opts.range.is_nan() || opts.range <= 0.0 {
        return Err(EvalError::Invalid(
            "landscape: need a checkpoint, points >= 1 and range > 0".into(),
        ));
    }
    let alphas = linspace(-opts.range, opts.range, opts.points);
    let mut rows = Vec::new();
    for (i, (label, s)) in sessions.iter().enumerate() {
        let batch = test_batch(s, opts.samples)?;
        let d1 =
            Direction::filter_normalized(&s.model.store, opts.seed, DirectionOptions::default())?;
        let scan = ScanOptions {
            progress: s.progress,
            ..ScanOptions::default()
        };
        let one_d = landscape_1d_with(&s.model, &batch, &d1, &alphas, &scan)?;
        let two_d = if opts.two_d && i == 0 {
            let d2 = Direction::filter_normalized(
                &s.model.store,
                opts.seed + 1,
                DirectionOptions::default(),
            )?;
            Some(landscape_2d_with(
                &s.model, &batch, &d1, &d2, &alphas, &alphas, &scan,
            )?)
        } else {
            None
        };
        rows.push(CheckpointLandscape {
            label: label.clone(),
            checkpoint: s.checkpoint.display().to_string(),
            one_d,
            two_d,
        });
    }
    crate::output::ensure_dir(out)?;
    let curves: Vec<(&str, &Landscape1d)> =
        rows.iter().map(|r| (r.label.as_str(), &r.one_d)).collect();
    save_landscape_1d(&out.join("landscape-1d.png"), &curves)?;
    if let Some(l) = &rows[0].two_d {
        save_landscape_2d(&out.join("landscape-2d.png"), &rows[0].label, l)?;
    }
    let result = LandscapeResult {
        checkpoints: rows,
        options: *opts,
    };
    write_json(out, "landscape.json", &result)?;
    Ok(result)
}
