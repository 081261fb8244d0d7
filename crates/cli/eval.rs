//! `jem eval <task>`: the paper's evaluation protocols on a checkpoint; each task writes a
//! JSON result next to its figures and prints a summary.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Arg, ArgMatches, Command};
use jem_data::{resolve_cache_dir, resolve_data_dir};
use jem_eval::EvalSession;
use jem_eval::ood::{OodOptions, default_ood_sets};

use crate::args::{data_dir, flag, opt, parsed, path, string};
use crate::train::parse_device;

fn common(cmd: Command) -> Command {
    cmd.arg(
        opt(
            "checkpoint",
            "FILE",
            "A checkpoint of `jem train` (RUN_DIR/last.safetensors or best.safetensors)",
        )
        .required(true),
    )
    .arg(opt(
        "out",
        "DIR",
        "Where results and figures go (default: <run dir>/eval)",
    ))
    .arg(data_dir())
    .arg(opt(
        "cache-dir",
        "DIR",
        "Cache folder (default: $JEM_CACHE_DIR, else the per-user cache folder)",
    ))
    .arg(opt("device", "DEVICE", "cpu (default) or cuda:N").default_value("cpu"))
    .arg(opt("batch-size", "N", "Images per forward pass").default_value("100"))
}

/// The `jem eval` command tree.
pub fn command() -> Command {
    Command::new("eval")
        .about("Evaluate a checkpoint: accuracy, calibration, OOD detection")
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
}

/// Runs `jem eval ...`.
pub fn run(m: &ArgMatches) -> Result<()> {
    let (task, m) = m.subcommand().expect("clap requires a subcommand");
    let checkpoint = path(m, "checkpoint").context("--checkpoint is required")?;
    let data_dir = resolve_data_dir(path(m, "data-dir").as_deref());
    let cache_dir = resolve_cache_dir(path(m, "cache-dir").as_deref());
    let device = parse_device(&string(m, "device").unwrap_or_else(|| "cpu".into()))?;
    let batch = parsed::<usize>(m, "batch-size")?.unwrap_or(100).max(1);
    let out = match path(m, "out") {
        Some(o) => o,
        None => checkpoint
            .parent()
            .map(|p| p.join("eval"))
            .unwrap_or_else(|| PathBuf::from("eval")),
    };
    eprintln!("loading {} and its data", checkpoint.display());
    let s = EvalSession::open(&checkpoint, &data_dir, &cache_dir, &device)
        .with_context(|| format!("opening {}", checkpoint.display()))?;
    match task {
        "accuracy" => {
            eprintln!("classifying {} test images", s.data.test.len());
            let r = jem_eval::classify::accuracy(&s, batch, &out)?;
            println!("test accuracy {:.4} on {} images", r.accuracy, r.n);
            println!(
                "{:<6} {:<14} {:>6} {:>9}",
                "class", "name", "count", "accuracy"
            );
            for c in &r.per_class {
                println!(
                    "{:<6} {:<14} {:>6} {:>9.4}",
                    c.class,
                    c.name.as_deref().unwrap_or("-"),
                    c.count,
                    c.accuracy
                );
            }
        }
        "calibration" => {
            let r = jem_eval::classify::calibrate(&s, batch, &out)?;
            println!(
                "accuracy {:.4}  ECE {:.4} (reference, 20 bins)  ECE {:.4} (torchmetrics, 15 bins)  MCE {:.4}",
                r.accuracy, r.reference.ece, r.torchmetrics.ece, r.reference.mce
            );
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
            eprintln!("scoring the test split and {}", sets.join(", "));
            let r = jem_eval::ood::ood(&s, &sets, &data_dir, &opts, &out)?;
            println!("AUROC (in-distribution: test split, {} images)", r.n_in);
            println!(
                "{:<16} {:>7} {:>9} {:>9} {:>9}",
                "OOD set", "n", "log p(x)", "max p(y|x)", "-|grad|"
            );
            for row in &r.sets {
                let g = row
                    .pxgrad
                    .as_ref()
                    .map(|g| format!("{:.4}", g.auroc))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<16} {:>7} {:>9.4} {:>9.4} {:>9}",
                    row.name, row.n, row.px.auroc, row.py.auroc, g
                );
            }
        }
        _ => unreachable!("clap knows the tasks"),
    }
    eprintln!("results in {}", out.display());
    Ok(())
}
