//! `jem eval robustness`: its options and its summary.

use std::path::Path;

use anyhow::{Context, Result};
use clap::{ArgMatches, Command};
use jem_eval::EvalSession;
use jem_eval::attack::{NormSweep, RobustnessOptions};
use jem_eval::robustness::{AttackNorm, BpdaEot, PgdConfig};

use super::{Tell, compare};
use crate::args::{flag, opt, parsed};

/// The `robustness` subcommand's own arguments (the common ones are added by `eval`).
pub fn command() -> Command {
    Command::new("robustness")
        .about(
            "White-box PGD (the reference's PGD-50, step 2/255, random start) on 1,000 \
             shuffled test images: accuracy against the radius, robustness.png (one \
             figure per norm, robustness-linf.png and robustness-l2.png, for both)",
        )
        .arg(compare())
        .arg(
            opt("norm", "NORMS", "linf, l2 or both, comma-separated")
                .value_delimiter(',')
                .default_value("linf"),
        )
        .arg(
            opt(
                "eps",
                "LIST",
                "Radii in /255 units, comma-separated (L2's too, unless --l2-eps)",
            )
            .value_delimiter(',')
            .default_value("1,2,4,8,12,16,22,30"),
        )
        .arg(
            opt(
                "l2-eps",
                "LIST",
                "L2 radii in /255 units (the perturbation's Euclidean length), \
                 comma-separated [default: --eps]",
            )
            .value_delimiter(','),
        )
        .arg(opt("steps", "N", "PGD steps").default_value("50"))
        .arg(opt("step-size", "ETA", "Step size in /255 units").default_value("2"))
        .arg(opt(
            "l2-step-size",
            "ETA",
            "L2 step length in /255 units [default: --step-size]",
        ))
        .arg(flag("no-random-start", "Start at the clean image"))
        .arg(opt("images", "N", "Test images attacked").default_value("1000"))
        .arg(opt("seed", "N", "Seed of the random starts").default_value("1"))
        .arg(opt(
            "bpda-eot",
            "STEPS",
            "Attack an SGLD purification defence of STEPS Langevin steps with \
             BPDA+EOT (the reference's bpda_eot_attack.py; 0 = plain PGD)",
        ))
        .arg(
            opt(
                "purify-step",
                "S",
                "Purification: step size on grad log p(x), model space",
            )
            .default_value("1"),
        )
        .arg(
            opt(
                "purify-noise",
                "SIGMA",
                "Purification: noise of each step, model space",
            )
            .default_value("0.01"),
        )
        .arg(
            opt(
                "eot-reps",
                "N",
                "Purified copies per image for the attack gradient (EOT)",
            )
            .default_value("15"),
        )
        .arg(
            opt(
                "defense-reps",
                "N",
                "Purified copies confirming a break (0 = no confirmation)",
            )
            .default_value("150"),
        )
}

/// The attack, the norms with their radii and steps, and the images, from the flags; errors
/// name the flag.
pub fn options(m: &ArgMatches) -> Result<RobustnessOptions> {
    let per255 = |name: &str| -> Result<Vec<f64>> {
        m.get_many::<String>(name)
            .into_iter()
            .flatten()
            .map(|v| {
                v.parse::<f64>()
                    .map(|x| x / 255.0)
                    .with_context(|| format!("--{name} `{v}`"))
            })
            .collect()
    };
    let norms = m
        .get_many::<String>("norm")
        .into_iter()
        .flatten()
        .map(|n| {
            n.parse::<AttackNorm>()
                .map_err(|e| anyhow::anyhow!("--norm `{n}`: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let step_size = parsed::<f64>(m, "step-size")?.unwrap_or(2.0) / 255.0;
    let (eps, l2_eps) = (per255("eps")?, per255("l2-eps")?);
    let l2_step = parsed::<f64>(m, "l2-step-size")?.map(|x| x / 255.0);
    let sweeps = norms
        .into_iter()
        .map(|norm| {
            // L2 falls back to the L-inf radii and step when not given its own
            let (radii, step) = match norm {
                AttackNorm::L2 if !l2_eps.is_empty() => (&l2_eps, l2_step.unwrap_or(step_size)),
                AttackNorm::L2 => (&eps, l2_step.unwrap_or(step_size)),
                AttackNorm::Linf => (&eps, step_size),
            };
            NormSweep {
                norm,
                eps: radii.clone(),
                step_size: step,
            }
        })
        .collect();
    let mut attack = PgdConfig::reference(AttackNorm::Linf);
    attack.steps = parsed::<usize>(m, "steps")?.unwrap_or(50);
    attack.step_size = step_size;
    attack.random_start = !m.get_flag("no-random-start");
    if let Some(steps) = parsed::<usize>(m, "bpda-eot")? {
        attack.bpda_eot = Some(BpdaEot {
            langevin_steps: steps,
            langevin_step_size: parsed::<f64>(m, "purify-step")?.unwrap_or(1.0),
            langevin_noise: parsed::<f64>(m, "purify-noise")?.unwrap_or(0.01),
            attack_reps: parsed::<usize>(m, "eot-reps")?.unwrap_or(15),
            defense_reps: parsed::<usize>(m, "defense-reps")?.unwrap_or(150),
        });
    }
    let opts = RobustnessOptions {
        sweeps,
        attack,
        images: parsed::<usize>(m, "images")?.unwrap_or(1000),
        shuffle_seed: 123,
        batch: 10,
        seed: parsed::<u64>(m, "seed")?.unwrap_or(1),
    };
    // before any slow loading
    opts.validate()?;
    Ok(opts)
}

/// Attacks every session, writes the results into `out`, prints the table.
pub fn run(
    all: &[(String, EvalSession)],
    opts: &RobustnessOptions,
    tell: &Tell,
    out: &Path,
) -> Result<serde_json::Value> {
    let refs: Vec<(String, &EvalSession)> = all.iter().map(|(l, s)| (l.clone(), s)).collect();
    let rows = jem_eval::attack::robustness(&refs, opts, !tell.quiet, out)?;
    say!(
        tell,
        "{:<24} {:>5} {:>8} {:>10} {:>10}",
        "model",
        "norm",
        "eps*255",
        "robust",
        "last-iter"
    );
    for r in &rows {
        for p in &r.result.points {
            say!(
                tell,
                "{:<24} {:>5} {:>8.1} {:>10.4} {:>10.4}",
                r.label,
                r.norm.to_string(),
                p.eps * 255.0,
                p.robust_accuracy,
                p.last_iterate_accuracy
            );
        }
    }
    Ok(serde_json::to_value(&rows)?)
}
