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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("make-quick-data") => quick_data::run(&args[1..]),
        Some("reproduce") => reproduce::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("check-presets") => paper::check_presets_command(),
        Some("check-cuda") => gpu::check_cuda(&args[1..]),
        Some("gpu-check") => gpu::gpu_check(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <test [cargo test args] | make-quick-data [--from DIR] | \
                 reproduce <quick|fashion-mnist|cifar10|cifar100> [--ablations] [--dry-run] \
                 [--device D] [--out DIR] [--only STAGE,...] [--from STAGE] | check-presets | \
                 check-cuda [--cudnn] [--build] | \
                 gpu-check [--cudnn] [--out DIR] [--jem PATH] | bench [--rounds N] [--only a,b,c,d] | \
                 fuzz [--seconds N] [--seed S] [TARGET...]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
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
fn fuzz(args: &[String]) -> Result<()> {
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

fn test(extra: &[String]) -> Result<()> {
    let each = extra.iter().any(|a| a == "--each");
    let extra: Vec<String> = extra.iter().filter(|a| *a != "--each").cloned().collect();
    let mut total = [0u64; 3];
    let mut failed_crates = Vec::new();
    if each {
        for member in members()? {
            if !cargo_test(&["-p", &member], &extra, &mut total)? {
                failed_crates.push(member);
            }
        }
    } else if !cargo_test(&["--workspace", "--no-fail-fast"], &extra, &mut total)? {
        failed_crates.push("the workspace (see the failures above)".into());
    }
    // the crates' lean builds, as a user who turns the default features off gets them
    for (krate, args) in LEAN_BUILDS {
        let mut a = vec!["-p", krate, "--no-default-features"];
        a.extend_from_slice(args);
        if !cargo_test(&a, &extra, &mut total)? {
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
