//! Project automation. `cargo xtask <task>`:
//!
//! - `test [--each]`: runs the workspace's tests in one `cargo test --workspace` and prints one
//!   summary line; `--each` runs each member on its own (`cargo test -p <member>`), which also
//!   proves that each crate builds alone.
//! - `make-quick-data [--from DIR]`: rebuilds the embedded Fashion-MNIST / MNIST subsets
//!   from the official-format files (default `../shared/data`).
//! - `bench [--rounds N] [--only a,b,c,d] ...`: our CPU images/s beside PyTorch's
//!   (`../shared/bench/torch_baseline.py`), measures (a)-(d), alternating, one ratio table.
//! - `reproduce <quick|fashion-mnist|cifar10|cifar100> [--ablations] [--dry-run] ...`: the
//!   train -> eval stages of a reproduction (idempotent, resumable) and its report.
//! - `check-presets`: every preset of the paper's rows against the row's settings
//!   (`configs/paper-numbers.toml`); exits non-zero when one drifts.
//! - `check-cuda [--cudnn] [--build]`: compiles `jem` with CUDA on a machine without a GPU.
//! - `gpu-check [--cudnn]`: builds the CUDA `jem` and packs the GPU check into `gpu-check/`.

mod bench;
mod flops;
mod gpu;
mod html;
mod paper;
mod quick_data;
mod report;
mod reproduce;
mod results;
mod tables;

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Project automation for the sadajem workspace.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// The workspace's tests in one `cargo test`, then the lean builds (crates without
    /// their default features); one summary line.
    Test(TestArgs),
    /// Rebuild the embedded quick data sets from the official-format files.
    MakeQuickData(quick_data::QuickDataArgs),
    /// Train and evaluate a reproduction's models, then write its report (resumable).
    Reproduce(reproduce::Args),
    /// Our CPU speed beside PyTorch's, alternating rounds, one ratio table.
    Bench(bench::BenchArgs),
    /// Every preset of the paper's rows against the row's settings; non-zero on a drift.
    CheckPresets,
    /// Compile `jem` with CUDA on a machine without a GPU.
    CheckCuda(gpu::CheckCudaArgs),
    /// Build the CUDA `jem` and pack the GPU check into one folder.
    GpuCheck(gpu::GpuCheckArgs),
    /// Run the parsers' fuzz targets (the `jem-fuzz` binary, in release).
    Fuzz(FuzzArgs),
}

/// `cargo xtask test`.
#[derive(clap::Args, Debug)]
struct TestArgs {
    /// Test each member on its own (`cargo test -p <member>`), which proves that each
    /// crate builds alone (slower: dependencies built once per feature set).
    #[arg(long)]
    each: bool,
    /// Arguments passed on to every `cargo test` (e.g. `-- --nocapture`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CARGO_TEST_ARGS"
    )]
    cargo_args: Vec<String>,
}

/// `cargo xtask fuzz`.
#[derive(clap::Args, Debug)]
struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 60.0, value_name = "N")]
    seconds: f64,
    /// Seed of the input mutations.
    #[arg(long, default_value_t = 1, value_name = "S")]
    seed: u64,
    /// The targets to run (all without any).
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test(a) => test(a.each, &a.cargo_args),
        Task::MakeQuickData(a) => quick_data::run(a),
        Task::Reproduce(a) => reproduce::run(a),
        Task::Bench(a) => bench::run(a),
        Task::CheckPresets => paper::check_presets_command(),
        Task::CheckCuda(a) => gpu::check_cuda(a),
        Task::GpuCheck(a) => gpu::gpu_check(a),
        Task::Fuzz(a) => fuzz(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `args` as the arguments of `task` (tests of each task's arguments).
#[cfg(test)]
pub(crate) fn parse_task<T: clap::FromArgMatches>(task: &str, args: &[String]) -> Result<T> {
    let argv = ["cargo xtask", task].into_iter().map(String::from);
    let m = <Cli as clap::CommandFactory>::command()
        .try_get_matches_from(argv.chain(args.iter().cloned()))?;
    let (_, sub) = m.subcommand().context("a task")?;
    Ok(T::from_arg_matches(sub)?)
}

pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Names of the workspace members, from `cargo metadata`.
fn members() -> Result<Vec<String>> {
    let out = Command::new(cargo())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut names: Vec<String> = meta["packages"]
        .as_array()
        .context("no packages in cargo metadata")?
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// Counts of one `test result:` line of libtest.
fn parse_result(line: &str) -> Option<[u64; 3]> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let mut out = [0u64; 3];
    for part in rest.split(['.', ';']) {
        let mut it = part.split_whitespace();
        if let (Some(n), Some(word)) = (it.next(), it.next()) {
            let i = match word {
                "passed" => 0,
                "failed" => 1,
                "ignored" => 2,
                _ => continue,
            };
            out[i] = n.parse().ok()?;
        }
    }
    Some(out)
}

/// Crates whose `default-features = false` build is tested too: jem-metrics' math-only build
/// (no candle, linear algebra, zip or safetensors) and jem-data without downloads and JPEG
/// decoding (its library only: the download tests need the feature).
const LEAN_BUILDS: [(&str, &[&str]); 2] = [("jem-metrics", &[]), ("jem-data", &["--lib"])];

/// Runs `cargo test` with `args`, echoing its output, adding its result lines to `total`;
/// whether it succeeded.
fn cargo_test(args: &[&str], extra: &[String], total: &mut [u64; 3]) -> Result<bool> {
    let start = Instant::now();
    eprintln!("==> cargo test {}", args.join(" "));
    let mut child = Command::new(cargo())
        .arg("test")
        .args(args)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running cargo test {}", args.join(" ")))?;
    let stdout = child.stdout.take().context("no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(c) = parse_result(&line) {
            for k in 0..3 {
                total[k] += c[k];
            }
        }
    }
    let ok = child.wait()?.success();
    eprintln!(
        "==> {}: {} in {:.0?}",
        args.join(" "),
        if ok { "ok" } else { "FAILED" },
        start.elapsed()
    );
    Ok(ok)
}

/// `cargo xtask test [--each] [cargo test args]`: the whole workspace in one `cargo test`
/// (one build of the dependencies); with `--each`, every member on its own
/// (`cargo test -p <member>`), which also proves that each crate builds alone, at the price
/// of compiling the dependencies once per distinct feature set (several times candle).
/// `cargo xtask fuzz [--seconds N] [--seed S] [TARGET...]`: the `jem-fuzz` binary in release
/// (every parser for N seconds each, 60 by default; findings under `target/fuzz-findings/`).
fn fuzz(a: &FuzzArgs) -> Result<()> {
    let mut args = vec![
        "--seconds".to_string(),
        a.seconds.to_string(),
        "--seed".to_string(),
        a.seed.to_string(),
    ];
    args.extend(a.targets.iter().cloned());
    let status = Command::new(cargo())
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "jem-fuzz",
            "--bin",
            "jem-fuzz",
            "--",
        ])
        .args(args)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("jem-fuzz failed ({status}): a finding, or a bad argument");
    }
    Ok(())
}

fn test(each: bool, extra: &[String]) -> Result<()> {
    let mut total = [0u64; 3];
    let mut failed_crates = Vec::new();
    if each {
        for member in members()? {
            if !cargo_test(&["-p", &member], extra, &mut total)? {
                failed_crates.push(member);
            }
        }
    } else if !cargo_test(&["--workspace", "--no-fail-fast"], extra, &mut total)? {
        failed_crates.push("the workspace (see the failures above)".into());
    }
    // the crates' lean builds, as a user who turns the default features off gets them
    for (krate, args) in LEAN_BUILDS {
        let mut a = vec!["-p", krate, "--no-default-features"];
        a.extend_from_slice(args);
        if !cargo_test(&a, extra, &mut total)? {
            failed_crates.push(format!("{krate} without default features"));
        }
    }
    println!(
        "tests: {} passed, {} failed, {} skipped",
        total[0], total[1], total[2]
    );
    if !failed_crates.is_empty() {
        bail!("tests failed in: {}", failed_crates.join(", "));
    }
    Ok(())
}
