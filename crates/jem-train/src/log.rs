//! Run logs: JSON lines appended to files, and progress on the terminal.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use jem_io::progress::{Progress, ProgressMode};
use serde::Serialize;

use crate::{Result, TrainError};

/// One line of `train.jsonl`: means over the iterations since the previous line. A term the
/// objective does not compute is `None` (JSON `null`), never a zero: the energies when
/// `loss.px == 0` (softmax baselines), cross-entropy and accuracy when `loss.pyx == 0`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainRecord {
    /// Iterations completed.
    pub iteration: u64,
    /// Epoch (fractional).
    pub epoch: f64,
    /// Mean energy of the positive batches.
    pub e_pos: Option<f64>,
    /// Mean energy of the negatives.
    pub e_neg: Option<f64>,
    /// `e_pos - e_neg`.
    pub e_diff: Option<f64>,
    /// Cross-entropy of the labelled batches.
    pub ce: Option<f64>,
    /// Accuracy on the labelled batches.
    pub acc: Option<f64>,
    /// The whole loss.
    pub loss: f64,
    /// Learning rate of the last iteration.
    pub lr: f64,
    /// Training speed.
    pub iters_per_s: f64,
    /// Training speed in labelled images.
    pub images_per_s: f64,
    /// Training minutes so far.
    pub train_minutes: f64,
}

impl TrainRecord {
    /// The record as a JSON object.
    pub fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|source| TrainError::Json {
            what: "train.jsonl".into(),
            source,
        })
    }

    /// The progress message (terms that are not computed are left out).
    pub fn progress_line(&self, stop: u64, eta_minutes: f64) -> String {
        let mut s = format!("iter {}/{stop} loss {:.3}", self.iteration, self.loss);
        let terms = [
            ("ce", self.ce),
            ("acc", self.acc),
            ("E+", self.e_pos),
            ("E-", self.e_neg),
        ];
        for (name, v) in terms {
            if let Some(v) = v {
                s.push_str(&format!(" {name} {v:.3}"));
            }
        }
        s.push_str(&format!(
            " lr {:.4} {:.2} it/s ETA {eta_minutes:.0} min",
            self.lr, self.iters_per_s
        ));
        s
    }
}

/// Appends JSON objects, one per line, flushing each.
pub struct JsonLines {
    path: PathBuf,
}

impl JsonLines {
    /// A log at `path` (created on first write).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Appends one record.
    pub fn write(&self, value: &serde_json::Value) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        writeln!(f, "{value}").map_err(|e| TrainError::io(&self.path, e))
    }

    /// Reads every record (skipping a torn last line).
    pub fn read(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Progress display: the workspace's bar ([`jem_io::progress`]) with rate and ETA on a
/// terminal; otherwise training's own log lines (loss, energies, learning rate), which say
/// more than a plain progress line would.
pub struct Reporter {
    bar: Progress,
}

impl Reporter {
    /// A reporter for `total` iterations starting at `done`.
    pub fn new(total: u64, done: u64, quiet: bool) -> Self {
        let mode = if !quiet && std::io::stderr().is_terminal() {
            ProgressMode::Auto
        } else {
            ProgressMode::Hidden
        };
        Self {
            bar: Progress::new("train", total, "it", mode).with_start(done),
        }
    }

    /// Moves to `iteration` with a status message (`log` = also a plain line when there is
    /// no bar).
    pub fn update(&self, iteration: u64, msg: &str, log: bool) {
        if self.bar.is_bar() {
            self.bar.set_position(iteration);
            self.bar.set_message(msg);
        } else if log {
            eprintln!("{msg}");
        }
    }

    /// Prints a line above the bar (or plainly).
    pub fn println(&self, msg: &str) {
        if self.bar.is_bar() {
            self.bar.println(msg);
        } else {
            eprintln!("{msg}");
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(energies: bool) -> TrainRecord {
        let e = |v: f64| energies.then_some(v);
        TrainRecord {
            iteration: 20,
            epoch: 0.5,
            e_pos: e(-1.5),
            e_neg: e(-1.0),
            e_diff: e(-0.5),
            ce: Some(2.25),
            acc: Some(0.125),
            loss: 1.75,
            lr: 0.1,
            iters_per_s: 3.0,
            images_per_s: 96.0,
            train_minutes: 0.1,
        }
    }

    #[test]
    fn terms_that_are_not_computed_are_null_and_left_out_of_the_progress_line() {
        let softmax = record(false);
        let v = softmax.to_json().unwrap();
        for k in ["e_pos", "e_neg", "e_diff"] {
            assert!(v[k].is_null(), "{k}: {v}");
        }
        assert_eq!(v["ce"], 2.25);
        let line = softmax.progress_line(40, 2.0);
        assert_eq!(
            line,
            "iter 20/40 loss 1.750 ce 2.250 acc 0.125 lr 0.1000 3.00 it/s ETA 2 min"
        );
        let jem = record(true);
        assert_eq!(jem.to_json().unwrap()["e_pos"], -1.5);
        let line = jem.progress_line(40, 2.0);
        assert!(line.contains("E+ -1.500 E- -1.000"), "{line}");
    }
}
