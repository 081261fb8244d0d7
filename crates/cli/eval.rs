//! `jem eval <task>`: the paper's evaluation protocols on a checkpoint; each task writes a
//! JSON result next to its figures and prints a summary.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Arg, ArgMatches, Command};
use jem_data::{resolve_cache_dir, resolve_data_dir};
use jem_eval::EvalSession;
use jem_eval::energy::LandscapeOptions;
use jem_eval::generate::{GenerateOptions, SamplerBn};
use jem_eval::ood::{OodOptions, default_ood_sets};

use crate::args::{
    apply_tf32, cache_dir, data_dir, flag, opt, parsed, path, set_arg, sets, string, tf32,
};
use crate::train::parse_device;

/// How loudly a task reports: its summary on stdout unless `--json`, status lines on stderr
/// unless `--quiet`.
#[derive(Clone, Copy, Debug)]
pub struct Tell {
    /// `--json`: stdout carries the result's JSON instead of the summary.
    pub json: bool,
    /// `--quiet`: no status lines or progress bars.
    pub quiet: bool,
}

/// A line of a task's summary (stdout), unless `--json`.
macro_rules! say {
    ($tell:expr, $($t:tt)*) => { if !$tell.json { println!($($t)*); } };
}

/// A status line (stderr), unless `--quiet`.
macro_rules! note {
    ($tell:expr, $($t:tt)*) => { if !$tell.quiet { eprintln!($($t)*); } };
}

mod quality;
mod robustness;

fn common(cmd: Command) -> Command {
    cmd.arg(
        opt(
            "checkpoint",
            "FILE",
            "A checkpoint of `jem train` (RUN_DIR/last.safetensors or best.safetensors, or a \
             model-only one), or the authors' PyTorch .pt (with --config)",
        )
        .required(true),
    )
    .arg(opt(
        "config",
        "TOML",
        "For a .pt checkpoint: the preset it was trained with (data set, settings); it is \
         imported as `jem model import` does, into <out>/imported-<name>.safetensors",
    ))
    .arg(set_arg(
        "For a .pt checkpoint: override a preset value (repeatable)",
    ))
    .arg(opt(
        "out",
        "DIR",
        "Where results and figures go (default: <run dir>/eval)",
    ))
    .arg(data_dir())
    .arg(cache_dir())
    .arg(opt("device", "DEVICE", "cpu (default) or cuda:N").default_value("cpu"))
    .arg(tf32())
    .arg(opt("batch-size", "N", "Images per forward pass").default_value("100"))
    .arg(flag(
        "json",
        "Print the result as one JSON object on stdout (the same as the task's .json file) \
         instead of the summary",
    ))
    .arg(flag("quiet", "No progress bars or status lines on stderr").short('q'))
}

/// The `jem eval` command tree.
pub fn command() -> Command {
    Command::new("eval")
        .about(
            "Evaluate a checkpoint: accuracy, calibration, OOD detection, samples, FID / IS, \
             adversarial robustness, energy landscape",
        )
        .subcommand_required(true)
        .subcommand(common(
            Command::new("accuracy")
                .about("Test accuracy (eval-mode BatchNorm) and a per-class table"),
        ))
        .subcommand(common(Command::new("calibration").about(
            "ECE in the reference's convention (20 bins) and torchmetrics' (15 bins), and a \
             reliability diagram (calibration.png)",
        )))
        .subcommand(common(
            Command::new("ood")
                .about(
                    "OOD detection against the test split: AUROC of log p(x), max p(y|x) and the \
                     input-gradient norm per OOD set, and log p(x) histograms",
                )
                .arg(
                    Arg::new("sets")
                        .long("sets")
                        .value_name("NAMES")
                        .value_delimiter(',')
                        .help(
                            "OOD sets, comma-separated: data sets (mnist, svhn, cifar100, celeba, \
                             ...), uniform, constant, <dataset>-interp (default: the paper's sets \
                             for the model's data set)",
                        ),
                )
                .arg(opt("max-images", "N", "At most N images per OOD set"))
                .arg(flag(
                    "no-pxgrad",
                    "Skip the input-gradient score (one backward pass per batch)",
                ))
                .arg(flag(
                    "pxgrad-reference-bug",
                    "Differentiate only the first image of each batch, as the reference's pxgrad",
                ))
                .arg(opt("seed", "N", "Seed of the synthetic OOD sets").default_value("1")),
        ))
        .subcommand(common(
            Command::new("generate")
                .about(
                    "Samples: the replay buffer (buffer.png), fresh long-run chains from the \
                     informative init as the reference's eval script (chains.png / .npy), and \
                     class-conditional samples (conditional.png, one row per class)",
                )
                .arg(opt("chains", "N", "Unconditional chains (0: none)").default_value("100"))
                .arg(opt("steps", "N", "Steps of the unconditional chains").default_value("1000"))
                .arg(
                    opt("per-class", "N", "Conditional samples per class (0: none)")
                        .default_value("10"),
                )
                .arg(
                    opt("cond-steps", "N", "Steps of the conditional chains").default_value("1000"),
                )
                .arg(
                    opt(
                        "bn",
                        "MODE",
                        "BatchNorm while sampling: reference (running statistics for the first 10 \
                         steps, then batch statistics, as the reference), eval or batch",
                    )
                    .value_parser(["reference", "eval", "batch"])
                    .default_value("reference"),
                )
                .arg(opt("seed", "N", "Seed of the chains").default_value("1")),
        ))
        .subcommand(quality::command(Command::new("fid").about(
            "FID against the real data's cached Inception statistics: by default of the replay \
             buffer's samples, top 90% per predicted class by confidence (the reference's \
             protocol, fid.json); with --source chains of fresh chains, all kept \
             (fid-chains.json)",
        )))
        .subcommand(quality::command(Command::new("is").about(
            "Inception Score: by default of the replay buffer's samples, top 10% per predicted \
             class by confidence (the reference's protocol, is.json); with --source chains of \
             fresh chains, all kept (is-chains.json)",
        )))
        .subcommand(common(robustness::command()))
        .subcommand(common(
            Command::new("landscape")
                .about(
                    "Mean LSE energy of a fixed test batch along filter-normalized random \
                     directions (Li et al.), several checkpoints overlaid: landscape-1d.png, \
                     and with --two-d landscape-2d.png",
                )
                .arg(compare())
                .arg(opt("samples", "N", "Test images in the batch").default_value("100"))
                .arg(opt("points", "N", "Points per direction").default_value("51"))
                .arg(opt("range", "R", "Scan alpha (and beta) over [-R, R]").default_value("1"))
                .arg(opt("seed", "N", "Seed of the directions").default_value("1"))
                .arg(flag(
                    "two-d",
                    "Also scan the plane of two directions (points^2 passes)",
                )),
        ))
}

fn compare() -> Arg {
    Arg::new("compare")
        .long("compare")
        .value_name("FILES")
        .value_delimiter(',')
        .help("More checkpoints to overlay, comma-separated")
}

/// The checkpoint and the `--compare` ones, opened, labelled by their run folders.
fn sessions(
    m: &ArgMatches,
    first: EvalSession,
    data_dir: &std::path::Path,
    cache_dir: &std::path::Path,
) -> Result<Vec<(String, EvalSession)>> {
    // the run folder's name, or its parent's when the run folder is called `run`
    let label = |p: &std::path::Path| {
        let mut dir = p.parent();
        if dir.and_then(|d| d.file_name()).is_some_and(|n| n == "run") {
            dir = dir.and_then(|d| d.parent());
        }
        dir.and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    let first_progress = first.progress;
    let mut out = vec![(label(&first.checkpoint), first)];
    if let Some(more) = m.get_many::<String>("compare") {
        for c in more {
            let p = PathBuf::from(c);
            let s = EvalSession::open(&p, data_dir, cache_dir, &out[0].1.device)
                .with_context(|| format!("opening --compare {}", p.display()))?
                .with_progress(first_progress);
            out.push((label(&p), s));
        }
    }
    Ok(out)
}

/// Runs `jem eval ...`.
pub fn run(m: &ArgMatches) -> Result<()> {
    let (task, m) = m.subcommand().expect("clap requires a subcommand");
    let checkpoint = path(m, "checkpoint").context("--checkpoint is required")?;
    let data_dir = resolve_data_dir(path(m, "data-dir").as_deref());
    let cache_dir = resolve_cache_dir(path(m, "cache-dir").as_deref());
    let device = parse_device(&string(m, "device").unwrap_or_else(|| "cpu".into()))?;
    apply_tf32(m);
    let batch = parsed::<usize>(m, "batch-size")?.unwrap_or(100).max(1);
    let json = m.get_flag("json");
    let quiet = m.get_flag("quiet");
    let tell = Tell { json, quiet };
    let out = match path(m, "out") {
        Some(o) => o,
        None => checkpoint
            .parent()
            .map(|p| p.join("eval"))
            .unwrap_or_else(|| PathBuf::from("eval")),
    };
    // FID and IS need the Inception weights and sane options: say so before any slow loading
    let (weights, quality_opts) = match task {
        "fid" | "is" => (
            Some(jem_eval::quality::inception_weights(
                path(m, "weights").as_deref(),
                &data_dir,
            )?),
            Some(quality::options(m, task)?),
        ),
        _ => (None, None),
    };
    let robustness_opts = match task {
        "robustness" => Some(robustness::options(m)?),
        _ => None,
    };
    let checkpoint = match checkpoint.extension().and_then(|e| e.to_str()) {
        Some("pt" | "pth") => {
            let config = path(m, "config").with_context(|| {
                format!(
                    "{} is a PyTorch checkpoint: give --config PRESET (it holds no data set or \
                     settings)",
                    checkpoint.display()
                )
            })?;
            let sets = sets(m);
            let imported = crate::model::import_pt(&checkpoint, &config, &sets)?;
            let stem = checkpoint.file_stem().unwrap_or_default().to_string_lossy();
            let file = out.join(format!("imported-{stem}.safetensors"));
            imported.checkpoint.save(&file)?;
            note!(
                tell,
                "imported {} as {}",
                checkpoint.display(),
                file.display()
            );
            file
        }
        _ => checkpoint,
    };
    note!(tell, "loading {} and its data", checkpoint.display());
    let s = EvalSession::open(&checkpoint, &data_dir, &cache_dir, &device)
        .with_context(|| format!("opening {}", checkpoint.display()))?
        .with_progress(!quiet);
    let value = match task {
        "accuracy" => {
            note!(tell, "classifying {} test images", s.data.test.len());
            let r = jem_eval::classify::accuracy(&s, batch, &out)?;
            say!(tell, "test accuracy {:.4} on {} images", r.accuracy, r.n);
            say!(
                tell,
                "{:<6} {:<14} {:>6} {:>9}",
                "class",
                "name",
                "count",
                "accuracy"
            );
            for c in &r.per_class {
                say!(
                    tell,
                    "{:<6} {:<14} {:>6} {:>9.4}",
                    c.class,
                    c.name.as_deref().unwrap_or("-"),
                    c.count,
                    c.accuracy
                );
            }
            serde_json::to_value(&r)?
        }
        "calibration" => {
            let r = jem_eval::classify::calibrate(&s, batch, &out)?;
            say!(
                tell,
                "accuracy {:.4}  ECE {:.4} (reference, 20 bins)  ECE {:.4} (torchmetrics, 15 bins)  MCE {:.4}",
                r.accuracy,
                r.reference.ece,
                r.torchmetrics.ece,
                r.reference.mce
            );
            serde_json::to_value(&r)?
        }
        "ood" => {
            let sets: Vec<String> = match m.get_many::<String>("sets") {
                Some(v) => v.cloned().collect(),
                None => default_ood_sets(s.config.dataset()?),
            };
            let opts = OodOptions {
                batch,
                pxgrad: !m.get_flag("no-pxgrad"),
                pxgrad_reference_bug: m.get_flag("pxgrad-reference-bug"),
                seed: parsed::<u64>(m, "seed")?.unwrap_or(1),
                max_images: parsed::<usize>(m, "max-images")?,
            };
            note!(tell, "scoring the test split and {}", sets.join(", "));
            let r = jem_eval::ood::ood(&s, &sets, &data_dir, &opts, &out)?;
            say!(
                tell,
                "AUROC (in-distribution: test split, {} images)",
                r.n_in
            );
            say!(
                tell,
                "{:<16} {:>7} {:>9} {:>9} {:>9}",
                "OOD set",
                "n",
                "log p(x)",
                "max p(y|x)",
                "-|grad|"
            );
            for row in &r.sets {
                let g = row
                    .pxgrad
                    .as_ref()
                    .map(|g| format!("{:.4}", g.auroc))
                    .unwrap_or_else(|| "-".into());
                say!(
                    tell,
                    "{:<16} {:>7} {:>9.4} {:>9.4} {:>9}",
                    row.name,
                    row.n,
                    row.px.auroc,
                    row.py.auroc,
                    g
                );
            }
            serde_json::to_value(&r)?
        }
        "generate" => {
            let opts = GenerateOptions {
                n_chains: parsed::<usize>(m, "chains")?.unwrap_or(100),
                n_steps: parsed::<usize>(m, "steps")?.unwrap_or(1000),
                per_class: parsed::<usize>(m, "per-class")?.unwrap_or(10),
                cond_steps: parsed::<usize>(m, "cond-steps")?.unwrap_or(1000),
                bn: match string(m, "bn").as_deref() {
                    Some("eval") => SamplerBn::Eval,
                    Some("batch") => SamplerBn::Batch,
                    _ => SamplerBn::Reference,
                },
                seed: parsed::<u64>(m, "seed")?.unwrap_or(1),
                batch,
                progress: !quiet,
                ..GenerateOptions::default()
            };
            let r = jem_eval::generate::generate(&s, &opts, &out)?;
            for n in &r.notes {
                eprintln!("note: {n}");
            }
            say!(
                tell,
                "samples in {} (buffer: {}, unconditional: {}, conditional: {})",
                out.display(),
                if r.buffer.is_some() { "yes" } else { "no" },
                if r.unconditional.is_some() {
                    "yes"
                } else {
                    "no"
                },
                if r.conditional.is_some() { "yes" } else { "no" }
            );
            serde_json::to_value(&r)?
        }
        "fid" | "is" => {
            let weights = weights.context("the Inception weights")?;
            let opts = quality_opts.context("the FID / IS options")?;
            quality::run(&s, &weights, (&data_dir, &cache_dir), &opts, &tell, &out)?
        }
        "robustness" => {
            let opts = robustness_opts.context("the attack's options")?;
            let all = sessions(m, s, &data_dir, &cache_dir)?;
            robustness::run(&all, &opts, &tell, &out)?
        }
        "landscape" => {
            let opts = LandscapeOptions {
                samples: parsed::<usize>(m, "samples")?.unwrap_or(100),
                points: parsed::<usize>(m, "points")?.unwrap_or(51),
                range: parsed::<f64>(m, "range")?.unwrap_or(1.0),
                seed: parsed::<u64>(m, "seed")?.unwrap_or(1),
                two_d: m.get_flag("two-d"),
            };
            let all = sessions(m, s, &data_dir, &cache_dir)?;
            let refs: Vec<(String, &EvalSession)> =
                all.iter().map(|(l, s)| (l.clone(), s)).collect();
            let r = jem_eval::energy::landscapes(&refs, &opts, &out)?;
            for c in &r.checkpoints {
                let e = &c.one_d.energies;
                let mid = e[e.len() / 2];
                let (lo, hi) = e
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                        (a.min(x), b.max(x))
                    });
                say!(
                    tell,
                    "{}: mean energy {mid:.4} at alpha 0, {lo:.4} .. {hi:.4} over [-{r}, {r}]",
                    c.label,
                    r = opts.range
                );
            }
            serde_json::to_value(&r)?
        }
        _ => unreachable!("clap knows the tasks"),
    };
    note!(tell, "results in {}", out.display());
    if json {
        println!("{value}");
    }
    Ok(())
}
