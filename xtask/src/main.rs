//! Project automation. `cargo xtask <task>`:
//!
//! - `test`: runs each workspace member's tests on its own (`cargo test -p <member>`), which
//!   also proves that each crate builds alone, and prints one summary line.
//! - `make-quick-data [--from DIR]`: rebuilds the embedded Fashion-MNIST / MNIST subsets
//!   from the official-format files (default `../shared/data`).
//! - `reproduce <quick|fashion-mnist|cifar10|cifar100> [--ablations] [--dry-run] ...`: the
//!   train -> eval stages of a reproduction (idempotent, resumable) and its report.

mod html;
mod quick_data;
mod report;
mod reproduce;
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
        _ => {
            eprintln!(
                "usage: cargo xtask <test [cargo test args] | make-quick-data [--from DIR] | \
                 reproduce <quick|fashion-mnist|cifar10|cifar100> [--ablations] [--dry-run] \
                 [--device D] [--out DIR]>"
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

fn test(extra: &[String]) -> Result<()> {
    let mut total = [0u64; 3];
    let mut failed_crates = Vec::new();
    for member in members()? {
        let start = Instant::now();
        eprintln!("==> cargo test -p {member}");
        let mut child = Command::new(cargo())
            .args(["test", "-p", &member])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running cargo test -p {member}"))?;
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
        let status = child.wait()?;
        eprintln!(
            "==> {member}: {} in {:.0?}",
            if status.success() { "ok" } else { "FAILED" },
            start.elapsed()
        );
        if !status.success() {
            failed_crates.push(member);
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
