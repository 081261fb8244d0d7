//! What one model of a reproduction produced: the JSON of its evaluation stages
//! (`<out>/<model>/eval/*.json`) and of its training run (`<out>/<model>/run/summary.json`),
//! read into the cells of the report's tables.
//!
//! A replay buffer lives only in its run's whole checkpoint, which a results folder does not
//! keep. When a model's buffer was lost before its FID was taken, a second run of the same
//! preset (same seed) can supply it: `<out>/<model>/rerun/eval/fid.json`. That FID fills the
//! model's empty `fid` cell, marked as the second run's (`fid_from_rerun` in `results.json`);
//! every other number stays the first run's.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// The results of one model (missing files read as absent numbers).
pub struct Results {
    accuracy: Value,
    calibration: Value,
    fid: Value,
    /// Whether `fid` is the second run's ([`Results::load`]).
    fid_from_rerun: bool,
    fid_chains: Value,
    is: Value,
    ood: Value,
    summary: Value,
    trained: bool,
}

fn read(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// The evaluation folder of a model's second run, `<out>/<key>/rerun/eval`, whose replay-buffer
/// FID stands in for a lost one ([`Results::load`], and the reproduction's plan).
pub fn rerun_eval(out: &Path, key: &str) -> std::path::PathBuf {
    out.join(key).join("rerun").join("eval")
}

/// `x * scale` with `digits` decimals, `—` when absent.
pub fn num(v: &Value, scale: f64, digits: usize) -> String {
    v.as_f64()
        .map(|x| format!("{:.digits$}", x * scale))
        .unwrap_or_else(|| "—".into())
}

impl Results {
    /// Reads `<out>/<key>/eval/*.json` and `<out>/<key>/run/summary.json`, and the FID of
    /// `<out>/<key>/rerun/eval/fid.json` when the first run has none.
    pub fn load(out: &Path, key: &str) -> Self {
        let eval = out.join(key).join("eval");
        let run = out.join(key).join("run");
        let (fid, fid_from_rerun) = match read(&eval.join("fid.json")) {
            Value::Null => {
                let rerun = read(&rerun_eval(out, key).join("fid.json"));
                let found = !rerun.is_null();
                (rerun, found)
            }
            own => (own, false),
        };
        Self {
            accuracy: read(&eval.join("accuracy.json")),
            calibration: read(&eval.join("calibration.json")),
            fid,
            fid_from_rerun,
            fid_chains: read(&eval.join("fid-chains.json")),
            is: read(&eval.join("is.json")),
            ood: read(&eval.join("ood.json")),
            summary: read(&run.join("summary.json")),
            trained: run.join("config.toml").exists(),
        }
    }

    /// Our number for a metric of the paper file (`accuracy`, `is`, `fid`, `fid-chains`,
    /// `ece`, `ece-torchmetrics`, `ood:<set>:<px|py|pxgrad>`), formatted; `—` when absent.
    pub fn cell(&self, metric: &str) -> String {
        match metric {
            "accuracy" => num(&self.accuracy["accuracy"], 100.0, 2),
            "fid" => {
                let v = num(&self.fid["fid"]["fid"], 1.0, 2);
                if self.fid_from_rerun {
                    format!("{v} (second run)")
                } else {
                    v
                }
            }
            "fid-chains" => num(&self.fid_chains["fid"]["fid"], 1.0, 2),
            "is" => match (
                self.is["is"]["mean"].as_f64(),
                self.is["is"]["std"].as_f64(),
            ) {
                (Some(m), Some(s)) => format!("{m:.2} ± {s:.2}"),
                _ => "—".into(),
            },
            // the paper's ECE is the reference's ECELoss(20)
            "ece" => num(&self.calibration["reference"]["ece"], 100.0, 2),
            "ece-torchmetrics" => num(&self.calibration["torchmetrics"]["ece"], 100.0, 2),
            ood => {
                let mut it = ood.split(':').skip(1);
                let (Some(set), Some(score)) = (it.next(), it.next()) else {
                    return "—".into();
                };
                self.ood_sets()
                    .into_iter()
                    .find(|(n, _)| n == set)
                    .map(|(_, s)| num(&s[score]["auroc"], 1.0, 3))
                    .unwrap_or_else(|| "—".into())
            }
        }
    }

    /// This model's entry of `results.json`: fractions (not percent), `null` where not
    /// measured. ECE is the reference's convention (`ECELoss`), `ece_torchmetrics` the other;
    /// the OOD AUROCs are against MNIST with log p(x) and max p(y|x); `epochs` and `hours` are
    /// the training run's (its last evaluation, its training time); `fid_from_rerun` says
    /// whether `fid` is a second run's ([`Results::load`]).
    pub fn json_entry(&self) -> Value {
        let f = |v: &Value| v.as_f64().map_or(Value::Null, Value::from);
        let mnist = self.ood_sets().into_iter().find(|(n, _)| n == "mnist");
        let auroc = |score: &str| {
            mnist
                .as_ref()
                .map_or(Value::Null, |(_, s)| f(&s[score]["auroc"]))
        };
        let hours = self.summary["train_minutes"].as_f64().map(|m| m / 60.0);
        serde_json::json!({
            "accuracy": f(&self.accuracy["accuracy"]),
            "ece": f(&self.calibration["reference"]["ece"]),
            "ece_torchmetrics": f(&self.calibration["torchmetrics"]["ece"]),
            "fid": f(&self.fid["fid"]["fid"]),
            "fid_from_rerun": self.fid_from_rerun,
            "fid_chains": f(&self.fid_chains["fid"]["fid"]),
            "auroc_px_mnist": auroc("px"),
            "auroc_py_mnist": auroc("py"),
            "epochs": f(&self.summary["last_eval"]["epoch"]),
            "hours": hours.map_or(Value::Null, Value::from),
            "rollbacks": self.summary["rollbacks"].clone(),
        })
    }

    /// Whether the FID is a second run's ([`Results::load`]).
    pub fn fid_from_rerun(&self) -> bool {
        self.fid_from_rerun
    }

    /// Whether a fresh-chain FID was computed.
    pub fn has_fid_chains(&self) -> bool {
        !self.fid_chains.is_null()
    }

    /// `(set name, its JSON)` of every OOD set evaluated.
    pub fn ood_sets(&self) -> Vec<(String, Value)> {
        self.ood["sets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (s["name"].as_str().unwrap_or("?").to_string(), s.clone()))
            .collect()
    }

    /// The stability cell: `stable`, `2 rollbacks (it. 1200, 3400)`, `diverged at it. 5000
    /// after 3 rollbacks`, `training unfinished` or `—` (not trained).
    pub fn stability(&self) -> String {
        if self.summary.is_null() {
            return if self.trained {
                "training unfinished".into()
            } else {
                "—".into()
            };
        }
        let events = self.rollback_events();
        let at: Vec<String> = events
            .iter()
            .filter(|e| !e["to_iteration"].is_null())
            .map(|e| e["iteration"].to_string())
            .collect();
        let n = at.len();
        let plural = if n == 1 { "" } else { "s" };
        if self.summary["diverged"].as_bool() == Some(true) {
            let last = events.last().map(|e| e["iteration"].to_string());
            return format!(
                "diverged at it. {} after {n} rollback{plural}",
                last.unwrap_or_else(|| "?".into())
            );
        }
        match self.summary["rollbacks"].as_u64().unwrap_or(n as u64) {
            0 => "stable (0 rollbacks)".into(),
            r if at.is_empty() => format!("{r} rollback{}", if r == 1 { "" } else { "s" }),
            _ => format!("{n} rollback{plural} (it. {})", at.join(", ")),
        }
    }

    fn rollback_events(&self) -> Vec<Value> {
        self.summary["rollback_events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Markdown list items of every rollback: iteration, cause, what changed.
    pub fn rollback_lines(&self, key: &str) -> String {
        let mut s = String::new();
        for e in self.rollback_events() {
            let back = match e["to_iteration"].as_u64() {
                Some(to) => format!("rolled back to {to}, {}", str_of(&e["change"])),
                None => "the guard's budget was spent: the run stopped".into(),
            };
            let _ = writeln!(
                s,
                "- {key}: iteration {}: {}; {back}",
                e["iteration"],
                str_of(&e["cause"])
            );
        }
        s
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}
