//! `jem eval robustness`: white-box PGD (reference 6.6) on the test images the reference
//! attacks — 1,000 test images shuffled with seed 123, in batches of 10 — for one or more
//! checkpoints and norms, with the robustness-curve figure of the paper's Figure 5.

use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use jem_io::progress::{Progress, ProgressMode};
use serde::{Deserialize, Serialize};

use crate::output::write_json;
use crate::robustness::{
    AttackNorm, PgdConfig, RobustnessResult, robust_accuracy_with_progress, save_robustness_curve,
};
use crate::{EvalError, EvalSession, Result};

/// One norm's sweep: its radii and the step size of its attack. An L2 ball of radius
/// 8/255 is far smaller than an L-infinity ball of the same radius (on a 28x28 image, the
/// L-infinity ball's corners lie 28 times farther out), so each norm has its own radii.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormSweep {
    /// The threat model's norm.
    pub norm: AttackNorm,
    /// Radii in [0, 1]-pixel units.
    pub eps: Vec<f64>,
    /// Step size in [0, 1]-pixel units (L-infinity: per pixel; L2: the step's length).
    pub step_size: f64,
}

/// Which images to attack and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustnessOptions {
    /// The norms to attack under, each with its radii and step size.
    pub sweeps: Vec<NormSweep>,
    /// The attack (its `norm`, `eps` and `step_size` are replaced by each sweep's).
    pub attack: PgdConfig,
    /// Test images attacked (the first of the shuffled test split).
    pub images: usize,
    /// Seed of the shuffle (the reference: 123).
    pub shuffle_seed: u64,
    /// Images per batch (the reference: 10).
    pub batch: usize,
    /// Seed of the attack's random starts.
    pub seed: u64,
}

/// One checkpoint under one norm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustnessRow {
    /// Label of the checkpoint (its run folder's name).
    pub label: String,
    /// The checkpoint file.
    pub checkpoint: String,
    /// The norm.
    pub norm: AttackNorm,
    /// Accuracies per radius.
    pub result: RobustnessResult,
}

impl RobustnessOptions {
    /// Checks that there is at least one sweep, each norm at most once, each with a radius.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(EvalError::Invalid(format!("robustness: {why}")));
        if self.sweeps.is_empty() {
            return bad("need a norm".into());
        }
        for (i, w) in self.sweeps.iter().enumerate() {
            if w.eps.is_empty() {
                return bad(format!("the {} sweep has no radius", w.norm));
            }
            if self.sweeps[..i].iter().any(|v| v.norm == w.norm) {
                return bad(format!("the {} norm is given twice", w.norm));
            }
        }
        Ok(())
    }
}

/// The attacked batches of a session: `images` test images after a seeded shuffle.
pub fn attack_batches(s: &EvalSession, opts: &RobustnessOptions) -> Result<Vec<(Tensor, Tensor)>> {
    let test = &s.data.test;
    let order = jem_data::rng::permutation(test.len(), opts.shuffle_seed);
    let chosen: Vec<usize> = order.into_iter().take(opts.images).collect();
    if chosen.is_empty() {
        return Err(EvalError::Invalid("images: no test image to attack".into()));
    }
    let subset = Arc::new(test.subset(&chosen));
    let loader = s.data.eval_loader(subset, opts.batch.max(1), &s.device)?;
    loader
        .epoch(0)
        .map(|b| {
            let b = b?;
            Ok((b.images, b.labels))
        })
        .collect()
}

/// Attacks every session under every sweep; writes `out/robustness.json` and one figure per
/// norm: `out/robustness.png` when there is one norm, else `out/robustness-linf.png` and
/// `out/robustness-l2.png` (their radii are not on one scale). With `progress`, one line per
/// batch on stderr.
pub fn robustness(
    sessions: &[(String, &EvalSession)],
    opts: &RobustnessOptions,
    progress: bool,
    out: &Path,
) -> Result<Vec<RobustnessRow>> {
    opts.validate()?;
    let mut rows = Vec::new();
    for (label, s) in sessions {
        let batches = attack_batches(s, opts)?;
        let total: usize = batches.len();
        for sweep in &opts.sweeps {
            let norm = sweep.norm;
            let cfg = PgdConfig {
                norm,
                step_size: sweep.step_size,
                ..opts.attack
            };
            let bar = Progress::new(
                &format!("pgd {label} {norm}"),
                total as u64,
                "batches",
                ProgressMode::shown(progress),
            );
            let result = robust_accuracy_with_progress(
                &s.model,
                batches.iter().cloned(),
                &cfg,
                &sweep.eps,
                opts.seed,
                |done, images| {
                    bar.set_message(format!("{images} images"));
                    bar.set_position(done as u64);
                },
            )?;
            bar.finish();
            rows.push(RobustnessRow {
                label: label.clone(),
                checkpoint: s.checkpoint.display().to_string(),
                norm,
                result,
            });
        }
    }
    crate::output::ensure_dir(out)?;
    let norms = opts.sweeps.len();
    for norm in opts.sweeps.iter().map(|w| w.norm) {
        let of_norm: Vec<&RobustnessRow> = rows.iter().filter(|r| r.norm == norm).collect();
        let names: Vec<String> = of_norm
            .iter()
            .map(|r| format!("{} {}", r.label, r.norm))
            .collect();
        let curves: Vec<(&str, &RobustnessResult)> = names
            .iter()
            .zip(&of_norm)
            .map(|(n, r)| (n.as_str(), &r.result))
            .collect();
        save_robustness_curve(&out.join(figure_name(norm, norms)), &curves)?;
    }
    write_json(out, "robustness.json", &rows)?;
    Ok(rows)
}

/// The figure of one norm: `robustness.png` when it is the only one, else
/// `robustness-linf.png` or `robustness-l2.png`.
pub fn figure_name(norm: AttackNorm, norms: usize) -> String {
    match (norms, norm) {
        (0 | 1, _) => "robustness.png".into(),
        (_, AttackNorm::Linf) => "robustness-linf.png".into(),
        (_, AttackNorm::L2) => "robustness-l2.png".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(sweeps: Vec<NormSweep>) -> RobustnessOptions {
        RobustnessOptions {
            sweeps,
            attack: PgdConfig::reference(AttackNorm::Linf),
            images: 10,
            shuffle_seed: 123,
            batch: 10,
            seed: 1,
        }
    }

    fn sweep(norm: AttackNorm, eps: &[f64]) -> NormSweep {
        NormSweep {
            norm,
            eps: eps.to_vec(),
            step_size: 2.0 / 255.0,
        }
    }

    #[test]
    fn sweeps_are_checked() {
        let err = |o: RobustnessOptions| o.validate().unwrap_err().to_string();
        assert!(err(opts(vec![])).contains("need a norm"));
        let no_radius = opts(vec![sweep(AttackNorm::L2, &[])]);
        assert!(err(no_radius).contains("L2 sweep has no radius"));
        let twice = opts(vec![
            sweep(AttackNorm::Linf, &[0.1]),
            sweep(AttackNorm::Linf, &[0.2]),
        ]);
        assert!(err(twice).contains("L-inf norm is given twice"));
        let both = opts(vec![
            sweep(AttackNorm::Linf, &[0.1]),
            sweep(AttackNorm::L2, &[0.5]),
        ]);
        both.validate().unwrap();
    }

    #[test]
    fn one_figure_per_norm_when_there_are_two() {
        assert_eq!(figure_name(AttackNorm::L2, 1), "robustness.png");
        assert_eq!(figure_name(AttackNorm::Linf, 2), "robustness-linf.png");
        assert_eq!(figure_name(AttackNorm::L2, 2), "robustness-l2.png");
    }
}
