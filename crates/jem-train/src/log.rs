//! Run logs: JSON lines appended to files, and progress on the terminal.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::{Result, TrainError};

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
            .map_err(|e| TrainError::RunDir(format!("{}: {e}", self.path.display())))?;
        writeln!(f, "{value}")
            .map_err(|e| TrainError::RunDir(format!("{}: {e}", self.path.display())))
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

/// Progress display: a bar with ETA on a terminal, plain lines otherwise.
pub struct Reporter {
    bar: Option<ProgressBar>,
}

impl Reporter {
    /// A reporter for `total` iterations starting at `done`.
    pub fn new(total: u64, done: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            bar.set_position(done);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} it ({per_sec}, ETA {eta}) {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.reset_eta();
            bar
        });
        Self { bar }
    }

    /// Moves to `iteration` with a status message (`log` = also a plain line when there is
    /// no bar).
    pub fn update(&self, iteration: u64, msg: &str, log: bool) {
        match &self.bar {
            Some(b) => {
                b.set_position(iteration);
                b.set_message(msg.to_string());
            }
            None if log => eprintln!("{msg}"),
            None => {}
        }
    }

    /// Prints a line above the bar (or plainly).
    pub fn println(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
