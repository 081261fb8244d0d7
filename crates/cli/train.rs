//! `jem train`: run an experiment preset, or resume a run.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::{ArgMatches, Command};
use jem_train::{TrainConfig, TrainOptions, Trainer};

use crate::args::{apply_tf32, cache_dir, data_dir, flag, opt, path, set_arg, sets, string, tf32};

pub fn command() -> Command {
    Command::new("train")
        .about("Train a model from a TOML preset (configs/), or resume a run")
        .long_about(
            "Train a model from a TOML preset (see configs/), or resume a run.\n\n\
             A new run writes into --out (default runs/<name>-<UTC time>): config.toml, \
             train.jsonl, eval.jsonl, last/best/epoch-N checkpoints, samples/ and curves/. \
             `--resume RUN_DIR` continues from RUN_DIR/last.safetensors exactly as if the \
             run had not stopped.",
        )
        .arg(opt("config", "FILE", "Experiment preset (TOML)").conflicts_with("resume"))
        .arg(set_arg(
            "Override a config key, e.g. --set sampler.steps=10 (repeatable)",
        ))
        .arg(opt("resume", "RUN_DIR", "Continue the run in RUN_DIR"))
        .arg(opt("out", "RUN_DIR", "Run folder of a new run"))
        .arg(opt(
            "device",
            "DEVICE",
            "cpu (default) or cuda:N (needs the `cuda` feature)",
        ))
        .arg(tf32())
        .arg(data_dir())
        .arg(cache_dir())
        .arg(flag("quiet", "No progress output").short('q'))
        .arg(flag("print-config", "Print the resolved config and exit"))
}

/// Parses `cpu` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let Some(n) = s.strip_prefix("cuda") else {
                bail!("--device `{s}`: expected cpu or cuda:N");
            };
            let n: usize = match n.strip_prefix(':') {
                Some(k) => k.parse().with_context(|| format!("--device `{s}`"))?,
                None if n.is_empty() => 0,
                None => bail!("--device `{s}`: expected cpu or cuda:N"),
            };
            Device::new_cuda(n).with_context(|| {
                if cfg!(feature = "cuda") {
                    format!("--device {s}: cannot open CUDA device {n}")
                } else {
                    format!("--device {s}: this jem was built without `--features cuda`")
                }
            })
        }
    }
}

/// `runs/<name>-<YYYYmmdd-HHMMSS>` in UTC.
fn default_run_dir(name: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    PathBuf::from("runs").join(format!(
        "{name}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

pub fn run(m: &ArgMatches) -> Result<()> {
    let sets = sets(m);
    let device = parse_device(&string(m, "device").unwrap_or_else(|| "cpu".into()))?;
    apply_tf32(m);
    let data_dir = jem_data::resolve_data_dir(path(m, "data-dir").as_deref());
    let cache_dir = jem_data::resolve_cache_dir(path(m, "cache-dir").as_deref());
    let quiet = m.get_flag("quiet");
    let mut trainer = if let Some(dir) = path(m, "resume") {
        let opts = TrainOptions {
            run_dir: dir,
            data_dir,
            cache_dir,
            device,
            quiet,
        };
        Trainer::resume(opts, &sets)?
    } else {
        let Some(config) = path(m, "config") else {
            bail!("give --config FILE for a new run or --resume RUN_DIR");
        };
        let cfg = TrainConfig::load(&config, &sets)?;
        if m.get_flag("print-config") {
            print!("{}", cfg.to_toml()?);
            return Ok(());
        }
        let run_dir = path(m, "out").unwrap_or_else(|| default_run_dir(&cfg.name));
        let opts = TrainOptions {
            run_dir,
            data_dir,
            cache_dir,
            device,
            quiet,
        };
        Trainer::new(cfg, opts)?
    };
    jem_train::interrupt::install().context("installing the SIGINT/SIGTERM handlers")?;
    let summary = trainer.run()?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if jem_train::interrupt::requested() {
        // the checkpoint is written; say "interrupted" to scripts the way shells do (after
        // the trainer's drop has released the run folder's lock)
        drop(trainer);
        std::process::exit(130);
    }
    Ok(())
}
