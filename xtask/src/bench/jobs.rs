//! The whole-program measures of `cargo xtask bench`, each side a process of its own, timed
//! in alternation like (a)-(d):
//!
//! - (e) the real job: `jem train` on `configs/fashion-mnist/sadajem-wrn10-2.toml` against
//!   its PyTorch port `../shared/bench/fmnist_reference.py`, the same number of iterations,
//!   training time only (each side's own count), in labelled images per second;
//! - (f) FID Inception features: `jem metric stats` on the first Fashion-MNIST test images
//!   (the whole process: start-up, loading, features, statistics) against pytorch-fid's
//!   network on the same images (`bench/inception_speed.py`, its feature loop only), the same
//!   random weights on both sides (written by the script in pytorch-fid's layout).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{median, run_stdout};

/// The labelled batch of the real job's preset (images per iteration).
const REAL_JOB_BATCH: f64 = 64.0;

/// What the whole-program measures need.
pub(super) struct Jobs<'a> {
    /// This build of `jem`.
    pub jem: &'a Path,
    /// An earlier build timed in the same rounds.
    pub before: Option<&'a Path>,
    /// Python with torch, when there is one.
    pub python: Option<&'a str>,
    /// The repository.
    pub root: &'a Path,
    /// Data folder (Fashion-MNIST, MNIST).
    pub data_dir: PathBuf,
    /// Scratch folder for run folders, statistics and the weight file.
    pub scratch: PathBuf,
    /// Rounds.
    pub rounds: usize,
    /// Iterations of the real job per run.
    pub job_iters: usize,
    /// Images of the Inception measure.
    pub images: usize,
}

/// One table row from each side's per-round rates (images per second).
fn row(key: &str, what: &str, ours: Vec<f64>, torch: Vec<f64>, before: Vec<f64>) -> Value {
    let paired: Vec<f64> = ours.iter().zip(&torch).map(|(o, t)| o / t).collect();
    let before_paired: Vec<f64> = before.iter().zip(&torch).map(|(b, t)| b / t).collect();
    let (o, t, b) = (
        median(&mut ours.clone()),
        median(&mut torch.clone()),
        median(&mut before.clone()),
    );
    let lo = paired.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = paired.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    json!({
        "measure": key, "what": what,
        "ours_images_per_s": o, "torch_images_per_s": t,
        "ratio": o.zip(t).map(|(o, t)| o / t),
        "paired_ratios": paired,
        "paired_ratio_median": median(&mut paired.clone()),
        "paired_ratio_range": (!paired.is_empty()).then_some([lo, hi]),
        "before_images_per_s": b, "before_rounds": before,
        "before_ratio": b.zip(t).map(|(b, t)| b / t),
        "before_paired_ratio_median": median(&mut before_paired.clone()),
        "ours_rounds": ours, "torch_rounds": torch,
    })
}

/// The last line of `text` that parses as a JSON object with `"event": "end"`.
fn end_event(text: &str) -> Option<Value> {
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "end")
}

impl Jobs<'_> {
    /// One `jem train` run of the real job; its training images per second.
    fn train(&self, jem: &Path, run: &Path) -> Result<f64> {
        let _ = std::fs::remove_dir_all(run);
        let preset = self.root.join("configs/fashion-mnist/sadajem-wrn10-2.toml");
        let status = Command::new(jem)
            .arg("train")
            .arg("--config")
            .arg(&preset)
            .args(["--set", &format!("run.max_iters={}", self.job_iters)])
            .args([
                "--set",
                "run.eval_every_iters=0",
                "--set",
                "run.grid_every=0",
            ])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--out")
            .arg(run)
            .arg("--quiet")
            // the summary it prints is read from its file
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("running {} train", jem.display()))?;
        if !status.success() {
            bail!("{} train failed", jem.display());
        }
        let text = std::fs::read_to_string(run.join("summary.json"))
            .with_context(|| format!("reading {}", run.join("summary.json").display()))?;
        let s: Value = serde_json::from_str(&text)?;
        let ips = s["iters_per_second"]
            .as_f64()
            .context("summary.json has no iters_per_second")?;
        Ok(ips * REAL_JOB_BATCH)
    }

    /// One run of `fmnist_reference.py`; its training images per second.
    fn train_torch(&self, python: &str, out: &Path) -> Result<f64> {
        let script = self.root.join("../shared/bench/fmnist_reference.py");
        let mut cmd = Command::new(python);
        cmd.arg(&script)
            .args(["--max-iters", &self.job_iters.to_string()])
            .args([
                "--budget-min",
                "100000",
                "--eval-every-min",
                "100000",
                "--no-png",
            ])
            .arg("--out")
            .arg(out);
        let text = run_stdout(cmd, "{", "fmnist_reference.py")?;
        let end = end_event(&text).context("fmnist_reference.py printed no end event")?;
        let ips = end["it_per_s_train_only"]
            .as_f64()
            .context("fmnist_reference.py: no it_per_s_train_only")?;
        Ok(ips * REAL_JOB_BATCH)
    }

    /// (e): the real job, alternating PyTorch, ours, and the earlier build.
    pub(super) fn real_job(&self) -> Result<Value> {
        let (mut ours, mut torch, mut before) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..self.rounds {
            if let Some(py) = self.python {
                torch.push(self.train_torch(py, &self.scratch.join("torch-run"))?);
            }
            ours.push(self.train(self.jem, &self.scratch.join("run"))?);
            if let Some(b) = self.before {
                before.push(self.train(b, &self.scratch.join("before-run"))?);
            }
            eprintln!(
                "(e) round {}/{}: ours {:?} torch {:?}",
                round + 1,
                self.rounds,
                ours.last(),
                torch.last()
            );
        }
        Ok(row(
            "e",
            "the real job: SADA-JEM WRN-10-2 on Fashion-MNIST (labelled images/s, training only)",
            ours,
            torch,
            before,
        ))
    }

    /// One `jem metric stats` process on `weights`; images per second of the whole process.
    fn stats(&self, jem: &Path, weights: &Path) -> Result<f64> {
        let out = self.scratch.join("stats.safetensors");
        let _ = std::fs::remove_file(&out);
        let t0 = Instant::now();
        let status = Command::new(jem)
            .args([
                "metric",
                "stats",
                "--dataset",
                "fashion-mnist",
                "--split",
                "test",
            ])
            .args(["--max-images", &self.images.to_string()])
            .arg("--weights")
            .arg(weights)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .with_context(|| format!("running {} metric stats", jem.display()))?;
        if !status.success() {
            bail!("{} metric stats failed", jem.display());
        }
        Ok(self.images as f64 / t0.elapsed().as_secs_f64())
    }

    /// (f): Inception features; needs PyTorch for the shared weight file.
    pub(super) fn inception(&self) -> Result<Value> {
        let Some(py) = self.python else {
            bail!("(f) needs PyTorch with pytorch-fid: it writes the weights both sides run");
        };
        let script = self.root.join("bench/inception_speed.py");
        let weights = self.scratch.join("fid-random.pth");
        let mut cmd = Command::new(py);
        cmd.arg(&script).arg("--save-weights").arg(&weights);
        if !cmd
            .status()
            .context("running inception_speed.py")?
            .success()
        {
            bail!("inception_speed.py --save-weights failed");
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (mut ours, mut torch, mut before) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..self.rounds {
            let mut cmd = Command::new(py);
            cmd.arg(&script)
                .args(["--time", "--images", &self.images.to_string()])
                .args(["--threads", &threads.to_string()])
                .arg("--data")
                .arg(self.data_dir.join("fashion-mnist"));
            let text = run_stdout(cmd, "{", "inception_speed.py")?;
            let line: Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))?;
            torch.extend(line["images_per_s"].as_f64());
            ours.push(self.stats(self.jem, &weights)?);
            if let Some(b) = self.before {
                before.push(self.stats(b, &weights)?);
            }
            eprintln!(
                "(f) round {}/{}: ours {:?} torch {:?}",
                round + 1,
                self.rounds,
                ours.last(),
                torch.last()
            );
        }
        Ok(row(
            "f",
            "FID Inception features of Fashion-MNIST at 299x299 (ours: the whole jem metric \
             stats process; PyTorch: pytorch-fid's feature loop)",
            ours,
            torch,
            before,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_pair_the_rounds_and_the_end_event_is_found() {
        let r = row("e", "job", vec![30.0, 40.0], vec![20.0, 40.0], vec![10.0]);
        assert_eq!(r["ours_images_per_s"], 35.0);
        assert_eq!(r["paired_ratios"], json!([1.5, 1.0]));
        assert_eq!(r["paired_ratio_range"], json!([1.0, 1.5]));
        assert_eq!(r["before_paired_ratio_median"], 0.5);
        let ours_only = row("f", "x", vec![2.0], vec![], vec![]);
        assert!(ours_only["ratio"].is_null() && ours_only["paired_ratio_range"].is_null());
        let log =
            "{\"event\": \"eval\"}\nnot json\n{\"event\": \"end\", \"it_per_s_train_only\": 0.5}\n";
        assert_eq!(end_event(log).unwrap()["it_per_s_train_only"], 0.5);
        assert!(end_event("{\"event\": \"eval\"}").is_none());
    }
}
