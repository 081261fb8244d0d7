//! `cargo xtask reproduce <quick|fashion-mnist|cifar10|cifar100> [--ablations] [--dry-run]
//! [--device D] [--out DIR] [--data-dir DIR] [--jem PATH] [--release] [--fid-chains]`: plans the
//! runs of a reproduction (`--fid-chains`: also FID of fresh chains beside the reference's
//! replay-buffer FID),
//! runs train -> eval stages (each skipped when its result exists, a training run resumed
//! when it was interrupted) and writes `report.md` and `report.html`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use jem_train::TrainConfig;
use jem_train::config::SamKind;

use crate::paper::PaperFile;
use crate::report;

/// One model of the plan.
pub struct Model {
    /// Folder name under the output folder (the preset's file stem).
    pub key: String,
    /// The preset's path under `configs/` without `.toml` (`cifar10/ablation/jem-k10`).
    pub preset: String,
    /// The preset.
    pub config: PathBuf,
    /// The resolved preset.
    pub cfg: TrainConfig,
}

/// A stage: a `jem` command whose result file marks it done.
pub struct Stage {
    /// `<model>/<task>`.
    pub name: String,
    /// Arguments of `jem`.
    pub args: Vec<String>,
    /// Written by the stage when it completes.
    pub done_when: PathBuf,
    /// Estimated seconds on the chosen device.
    pub estimate_s: f64,
}

struct Args {
    target: String,
    ablations: bool,
    dry_run: bool,
    device: String,
    out: PathBuf,
    data_dir: Option<PathBuf>,
    jem: Option<PathBuf>,
    release: bool,
    fid_chains: bool,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        target: String::new(),
        ablations: false,
        dry_run: false,
        device: "cpu".into(),
        out: PathBuf::new(),
        data_dir: None,
        jem: None,
        release: false,
        fid_chains: false,
    };
    let mut it = args.iter();
    while let Some(x) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match x.as_str() {
            "--ablations" => a.ablations = true,
            "--dry-run" => a.dry_run = true,
            "--release" => a.release = true,
            "--fid-chains" => a.fid_chains = true,
            "--device" => a.device = value("--device")?,
            "--out" => a.out = PathBuf::from(value("--out")?),
            "--data-dir" => a.data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "--jem" => a.jem = Some(PathBuf::from(value("--jem")?)),
            t if !t.starts_with('-') && a.target.is_empty() => a.target = t.to_string(),
            other => bail!("unknown argument `{other}`"),
        }
    }
    if !["quick", "fashion-mnist", "cifar10", "cifar100"].contains(&a.target.as_str()) {
        bail!(
            "usage: cargo xtask reproduce <quick|fashion-mnist|cifar10|cifar100> [--ablations] \
             [--dry-run] [--device cpu|cuda:N] [--out DIR] [--data-dir DIR] [--jem PATH] [--release] \
             [--fid-chains]"
        );
    }
    if a.out.as_os_str().is_empty() {
        a.out = PathBuf::from("reproductions").join(&a.target);
    }
    Ok(a)
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The presets of a target: for CIFAR, every preset a row of the paper's tables names
/// (`configs/paper-numbers.toml`; the ablation tables' only with `ablations`); for the
/// Fashion-MNIST targets, SADA-JEM and the softmax baseline.
pub fn presets(target: &str, ablations: bool) -> Result<Vec<String>> {
    Ok(match target {
        "quick" => vec![
            "fashion-mnist-quick/sadajem".into(),
            "fashion-mnist-quick/softmax".into(),
        ],
        "fashion-mnist" => vec![
            "fashion-mnist/sadajem-wrn10-2".into(),
            "fashion-mnist/softmax-wrn10-2".into(),
        ],
        _ => PaperFile::load(&paper_file())?.presets_of(target, ablations),
    })
}

/// `configs/paper-numbers.toml`.
pub fn paper_file() -> PathBuf {
    root().join("configs/paper-numbers.toml")
}

/// Loads the presets of a plan; their keys (file stems, the output folders) must differ.
pub fn load_models(presets: &[String]) -> Result<Vec<Model>> {
    let mut models: Vec<Model> = Vec::new();
    for p in presets {
        let config = crate::paper::preset_file(&root().join("configs"), p);
        let cfg = TrainConfig::load(&config, &[])
            .with_context(|| format!("preset {}", config.display()))?;
        let key = crate::tables::key_of(p).to_string();
        if let Some(other) = models.iter().find(|m| m.key == key) {
            bail!(
                "presets {} and {p} would share the output folder {key}",
                other.preset
            );
        }
        models.push(Model {
            key,
            preset: p.clone(),
            config,
            cfg,
        });
    }
    Ok(models)
}

/// Multiply-adds of one forward pass of a WRN-depth-width on one image of `side` pixels
/// (pre-activation blocks: the first convolution of a block at the input resolution, the
/// stride in the second, 1x1 shortcuts where the width changes).
pub fn wrn_macs(depth: usize, width: usize, channels: usize, side: usize) -> f64 {
    let n = depth.saturating_sub(4) / 6;
    let conv = |k: usize, cin: usize, cout: usize, s: usize| (k * k * cin * cout * s * s) as f64;
    let mut macs = conv(3, channels, 16, side);
    let (mut cin, mut s_in) = (16, side);
    for (stage, w) in [16 * width, 32 * width, 64 * width].into_iter().enumerate() {
        let s_out = side >> stage;
        for _ in 0..n {
            macs += conv(3, cin, w, s_in) + conv(3, w, w, s_out);
            if cin != w {
                macs += conv(1, cin, w, s_out);
            }
            (cin, s_in) = (w, s_out);
        }
    }
    macs
}

/// A rough duration of a training run in seconds: FLOPs per iteration (forward + backward
/// = 3 forwards; SAM doubles the classifier and density passes; K SGLD steps on the p(x)
/// batch) over an effective throughput: on the CPU calibrated on a measured WRN-10-2 run of
/// this project (0.24 it/s on 2 cores, scaled by the cores here); a GPU assumed to sustain
/// 30 TFLOP/s in f32 (an H100/H200-class card; a guess, not a measurement).
pub fn estimate_train_seconds(cfg: &TrainConfig, train_images: usize, gpu: bool) -> f64 {
    let side = cfg.data.pad_to.unwrap_or(32);
    let channels = if cfg
        .dataset()
        .map(|d| d.as_str().contains("mnist"))
        .unwrap_or(false)
    {
        1
    } else {
        3
    };
    let macs = wrn_macs(cfg.model.depth, cfg.model.width, channels, side);
    let per_iter = |cfg: &TrainConfig| {
        let sam = if cfg.optim.sam == SamKind::None {
            1.0
        } else {
            2.0
        };
        let clf = cfg.data.clf_batch_size as f64;
        let (px, k) = if cfg.loss.px > 0.0 {
            (cfg.data.px_batch_size as f64, cfg.sampler.steps as f64)
        } else {
            (0.0, 0.0)
        };
        6.0 * macs * (sam * (clf + 2.0 * px) + k * px)
    };
    let iters =
        cfg.schedule.epochs as f64 * train_images as f64 / cfg.data.clf_batch_size.max(1) as f64;
    // calibration: WRN-10-2, 1 x 32 x 32, batches 32 / 32, K = 5, SAM: 0.239 it/s here
    let reference_flops = 6.0 * wrn_macs(10, 2, 1, 32) * (2.0 * (32.0 + 64.0) + 5.0 * 32.0);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let flops_per_s = if gpu {
        30e12
    } else {
        reference_flops * 0.239 * cores / 2.0
    };
    iters * per_iter(cfg) / flops_per_s
}

fn train_images(cfg: &TrainConfig) -> usize {
    let total: usize = match cfg.data.dataset.as_str() {
        "fashion-mnist-quick" => 10_000,
        "fashion-mnist" | "mnist" => 60_000,
        "svhn" => 73_257,
        _ => 50_000,
    };
    total.saturating_sub(cfg.data.valid_size)
}

/// The stages of one model, in order.
pub fn model_stages(
    m: &Model,
    target: &str,
    out: &Path,
    data_args: &[String],
    gpu: bool,
    fid_chains: bool,
) -> Vec<Stage> {
    let run = out.join(&m.key).join("run");
    let eval = out.join(&m.key).join("eval");
    let s = |p: &Path| p.display().to_string();
    let ck = run.join("last.safetensors");
    let mut stages = vec![Stage {
        name: format!("{}/train", m.key),
        args: {
            let mut a = if run.join("config.toml").exists() {
                vec!["train".into(), "--resume".into(), s(&run)]
            } else {
                vec![
                    "train".into(),
                    "--config".into(),
                    s(&m.config),
                    "--out".into(),
                    s(&run),
                ]
            };
            a.extend(data_args.iter().cloned());
            a
        },
        done_when: run.join("summary.json"),
        estimate_s: estimate_train_seconds(&m.cfg, train_images(&m.cfg), gpu),
    }];
    let quick = target == "quick" || target == "fashion-mnist";
    let mut eval_stage = |task: &str, file: &str, extra: &[&str], estimate_s: f64| {
        let mut args = vec![
            "eval".to_string(),
            task.to_string(),
            "--checkpoint".into(),
            s(&ck),
            "--out".into(),
            s(&eval),
        ];
        args.extend(data_args.iter().cloned());
        args.extend(extra.iter().map(|x| x.to_string()));
        stages.push(Stage {
            name: format!("{}/{}", m.key, file.trim_end_matches(".json")),
            args,
            done_when: eval.join(file),
            estimate_s,
        });
    };
    // the quick target's stages as measured on a 2-core CPU (a fresh clone, December 2026)
    let small = target == "quick";
    let est = |small_s: f64, other_s: f64| if small { small_s } else { other_s };
    eval_stage("accuracy", "accuracy.json", &[], est(5.0, 60.0));
    eval_stage("calibration", "calibration.json", &[], est(5.0, 60.0));
    eval_stage(
        "ood",
        "ood.json",
        match target {
            // the embedded test split has 2,000 images; 1,000 per set keep the stage short
            "quick" => &["--max-images", "1000"],
            "fashion-mnist" => &["--max-images", "2000"],
            _ => &[],
        },
        est(20.0, 300.0),
    );
    if m.cfg.loss.px > 0.0 {
        let steps = if quick { "100" } else { "1000" };
        eval_stage(
            "generate",
            "generate.json",
            &[
                "--chains",
                "100",
                "--steps",
                steps,
                "--per-class",
                "10",
                "--cond-steps",
                steps,
            ],
            est(60.0, if quick { 300.0 } else { 1800.0 }),
        );
    }
    if !quick && m.cfg.loss.px > 0.0 {
        eval_stage("fid", "fid.json", &[], 1800.0);
        eval_stage("is", "is.json", &[], 600.0);
        if fid_chains {
            // 1,000 chains of 1,000 steps: about ten times the generate stage
            eval_stage("fid", "fid-chains.json", &["--source", "chains"], 18000.0);
        }
    }
    stages
}

/// `cargo xtask reproduce ...`.
pub fn run(args: &[String]) -> Result<()> {
    let a = parse(args)?;
    let root = root();
    let gpu = a.device.starts_with("cuda");
    let mut data_args = Vec::new();
    if let Some(d) = &a.data_dir {
        data_args.extend(["--data-dir".to_string(), d.display().to_string()]);
    }
    data_args.extend(["--device".to_string(), a.device.clone()]);
    let models = load_models(&presets(&a.target, a.ablations)?)?;
    let mut stages: Vec<Stage> = models
        .iter()
        .flat_map(|m| model_stages(m, &a.target, &a.out, &data_args, gpu, a.fid_chains))
        .collect();
    // one robustness figure and one landscape figure with every model overlaid
    let cks: Vec<String> = models
        .iter()
        .map(|m| {
            a.out
                .join(&m.key)
                .join("run/last.safetensors")
                .display()
                .to_string()
        })
        .collect();
    let quick = a.target == "quick" || a.target == "fashion-mnist";
    let overlay = |task: &str, extra: &[&str], estimate_s: f64| {
        let mut args = vec![
            "eval".to_string(),
            task.to_string(),
            "--checkpoint".into(),
            cks[0].clone(),
            "--out".into(),
            a.out.join(task).display().to_string(),
        ];
        args.extend(extra.iter().map(|x| x.to_string()));
        if cks.len() > 1 {
            args.extend(["--compare".into(), cks[1..].join(",")]);
        }
        args.extend(data_args.iter().cloned());
        Stage {
            name: format!("all/{task}"),
            args,
            done_when: a.out.join(task).join(format!("{task}.json")),
            estimate_s: estimate_s * models.len() as f64,
        }
    };
    stages.push(if quick {
        overlay(
            "robustness",
            &[
                "--images", "200", "--steps", "10", "--eps", "1,2,4,8", "--norm", "linf",
            ],
            15.0,
        )
    } else {
        overlay("robustness", &["--norm", "linf,l2"], 3600.0)
    });
    let landscape_s = if a.target == "quick" { 5.0 } else { 60.0 };
    stages.push(overlay("landscape", &["--points", "21"], landscape_s));

    let total: f64 = stages
        .iter()
        .filter(|s| !s.done_when.exists())
        .map(|s| s.estimate_s)
        .sum();
    println!(
        "reproduce {}: {} models, {} stages into {} (device {}; rough estimate of what is left: {})",
        a.target,
        models.len(),
        stages.len(),
        a.out.display(),
        a.device,
        human(total)
    );
    for s in &stages {
        let state = if s.done_when.exists() { "done" } else { "todo" };
        println!(
            "  [{state}] {:<28} ~{:>9}   jem {}",
            s.name,
            human(s.estimate_s),
            s.args.join(" ")
        );
    }
    if matches!(a.target.as_str(), "cifar10" | "cifar100") {
        print!(
            "{}",
            rows_plan(&PaperFile::load(&paper_file())?, &a.target, &models)
        );
    }
    if a.dry_run {
        return Ok(());
    }
    if matches!(a.target.as_str(), "cifar10" | "cifar100") {
        let data_dir = a
            .data_dir
            .clone()
            .unwrap_or_else(|| jem_data::resolve_data_dir(None));
        let name: jem_data::DatasetName = a.target.parse()?;
        if !name.is_present(&data_dir) {
            bail!(
                "{} is not in {}: run `jem data fetch {}` (and svhn, cifar100/cifar10, celeba for \
                 the OOD table) first",
                a.target,
                data_dir.display(),
                a.target
            );
        }
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut timings = report::Timings::load(&a.out);
    let jem = match &a.jem {
        Some(p) => p.clone(),
        None => {
            let t0 = Instant::now();
            let jem = build_jem(
                &root,
                gpu,
                a.release || matches!(a.target.as_str(), "cifar10" | "cifar100"),
            )?;
            timings.record(report::BUILD_STAGE, t0.elapsed().as_secs_f64(), true);
            jem
        }
    };
    for s in &stages {
        if s.done_when.exists() {
            continue;
        }
        eprintln!("==> {}", s.name);
        let t0 = Instant::now();
        let status = Command::new(&jem)
            .args(&s.args)
            .status()
            .with_context(|| format!("running {}", jem.display()))?;
        let secs = t0.elapsed().as_secs_f64();
        timings.record(&s.name, secs, status.success());
        timings.save(&a.out)?;
        if !status.success() {
            eprintln!(
                "==> {} failed after {}; continuing with the other stages",
                s.name,
                human(secs)
            );
        }
    }
    let order: Vec<String> = stages.iter().map(|s| s.name.clone()).collect();
    let report = report::write(&a.out, &a.target, &models, &timings, &order, &a.device)?;
    println!("report: {}", report.display());
    Ok(())
}

/// Every row of the paper's tables for `target` and the preset of this plan that reproduces
/// it, one line each.
pub fn rows_plan(paper: &PaperFile, target: &str, models: &[Model]) -> String {
    let mut s = String::from("rows of the paper's tables and their presets:\n");
    for t in paper.tables_of(target) {
        s.push_str(&format!("  {}\n", t.title));
        for r in &t.row {
            let preset = match &r.preset {
                None => "no preset (a published number only)".to_string(),
                Some(p) if models.iter().any(|m| &m.preset == p) => p.clone(),
                Some(p) => format!("{p} (not in this plan: --ablations)"),
            };
            s.push_str(&format!("    {:<24} -> {preset}\n", r.label));
        }
    }
    s
}

/// Builds `jem`: in the dev profile by default, whose dependencies (optimized, see the
/// workspace's Cargo.toml) `cargo xtask` has just compiled, so a fresh clone compiles them
/// once; in the release profile (about 10 % faster training, a second full compilation) with
/// `--release` and for the CIFAR targets, whose runs take hours.
pub(crate) fn build_jem(root: &Path, gpu: bool, release: bool) -> Result<PathBuf> {
    let mut cmd = Command::new(crate::cargo());
    cmd.current_dir(root).args(["build", "--bin", "jem"]);
    if release {
        cmd.arg("--release");
    }
    if gpu {
        cmd.args(["--features", "cuda"]);
    }
    eprintln!(
        "==> cargo build --bin jem{}{}",
        if release { " --release" } else { "" },
        if gpu { " --features cuda" } else { "" }
    );
    if !cmd.status().context("running cargo build")?.success() {
        bail!("building jem failed");
    }
    let profile = if release { "release" } else { "debug" };
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"));
    Ok(target_dir.join(profile).join("jem"))
}

/// `1 h 02 min`, `3 min 10 s`, `12 s`.
pub fn human(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_of_every_target_loads_and_plans() {
        for (target, n, with_ablations) in [
            ("quick", 2, 2),
            ("fashion-mnist", 2, 2),
            ("cifar10", 9, 23),
            ("cifar100", 9, 9),
        ] {
            assert_eq!(presets(target, false).unwrap().len(), n, "{target}");
            let all = presets(target, true).unwrap();
            assert_eq!(all.len(), with_ablations, "{target}");
            for m in load_models(&all).unwrap() {
                let stages = model_stages(&m, target, Path::new("/nonexistent"), &[], false, true);
                assert_eq!(stages[0].name, format!("{}/train", m.key));
                assert!(
                    stages
                        .iter()
                        .all(|s| s.estimate_s > 0.0 && s.estimate_s.is_finite())
                );
                let names: Vec<&str> = stages
                    .iter()
                    .map(|s| s.name.rsplit('/').next().unwrap())
                    .collect();
                for task in ["accuracy", "calibration", "ood"] {
                    assert!(names.contains(&task), "{}: {names:?}", m.preset);
                }
                assert_eq!(
                    names.contains(&"generate"),
                    m.cfg.loss.px > 0.0,
                    "{}",
                    m.preset
                );
                let cifar = target.starts_with("cifar");
                assert_eq!(
                    names.contains(&"fid-chains"),
                    cifar && m.cfg.loss.px > 0.0,
                    "{}",
                    m.preset
                );
            }
        }
    }

    /// The dry run's list of rows names every row of Tables 5 and 6 with its preset.
    #[test]
    fn the_plan_lists_every_ablation_row_with_its_preset() {
        let paper = PaperFile::load(&paper_file()).unwrap();
        let models = load_models(&presets("cifar10", true).unwrap()).unwrap();
        let text = rows_plan(&paper, "cifar10", &models);
        for t in paper.table.iter().filter(|t| t.target == "cifar10") {
            assert!(text.contains(&t.title), "{}", t.title);
        }
        let line = |label: &str, preset: &str| format!("    {label:<24} -> {preset}\n");
        for (label, preset) in [
            ("JEM++ w/o DA + L2*", "cifar10/ablation/jempp-noda-l2"),
            ("ASAM (rho = 8)", "cifar10/ablation/sadajem-asam-rho8"),
            ("SAM (rho = 0.2)", "cifar10/sadajem-k10"),
            ("VERA [18]", "no preset (a published number only)"),
        ] {
            assert!(text.contains(&line(label, preset)), "{label}: {text}");
        }
        assert!(!text.contains("not in this plan"), "{text}");
        let main = load_models(&presets("cifar10", false).unwrap()).unwrap();
        let text = rows_plan(&paper, "cifar10", &main);
        assert!(
            text.contains("cifar10/ablation/jem-k10 (not in this plan: --ablations)"),
            "{text}"
        );
    }

    #[test]
    fn estimates_scale_with_the_model_and_the_device() {
        // WRN-28-10 at 32x32: `jem model summary --arch wrn-28-10` says 5.954 G multiply-adds
        let macs = wrn_macs(28, 10, 3, 32);
        assert!((macs / 5.954e9 - 1.0).abs() < 0.01, "{macs:e}");
        let load = |p: &str| TrainConfig::load(&root().join("configs").join(p), &[]).unwrap();
        let sada = load("cifar10/sadajem.toml");
        let quick = load("fashion-mnist-quick/sadajem.toml");
        let (cpu, gpu) = (
            estimate_train_seconds(&sada, 45_000, false),
            estimate_train_seconds(&sada, 45_000, true),
        );
        assert!(cpu > 100.0 * gpu && gpu > 3600.0, "{cpu} {gpu}");
        assert!(estimate_train_seconds(&quick, 9_000, false) < 3600.0);
        assert_eq!(human(59.4), "59 s");
        assert_eq!(human(3725.0), "1 h 02 min");
    }

    #[test]
    fn arguments_are_checked() {
        assert!(parse(&["imagenet".into()]).is_err());
        assert!(parse(&["quick".into(), "--bogus".into()]).is_err());
        let a = parse(&[
            "quick".into(),
            "--dry-run".into(),
            "--device".into(),
            "cuda:0".into(),
        ])
        .unwrap();
        assert!(a.dry_run && a.device == "cuda:0" && a.out.ends_with("reproductions/quick"));
    }
}
