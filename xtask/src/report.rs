//! The report of a reproduction: `report.md` (figures linked) and a self-contained
//! `report.html` (figures embedded), from the JSON results of the stages.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::reproduce::{Model, human};
use crate::results::Results;
use crate::tables;

/// The hand-written claims table of a results folder, carried into its report.
pub const CLAIMS_FILE: &str = "claims.md";

/// The name under which the build of `jem` is timed.
pub const BUILD_STAGE: &str = "build/jem";

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

/// Writes `report.md` and `report.html` into `out`; returns the Markdown file.
pub fn write(
    out: &Path,
    target: &str,
    models: &[Model],
    timings: &Timings,
    stage_order: &[String],
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

    let paper_file = root.join("configs/paper-numbers.toml");
    let paper = if paper_file.exists() {
        Some(crate::paper::PaperFile::load(&paper_file)?)
    } else {
        None
    };
    if target == "quick" {
        let _ = writeln!(
            md,
            "**These are one-epoch models** on a 9,000-image subset, far from converged: the run \
             exercises every stage and figure of the method, not its numbers. Models trained to \
             convergence on the full Fashion-MNIST (`cargo xtask reproduce fashion-mnist`) are \
             in the repository's `docs/results/fashion-mnist/`.\n"
        );
    }
    // the verdicts on the paper's claims are a researcher's reading of the numbers below,
    // kept by hand in `claims.md` beside the results and carried into every report
    if let Ok(claims) = std::fs::read_to_string(out.join(CLAIMS_FILE)) {
        let _ = writeln!(md, "{}\n", claims.trim_end());
    }
    tables::write_tables(&mut md, paper.as_ref(), target, models, out);

    let _ = writeln!(
        md,
        "## Figures of calibration and OOD detection
"
    );
    for m in models {
        let fig = format!("{}/eval/calibration.png", m.key);
        if out.join(&fig).exists() {
            let _ = writeln!(md, "![reliability diagram of {}]({fig})\n", m.key);
        }
    }
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

    let quality_missing = models
        .iter()
        .any(|m| m.cfg.loss.px > 0.0 && !out.join(&m.key).join("eval/fid.json").exists());
    if quality_missing {
        let _ = writeln!(
            md,
            "**FID and IS** are missing for some models. They need pytorch-fid's Inception \
             weights (`jem data fetch inception`, 92 MB, a download) and the Inception \
             statistics of the real images; the quick presets leave them out because those \
             statistics take about an hour of CPU. With the weights: `jem eval fid --checkpoint \
             RUN/last.safetensors` and `jem eval is ...`.\n"
        );
    }

    fid_cost::section(&mut md, out, models);

    let _ = writeln!(md, "## Adversarial robustness (Figure 5; white-box PGD)\n");
    if let Some(r) = read(&out.join("robustness/robustness.json")) {
        robustness_table(&mut md, &r);
    } else {
        let _ = writeln!(md, "Not computed.");
    }
    md.push('\n');
    // one figure, or one per norm (`robustness-<norm>.png`): whatever `jem eval robustness`
    // wrote, so that its naming lives in one place (jem-eval's `attack::figure_name`)
    for (file, norm) in robustness_figures(&out.join("robustness")) {
        let what = norm.map_or("every model".to_string(), |n| format!("every model, {n}"));
        let _ = writeln!(md, "![robustness of {what}](robustness/{file})\n");
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
    // the build first, then the stages in the order they ran, then any older entries
    let mut keys: Vec<&str> = vec![BUILD_STAGE];
    keys.extend(stage_order.iter().map(String::as_str));
    keys.extend(timings.0.keys().map(String::as_str));
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0.0;
    for k in keys {
        let Some((s, ok)) = timings.0.get(k) else {
            continue;
        };
        if !seen.insert(k) {
            continue;
        }
        total += s;
        let _ = writeln!(
            md,
            "| {k} | {} | {} |",
            human(*s),
            if *ok { "ok" } else { "FAILED" }
        );
    }
    let _ = writeln!(md, "| **total** | **{}** | |", human(total));
    let _ = writeln!(
        md,
        "\n`{BUILD_STAGE}` is the last build of `jem` by this command (dependencies shared with \
         `cargo xtask` are compiled before it, by `cargo xtask` itself, and are not counted).\n"
    );

    let _ = writeln!(md, "## Configs\n");
    for m in models {
        let text = std::fs::read_to_string(out.join(&m.key).join("run/config.toml"))
            .or_else(|_| std::fs::read_to_string(&m.config))
            .unwrap_or_default();
        let _ = writeln!(md, "### {}\n\n```toml\n{}\n```\n", m.key, text.trim_end());
    }

    let md_path = out.join("report.md");
    jem_data::fsutil::write_atomic(&md_path, md.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    write_results_json(out, models)?;
    let html = crate::html::to_html(&md, out);
    jem_data::fsutil::write_atomic(&out.join("report.html"), html.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("writing report.html")?;
    Ok(md_path)
}

/// `results.json`: `{"models": {"<model>": {"accuracy": 0.93, ...}}}`, one entry per model
/// ([`Results::json_entry`]).
fn write_results_json(out: &Path, models: &[Model]) -> Result<()> {
    let entries: serde_json::Map<String, Value> = models
        .iter()
        .map(|m| (m.key.clone(), Results::load(out, &m.key).json_entry()))
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "models": entries }))?;
    jem_data::fsutil::write_atomic(&out.join("results.json"), text.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("writing results.json")
}

/// The robustness figures in `dir`: `(file, norm)`, the norm spelled as in
/// `robustness-<norm>.png` (L-inf for `linf`), `None` for the single `robustness.png`;
/// that one first, then L-inf (the paper's), then the others by name.
fn robustness_figures(dir: &Path) -> Vec<(String, Option<String>)> {
    let mut found: Vec<(String, Option<String>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let stem = name.strip_suffix(".png")?.strip_prefix("robustness")?;
            let norm = match stem {
                "" => None,
                "-linf" => Some("L-inf".to_string()),
                _ => Some(
                    stem.strip_prefix('-')
                        .filter(|n| !n.is_empty())?
                        .to_uppercase(),
                ),
            };
            Some((name, norm))
        })
        .collect();
    found.sort_by_key(|(name, norm)| {
        let not_linf = norm.as_deref() != Some("L-inf");
        (norm.is_some(), not_linf, name.clone())
    });
    found
}

/// Figure 5 as a table: one row per model and norm, one column per radius; each cell is the
/// accuracy under the reference's per-step accounting, with the last iterate's in parentheses
/// where it differs.
fn robustness_table(md: &mut String, r: &Value) {
    let rows: Vec<&Value> = r.as_array().into_iter().flatten().collect();
    // rows run model by model, each model's norms in turn
    let mut norms: Vec<&str> = Vec::new();
    for n in rows.iter().filter_map(|x| x["norm"].as_str()) {
        if !norms.contains(&n) {
            norms.push(n);
        }
    }
    for norm in norms {
        let of_norm: Vec<&&Value> = rows.iter().filter(|x| x["norm"] == norm).collect();
        let Some(first) = of_norm.first() else {
            continue;
        };
        let points = first["result"]["points"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // both norms in the CLI's /255 units of the [0, 1] pixel scale
        let eps: Vec<String> = points
            .iter()
            .map(|p| format!("{}/255", per255(&p["eps"])))
            .collect();
        let cfg = &first["result"]["config"];
        let _ = writeln!(
            md,
            "PGD {norm}, {} steps, step {}/255, random start {}, {} test images; accuracy under \
             the reference's per-step accounting (last iterate in parentheses where it \
             differs){}\n",
            cfg["steps"],
            per255(&cfg["step_size"]),
            cfg["random_start"],
            first["result"]["n"],
            if norm == "l_2" {
                "; an L2 radius is the perturbation's Euclidean length, in [0, 1] pixels"
            } else {
                ""
            }
        );
        let _ = writeln!(
            md,
            "| model | clean | {} |\n|---|---|{}",
            eps.join(" | "),
            "---|".repeat(eps.len())
        );
        for row in of_norm {
            let pts = row["result"]["points"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let clean = pts.first().map(|p| f(&p["clean_accuracy"], 3));
            let cells: Vec<String> = pts
                .iter()
                .map(|p| {
                    let (a, l) = (
                        f(&p["robust_accuracy"], 3),
                        f(&p["last_iterate_accuracy"], 3),
                    );
                    if a == l { a } else { format!("{a} ({l})") }
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                row["label"].as_str().unwrap_or("?"),
                clean.unwrap_or_else(|| "—".into()),
                cells.join(" | ")
            );
        }
        md.push('\n');
    }
}

/// A [0, 1]-pixel quantity in /255 units, to three decimals without trailing zeros (`8`,
/// `0.5`); `?` when it is not a number.
fn per255(v: &Value) -> String {
    v.as_f64().map_or("?".into(), |x| {
        format!("{}", (x * 255.0 * 1000.0).round() / 1000.0)
    })
}

mod fid_cost;
#[cfg(test)]
mod tests;
