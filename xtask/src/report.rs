//! The report of a reproduction: `report.md` (figures linked) and a self-contained
//! `report.html` (figures embedded), from the JSON results of the stages.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::reproduce::{Model, human};

/// Wall-clock and outcome of each stage, kept in `<out>/stages.json` across invocations.
#[derive(Default)]
pub struct Timings(BTreeMap<String, (f64, bool)>);

impl Timings {
    /// Reads `<out>/stages.json` (empty when absent or unreadable).
    pub fn load(out: &Path) -> Self {
        let v: Value = std::fs::read_to_string(out.join("stages.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let mut m = BTreeMap::new();
        if let Some(o) = v.as_object() {
            for (k, x) in o {
                m.insert(
                    k.clone(),
                    (
                        x["seconds"].as_f64().unwrap_or(0.0),
                        x["ok"].as_bool().unwrap_or(false),
                    ),
                );
            }
        }
        Self(m)
    }

    /// Records a stage's run.
    pub fn record(&mut self, stage: &str, seconds: f64, ok: bool) {
        self.0.insert(stage.to_string(), (seconds, ok));
    }

    /// Writes `<out>/stages.json` atomically.
    pub fn save(&self, out: &Path) -> Result<()> {
        let v: serde_json::Map<String, Value> = self
            .0
            .iter()
            .map(|(k, (s, ok))| (k.clone(), serde_json::json!({ "seconds": s, "ok": ok })))
            .collect();
        let text = serde_json::to_string_pretty(&Value::Object(v))? + "\n";
        jem_data::fsutil::write_atomic(&out.join("stages.json"), text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

fn read(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "—".into())
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Numbers published for the paper's rows (unverified, from a third-party page: the reference
/// README has none); `None` where nothing is known.
fn paper_accuracy(target: &str, key: &str) -> Option<&'static str> {
    match (target, key) {
        ("cifar10", "sadajem") => Some("96.0–96.1 % (unverified)"),
        ("cifar10", "jempp") => Some("94.1 % (unverified)"),
        _ => None,
    }
}

/// Writes `report.md` and `report.html` into `out`; returns the Markdown file.
pub fn write(
    out: &Path,
    target: &str,
    models: &[Model],
    timings: &Timings,
    device: &str,
) -> Result<PathBuf> {
    let mut md = String::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let commit = command_line(
        "git",
        &[
            "-C",
            &root.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let _ = writeln!(md, "# sadajem reproduction: {target}\n");
    let _ = writeln!(
        md,
        "- sadajem {} (commit {commit}), {}\n- hardware: {} ({} threads), device `{device}`\n",
        env!("CARGO_PKG_VERSION"),
        command_line("rustc", &["--version"]),
        cpu_model(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    );

    let _ = writeln!(
        md,
        "## Classification and calibration (Tables 1–2, Figure 4)\n"
    );
    let _ = writeln!(
        md,
        "| model | iterations | train time | test accuracy | ECE (reference, 20 bins) | ECE (torchmetrics, 15 bins) | paper accuracy |\n|---|---|---|---|---|---|---|"
    );
    for m in models {
        let dir = out.join(&m.key);
        let summary = read(&dir.join("run/summary.json")).unwrap_or(Value::Null);
        let acc = read(&dir.join("eval/accuracy.json")).unwrap_or(Value::Null);
        let cal = read(&dir.join("eval/calibration.json")).unwrap_or(Value::Null);
        let minutes = summary["train_minutes"].as_f64().map(|x| human(60.0 * x));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            m.key,
            summary["iterations"]
                .as_u64()
                .map(|i| i.to_string())
                .unwrap_or_else(|| "—".into()),
            minutes.unwrap_or_else(|| "—".into()),
            f(&acc["accuracy"], 4),
            f(&cal["reference"]["ece"], 4),
            f(&cal["torchmetrics"]["ece"], 4),
            paper_accuracy(target, &m.key).unwrap_or("—"),
        );
    }
    md.push('\n');
    for m in models {
        let fig = format!("{}/eval/calibration.png", m.key);
        if out.join(&fig).exists() {
            let _ = writeln!(md, "![reliability diagram of {}]({fig})\n", m.key);
        }
    }

    let _ = writeln!(md, "## Sample quality (FID / IS)\n");
    let mut any_quality = false;
    for m in models {
        if let Some(q) = read(&out.join(&m.key).join("eval/quality.json")) {
            any_quality = true;
            let _ = writeln!(
                md,
                "- {}: FID {} ({} images), IS {}",
                m.key,
                f(&q["fid"]["fid"], 2),
                q["n_fid"],
                f(&q["is"]["mean"], 2)
            );
        }
    }
    if !any_quality {
        let _ = writeln!(
            md,
            "Not computed. FID and IS need pytorch-fid's Inception weights (`jem data fetch \
             inception`, 92 MB) and the Inception statistics of the real images; the quick \
             preset leaves them out because the statistics of its real images take about an \
             hour of CPU. With the weights: `jem eval fid --checkpoint RUN/last.safetensors` and \
             `jem eval is ...`."
        );
    }
    md.push('\n');

    let _ = writeln!(
        md,
        "## OOD detection (Table 3; AUROC, test split positive)\n"
    );
    let _ = writeln!(
        md,
        "| model | OOD set | images | log p(x) | max p(y\\|x) | −‖∇x log p(x)‖ |\n|---|---|---|---|---|---|"
    );
    for m in models {
        if let Some(o) = read(&out.join(&m.key).join("eval/ood.json")) {
            for s in o["sets"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    m.key,
                    s["name"].as_str().unwrap_or("?"),
                    s["n"],
                    f(&s["px"]["auroc"], 4),
                    f(&s["py"]["auroc"], 4),
                    f(&s["pxgrad"]["auroc"], 4)
                );
            }
        }
    }
    md.push('\n');
    for m in models {
        if let Some(o) = read(&out.join(&m.key).join("eval/ood.json")) {
            for s in o["sets"].as_array().into_iter().flatten() {
                let name = s["name"].as_str().unwrap_or("?");
                let _ = writeln!(
                    md,
                    "![log p(x) of {} on test vs {name}]({}/eval/ood-hist-{name}.png)\n",
                    m.key, m.key
                );
            }
        }
    }

    let _ = writeln!(md, "## Adversarial robustness (Figure 5; white-box PGD)\n");
    let _ = writeln!(
        md,
        "| model | norm | eps (/255) | robust accuracy (every step) | last-iterate accuracy |\n|---|---|---|---|---|"
    );
    if let Some(r) = read(&out.join("robustness/robustness.json")) {
        for row in r.as_array().into_iter().flatten() {
            for p in row["result"]["points"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    row["label"].as_str().unwrap_or("?"),
                    row["norm"].as_str().unwrap_or("?"),
                    p["eps"]
                        .as_f64()
                        .map(|e| format!("{:.0}", e * 255.0))
                        .unwrap_or_default(),
                    f(&p["robust_accuracy"], 4),
                    f(&p["last_iterate_accuracy"], 4)
                );
            }
        }
    }
    md.push('\n');
    if out.join("robustness/robustness.png").exists() {
        let _ = writeln!(
            md,
            "![robustness of every model](robustness/robustness.png)\n"
        );
    }

    let _ = writeln!(md, "## Energy landscape (Figure 1)\n");
    if out.join("landscape/landscape-1d.png").exists() {
        let _ = writeln!(
            md,
            "Mean LSE energy of 100 test images along one filter-normalized random direction (same seed for every model).\n\n![energy landscape](landscape/landscape-1d.png)\n"
        );
    } else {
        let _ = writeln!(md, "Not computed.\n");
    }

    let _ = writeln!(md, "## Samples\n");
    for m in models {
        let samples = out.join(&m.key).join("run/samples");
        let mut pngs: Vec<PathBuf> = std::fs::read_dir(&samples)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        pngs.sort();
        if let Some(last) = pngs
            .iter()
            .rev()
            .find(|p| p.to_string_lossy().contains("buffer"))
            .or(pngs.last())
        {
            let rel = last.strip_prefix(out).unwrap_or(last);
            let _ = writeln!(
                md,
                "{}: the replay buffer at the end of training.\n\n![{} samples]({})\n",
                m.key,
                m.key,
                rel.display()
            );
        }
        for (file, what) in [
            (
                "chains.png",
                "fresh chains from the informative init (the reference's eval sampler)",
            ),
            (
                "conditional.png",
                "class-conditional samples, one row per class",
            ),
        ] {
            let fig = format!("{}/eval/{file}", m.key);
            if out.join(&fig).exists() {
                let _ = writeln!(md, "{}: {what}.\n\n![{} {file}]({fig})\n", m.key, m.key);
            }
        }
    }

    let _ = writeln!(
        md,
        "## Stages (wall-clock)\n\n| stage | time | outcome |\n|---|---|---|"
    );
    for (k, (s, ok)) in &timings.0 {
        let _ = writeln!(
            md,
            "| {k} | {} | {} |",
            human(*s),
            if *ok { "ok" } else { "FAILED" }
        );
    }
    md.push('\n');

    let _ = writeln!(md, "## Configs\n");
    for m in models {
        let text = std::fs::read_to_string(out.join(&m.key).join("run/config.toml"))
            .or_else(|_| std::fs::read_to_string(&m.config))
            .unwrap_or_default();
        let _ = writeln!(md, "### {}\n\n```toml\n{}\n```\n", m.key, text.trim_end());
    }

    let md_path = out.join("report.md");
    jem_data::fsutil::write_atomic(&md_path, md.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let html = crate::html::to_html(&md, out);
    jem_data::fsutil::write_atomic(&out.join("report.html"), html.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("writing report.html")?;
    Ok(md_path)
}
