//! `jem bench ...`: speed of the training building blocks on a device, and parity of a
//! device with the CPU (a thin layer over `jem_train::bench`).

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::{ArgMatches, Command};
use jem_train::bench::{self, BenchConfig, Measure, ParityConfig, ParityReport, Timing};
use serde_json::json;

use crate::args::{flag, opt, parsed, path, string};
use crate::train::parse_device;

/// Images of CIFAR-10's training set and epochs of the paper's runs, for the estimate.
const CIFAR_TRAIN: usize = 50_000;
const EPOCHS: usize = 200;

/// Options shared by the speed measures and the parity check.
fn size_args(cmd: Command, depth: &'static str, width: &'static str) -> Command {
    cmd.arg(opt("depth", "D", "WRN depth, 6n + 4").default_value(depth))
        .arg(opt("width", "K", "WRN widen factor").default_value(width))
        .arg(opt("classes", "N", "Classes").default_value("10"))
        .arg(
            opt(
                "batch-size",
                "N",
                "Shorthand for --batch-px N --batch-lab N",
            )
            .alias("batch"),
        )
        .arg(opt(
            "batch-px",
            "N",
            "Batch of the p(x) term and of the SGLD chains (the paper: 64)",
        ))
        .arg(opt("batch-lab", "N", "Labelled batch (the paper: 128)"))
        .arg(opt("sgld-steps", "K", "SGLD steps per iteration").default_value("5"))
        .arg(opt("rho", "R", "SAM radius").default_value("0.2"))
        .arg(opt("buffer-size", "N", "Chains in the replay buffer").default_value("10000"))
        .arg(opt("seed", "S", "Seed of weights, inputs and draws").default_value("1"))
        .arg(flag(
            "tf32",
            "Let cuBLAS run f32 matrix products in TF32 (candle's \
             set_gemm_reduced_precision_f32; no effect on the CPU)",
        ))
        .arg(flag(
            "json",
            "Print the results as one JSON object on stdout (the human lines go to stderr)",
        ))
        .arg(opt("out", "FILE", "Also write the results as JSON to FILE"))
}

/// The `jem bench` command tree.
pub fn command() -> Command {
    let speed = Command::new("bench")
        .about(
            "Images per second of a classifier step, an SGLD step and a full SADA-JEM \
             iteration (the paper's WRN-28-10 and batches by default); `jem bench parity` \
             compares a device with the CPU",
        )
        .args_conflicts_with_subcommands(true)
        .arg(opt("device", "DEVICE", "cpu (default) or cuda:N").default_value("cpu"))
        .arg(
            opt("measure", "WHAT", "What to time")
                .value_parser(clap::builder::PossibleValuesParser::new(
                    Measure::ALL.map(Measure::name).into_iter().chain(["all"]),
                ))
                .default_value("all"),
        )
        .arg(opt("iters", "N", "Timed iterations (the median is reported)").default_value("5"))
        .arg(opt("warmup", "N", "Untimed iterations first").default_value("2"))
        .arg(opt(
            "label",
            "TEXT",
            "A tag copied into the output (default: fp32 or tf32)",
        ));
    let parity = Command::new("parity")
        .about(
            "Runs a WRN forward/backward and one SADA-JEM iteration on --device and on \
             --reference from the same weights, batches and buffer; prints the largest \
             absolute and relative errors and PASS / FAIL (exit status 1 on FAIL)",
        )
        .arg(opt("device", "DEVICE", "Device checked, cuda:N or cpu").default_value("cuda:0"))
        .arg(opt("reference", "DEVICE", "Reference device").default_value("cpu"))
        .arg(opt(
            "tol",
            "REL",
            "Largest relative error that passes (default 1e-3; 3e-2 with --tf32)",
        ))
        .arg(opt(
            "floor",
            "EPS",
            "Perturbation of the images in the floor run (default 1e-6; 2e-4 with --tf32)",
        ))
        .arg(flag(
            "portable",
            "The checked side runs candle's own operations instead of the CPU kernels, as a \
             GPU does (with --device cpu: the GPU's computation, checked on the CPU)",
        ));
    size_args(speed, "28", "10").subcommand(size_args(parity, "16", "4"))
}

/// The sizes of the shared options.
fn sizes(m: &ArgMatches) -> Result<BenchConfig> {
    let d = BenchConfig::default();
    let batch: Option<usize> = parsed(m, "batch-size")?;
    Ok(BenchConfig {
        depth: parsed(m, "depth")?.unwrap_or(d.depth),
        width: parsed(m, "width")?.unwrap_or(d.width),
        classes: parsed(m, "classes")?.unwrap_or(d.classes),
        batch_px: parsed(m, "batch-px")?.or(batch).unwrap_or(d.batch_px),
        batch_lab: parsed(m, "batch-lab")?.or(batch).unwrap_or(d.batch_lab),
        sgld_steps: parsed(m, "sgld-steps")?.unwrap_or(d.sgld_steps),
        rho: parsed(m, "rho")?.unwrap_or(d.rho),
        buffer_size: parsed(m, "buffer-size")?.unwrap_or(d.buffer_size),
        seed: parsed(m, "seed")?.unwrap_or(d.seed),
        ..d
    })
}

/// Opens `--device` / `--reference` and applies `--tf32`.
fn device(m: &ArgMatches, name: &str) -> Result<(String, Device)> {
    let spec = string(m, name).unwrap_or_else(|| "cpu".into());
    let dev = parse_device(&spec)?;
    Ok((spec, dev))
}

fn set_tf32(m: &ArgMatches) -> bool {
    let tf32 = m.get_flag("tf32");
    candle_core::cuda::set_gemm_reduced_precision_f32(tf32);
    tf32
}

/// The results: printed on stdout with `--json`, written to `--out FILE` when given.
fn emit_json(m: &ArgMatches, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    if m.get_flag("json") {
        println!("{text}");
    }
    let Some(file) = path(m, "out") else {
        return Ok(());
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--out {}: creating {}", file.display(), dir.display()))?;
    }
    jem_data::fsutil::write_atomic(&file, (text + "\n").as_bytes())
        .with_context(|| format!("--out {}", file.display()))
}

/// The human lines: stdout, or stderr when stdout carries `--json`.
macro_rules! say {
    ($m:expr, $($t:tt)*) => {
        if $m.get_flag("json") {
            eprintln!($($t)*);
        } else {
            println!($($t)*);
        }
    };
}

pub fn run(m: &ArgMatches) -> Result<()> {
    if let Some(("parity", pm)) = m.subcommand() {
        return run_parity(pm);
    }
    let mut cfg = sizes(m)?;
    cfg.iters = parsed(m, "iters")?.unwrap_or(cfg.iters);
    cfg.warmup = parsed(m, "warmup")?.unwrap_or(cfg.warmup);
    let (spec, dev) = device(m, "device")?;
    let tf32 = set_tf32(m);
    let label = string(m, "label").unwrap_or_else(|| if tf32 { "tf32" } else { "fp32" }.into());
    let what = string(m, "measure").unwrap_or_else(|| "all".into());
    let measures: Vec<Measure> = match Measure::parse(&what) {
        Some(one) => vec![one],
        None if what == "all" => Measure::ALL.to_vec(),
        None => bail!(
            "--measure `{what}`: expected one of {} or all",
            Measure::ALL.map(Measure::name).join(", ")
        ),
    };
    let tag = format!("wrn{}-{}", cfg.depth, cfg.width);
    let mut timings: Vec<Timing> = Vec::new();
    for measure in measures {
        let t = bench::run_measure(&cfg, measure, &dev)
            .with_context(|| format!("jem bench --measure {} on {spec}", measure.name()))?;
        let phases: String = t
            .phases_ms
            .iter()
            .map(|(name, ms)| format!(" {name}_ms={ms:.1}"))
            .collect();
        say!(
            m,
            "ours {tag} {} device={spec} precision={label} batch={} images_per_s={:.2} \
             median_ms={:.1} min_ms={:.1} max_ms={:.1} iters={} warmup={}{phases}",
            t.measure,
            t.images_per_iter,
            t.images_per_s,
            t.median_ms,
            t.min_ms,
            t.max_ms,
            cfg.iters,
            cfg.warmup
        );
        timings.push(t);
    }
    let hours = timings
        .iter()
        .find(|t| t.measure == Measure::SadajemIter.name())
        .map(|t| bench::hours_per_run(t.median_ms, CIFAR_TRAIN, cfg.batch_lab, EPOCHS));
    let peak = peak_rss_mb();
    if let Some(mb) = peak {
        say!(m, "peak_rss_mb={mb:.0} (this process, all measures so far)");
    }
    if let Some(h) = hours {
        say!(
            m,
            "estimate: {h:.1} hours per {EPOCHS}-epoch CIFAR-10 run ({} iterations per epoch), \
             evaluations not counted",
            CIFAR_TRAIN.div_ceil(cfg.batch_lab)
        );
    }
    {
        let value = json!({
            "tool": "sadajem",
            "version": env!("CARGO_PKG_VERSION"),
            "device": spec,
            "precision": label,
            "tf32": tf32,
            "cuda_feature": cfg!(feature = "cuda"),
            "threads": rayon_threads(),
            "config": cfg,
            "results": timings,
            "hours_per_200_epochs_cifar10": hours,
            "peak_rss_mb": peak,
        });
        emit_json(m, &value)?;
    }
    Ok(())
}

/// CPU threads candle's and our kernels use (`RAYON_NUM_THREADS`, else the cores).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn run_parity(m: &ArgMatches) -> Result<()> {
    let sizes = sizes(m)?;
    let (spec, dev) = device(m, "device")?;
    let (ref_spec, reference) = device(m, "reference")?;
    let tf32 = set_tf32(m);
    let tol = parsed(m, "tol")?.unwrap_or(if tf32 { 3e-2 } else { 1e-3 });
    let portable = m.get_flag("portable");
    let floor = parsed(m, "floor")?.unwrap_or(if tf32 {
        bench::FLOOR_PERTURBATION_TF32
    } else {
        bench::FLOOR_PERTURBATION
    });
    let cfg = ParityConfig {
        sizes,
        tol,
        portable,
        floor,
    };
    let report: ParityReport = bench::parity(&cfg, &reference, &dev)
        .with_context(|| format!("jem bench parity --device {spec} --reference {ref_spec}"))?;
    let precision = if tf32 { "tf32" } else { "fp32" };
    say!(
        m,
        "parity wrn{}-{} batch_px={} batch_lab={} K={} {spec}{} vs {ref_spec} precision={precision} tol={tol:e}",
        cfg.sizes.depth,
        cfg.sizes.width,
        cfg.sizes.batch_px,
        cfg.sizes.batch_lab,
        cfg.sizes.sgld_steps,
        if portable { " (portable)" } else { "" }
    );
    for c in &report.checks {
        say!(
            m,
            "  {:<22} max_abs={:<10.3e} max_rel={:<10.3e} rel_l2={:<10.3e} floor_l2={:<10.3e} outliers={}/{} worst={:<28} {}",
            c.check,
            c.max_abs,
            c.max_rel,
            c.rel_l2,
            c.floor_l2,
            c.outliers,
            c.elements,
            c.worst,
            if c.pass { "PASS" } else { "FAIL" }
        );
    }
    say!(m, "parity: {}", if report.pass { "PASS" } else { "FAIL" });
    let mut value = serde_json::to_value(&report)?;
    value["device"] = json!(spec);
    value["reference"] = json!(ref_spec);
    value["precision"] = json!(precision);
    emit_json(m, &value)?;
    if !report.pass {
        bail!("parity of {spec} with {ref_spec} FAILED (tolerance {tol:e})");
    }
    Ok(())
}

/// Peak resident memory of this process in MiB (`VmHWM` of `/proc/self/status`; `None` where
/// there is no such file).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
