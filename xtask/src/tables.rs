//! The report's tables. For CIFAR-10 and CIFAR-100, every table the paper has for that data
//! set (Tables 1 or 2, Table 3, the ECE values of section 4.2, Tables 5 and 6), row for row
//! in the paper's order from `configs/paper-numbers.toml`, with our number beside the paper's
//! in every column, rows we cannot train shown with the paper's numbers only, and a
//! stability column (rollbacks and divergences of our run beside what the paper says). For
//! the Fashion-MNIST targets, which the paper does not have, the same columns for our models.

use std::fmt::Write as _;
use std::path::Path;

use crate::paper::{PaperFile, PaperRow, PaperTable, TableKind};
use crate::reproduce::Model;
use crate::results::Results;

/// The model key of a preset path (`cifar10/ablation/jem-k10` -> `jem-k10`).
pub fn key_of(preset: &str) -> &str {
    preset.rsplit('/').next().unwrap_or(preset)
}

/// The plan's models with their results, each read once.
type Loaded<'a> = [(&'a Model, Results)];

fn md_table(md: &mut String, head: &[String], rows: &[Vec<String>]) {
    let esc = |c: &String| c.replace('|', "\\|");
    let _ = writeln!(
        md,
        "| {} |\n|{}",
        head.iter().map(esc).collect::<Vec<_>>().join(" | "),
        "---|".repeat(head.len())
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} |",
            r.iter().map(esc).collect::<Vec<_>>().join(" | ")
        );
    }
    md.push('\n');
}

fn metric_label(m: &str) -> String {
    match m {
        "accuracy" => "accuracy %".into(),
        "is" => "IS".into(),
        "fid" => "FID".into(),
        "fid-chains" => "FID, fresh chains".into(),
        "ece" => "ECE %".into(),
        ood => ood.split(':').nth(1).unwrap_or(ood).to_string(),
    }
}

const PROTOCOL: &str = "IS and FID (ours) are those of the replay buffer filtered by \
    confidence per predicted class (top 10 % for IS, top 90 % for FID) against the statistics \
    of the training and test images, as the reference computes them (Task/eval_buffer.py); \
    FID of fresh chains from the informative init is the option `jem eval fid --source chains` \
    (`cargo xtask reproduce ... --fid-chains`; its column appears when computed). `—`: not computed, or not in the paper.";

const OWN_PROTOCOL: &str = "FID is that of the replay buffer filtered by confidence per \
    predicted class (top 90 %, the reference's Task/eval_buffer.py) and that of fresh chains \
    from the informative init (1,000 chains of 1,000 steps, all kept), each against the real \
    images of the splits its `fid.json` names (`cargo xtask reproduce fashion-mnist`: the test \
    split); IS where computed, as the reference (top 10 %). `—`: not computed.";

/// Every table of the report: the paper's for `target` when the file has any, else ours.
pub fn write_tables(
    md: &mut String,
    paper: Option<&PaperFile>,
    target: &str,
    models: &[Model],
    out: &Path,
) {
    let tables: Vec<&PaperTable> = paper
        .map(|p| p.tables_of(target).collect())
        .unwrap_or_default();
    let loaded: Vec<(&Model, Results)> = models
        .iter()
        .map(|m| (m, Results::load(out, &m.key)))
        .collect();
    let models = &loaded[..];
    if tables.is_empty() {
        own_tables(md, models);
    } else {
        for t in &tables {
            paper_table(md, t, models);
        }
        if !tables.iter().any(|t| t.metrics.iter().any(|m| m == "ece")) {
            let _ = writeln!(md, "## Calibration (ours)\n");
            let _ = writeln!(
                md,
                "The paper gives ECE values for CIFAR-100 only (section 4.2); these are ours.\n"
            );
            calibration(md, models);
        }
    }
    stability(md, models);
}

/// A sentence on the FIDs marked "(second run)", naming their models, or nothing.
fn rerun_note(models: &Loaded) -> String {
    let keys: Vec<String> = models
        .iter()
        .filter(|(_, r)| r.fid_from_rerun())
        .map(|(m, _)| format!("`{}`", m.key))
        .collect();
    if keys.is_empty() {
        return String::new();
    }
    format!(
        " A FID marked \"(second run)\" ({}) is that of a rerun of the preset \
         (`<model>/rerun/`): the first run's checkpoint, which held its replay buffer, was \
         lost before its FID was taken.",
        keys.join(", ")
    )
}

/// One of the paper's tables: its rows, then (when the table asks) our other models.
fn paper_table(md: &mut String, t: &PaperTable, models: &Loaded) {
    let with_stability = t.metrics.iter().any(|m| m == "accuracy");
    let chains =
        t.metrics.iter().any(|m| m == "fid") && models.iter().any(|(_, r)| r.has_fid_chains());
    let mut head = vec!["paper's row".to_string(), "our preset".to_string()];
    for m in &t.metrics {
        let l = metric_label(m);
        head.extend([format!("{l}, ours"), format!("{l}, paper")]);
    }
    if chains {
        head.push("FID, fresh chains, ours".into());
    }
    if with_stability {
        head.extend(["stability, ours".into(), "stability, paper".into()]);
    }
    let row_cells = |label: &str, preset: Option<&str>, paper_row: Option<&PaperRow>| {
        let model = preset.and_then(|p| models.iter().find(|(m, _)| m.preset == p));
        let r = model.map(|(_, r)| r);
        let ours = |metric: &str| r.map_or("—".into(), |r| r.cell(metric));
        let preset_cell = match (preset, model) {
            (None, _) => "—".into(),
            (Some(p), Some(_)) => format!("`{}`", key_of(p)),
            (Some(p), None) if t.kind == TableKind::Ablation => {
                format!("`{}` (with `--ablations`)", key_of(p))
            }
            (Some(p), None) => format!("`{}` (not in this plan)", key_of(p)),
        };
        let mut cells = vec![label.to_string(), preset_cell];
        for m in &t.metrics {
            let published = paper_row.and_then(|row| row.values.get(m));
            cells.extend([ours(m), published.cloned().unwrap_or_else(|| "—".into())]);
        }
        if chains {
            cells.push(ours("fid-chains"));
        }
        if with_stability {
            cells.push(r.map_or("—".into(), Results::stability));
            cells.push(
                paper_row
                    .and_then(|row| row.stability.clone())
                    .unwrap_or_default(),
            );
        }
        cells
    };
    let mut rows: Vec<Vec<String>> = t
        .row
        .iter()
        .map(|r| row_cells(&r.label, r.preset.as_deref(), Some(r)))
        .collect();
    if t.extra_models {
        for (m, _) in models {
            if !t.row.iter().any(|r| r.preset.as_deref() == Some(&m.preset)) {
                rows.push(row_cells("(ours only)", Some(&m.preset), None));
            }
        }
    }
    let _ = writeln!(md, "## {}\n", t.title);
    md_table(md, &head, &rows);
    for n in &t.notes {
        let _ = writeln!(md, "Paper: {n}  ");
    }
    let mut sources: Vec<&str> = t.row.iter().map(|r| r.source.as_str()).collect();
    sources.dedup();
    let _ = writeln!(
        md,
        "Paper's numbers: {} (`configs/paper-numbers.toml`).\n",
        sources.join("; ")
    );
    if t.metrics.iter().any(|m| m == "fid" || m == "is") {
        let _ = writeln!(md, "{PROTOCOL}{}\n", rerun_note(models));
    }
}

/// The tables of a target the paper does not have: accuracy / IS / FID, calibration, OOD.
fn own_tables(md: &mut String, models: &Loaded) {
    let _ = writeln!(
        md,
        "## Hybrid modelling (the layout of Tables 1 and 2)\n\nThe paper has no results on \
         this data set; its CIFAR tables are in the `cifar10` and `cifar100` reproductions.\n"
    );
    model_table(
        md,
        &[
            "model",
            "description",
            "accuracy %",
            "IS",
            "FID",
            "FID, fresh chains",
            "stability",
        ],
        models,
        |m, r| {
            vec![
                m.key.clone(),
                m.cfg.description.clone(),
                r.cell("accuracy"),
                r.cell("is"),
                r.cell("fid"),
                r.cell("fid-chains"),
                r.stability(),
            ]
        },
    );
    let _ = writeln!(
        md,
        "Accuracy: test set, eval-mode BatchNorm. {OWN_PROTOCOL}{}\n",
        rerun_note(models)
    );
    let _ = writeln!(md, "## Calibration (Figure 4)\n");
    calibration(md, models);
    ood(md, models);
}

/// A table with one row per model, its cells from the model's results.
fn model_table(
    md: &mut String,
    head: &[&str],
    models: &Loaded,
    cells: impl Fn(&Model, &Results) -> Vec<String>,
) {
    let head: Vec<String> = head.iter().map(|h| h.to_string()).collect();
    let rows: Vec<Vec<String>> = models.iter().map(|(m, r)| cells(m, r)).collect();
    md_table(md, &head, &rows);
}

fn calibration(md: &mut String, models: &Loaded) {
    model_table(
        md,
        &[
            "model",
            "ECE % (reference, 20 bins)",
            "ECE % (torchmetrics, 15 bins)",
        ],
        models,
        |m, r| vec![m.key.clone(), r.cell("ece"), r.cell("ece-torchmetrics")],
    );
}

/// Our OOD table for each score over every set any model was evaluated on.
fn ood(md: &mut String, models: &Loaded) {
    let _ = writeln!(md, "## OOD detection (AUROC, the layout of Table 3)\n");
    let mut sets: Vec<(String, String)> = Vec::new();
    for (_, r) in models {
        for (name, s) in r.ood_sets() {
            if !sets.iter().any(|(n, _)| *n == name) {
                sets.push((name, s["n"].to_string()));
            }
        }
    }
    if sets.is_empty() {
        let _ = writeln!(md, "Not computed.\n");
        return;
    }
    for (score, label) in [
        ("px", "log p(x)"),
        ("py", "max p(y|x)"),
        ("pxgrad", "−‖∂ log p(x) / ∂x‖"),
    ] {
        let _ = writeln!(md, "score s(x) = {}\n", label.replace('|', "\\|"));
        let mut head = vec!["model"];
        head.extend(sets.iter().map(|(n, _)| n.as_str()));
        model_table(md, &head, models, |m, r| {
            let mut row = vec![m.key.clone()];
            row.extend(
                sets.iter()
                    .map(|(n, _)| r.cell(&format!("ood:{n}:{score}"))),
            );
            row
        });
    }
    let n: Vec<String> = sets.iter().map(|(name, n)| format!("{name} {n}")).collect();
    let _ = writeln!(
        md,
        "In-distribution: the test split (positive class). OOD images per set: {}.\n",
        n.join(", ")
    );
}

/// Every rollback of every model (iteration, cause, what changed), after the tables.
fn stability(md: &mut String, models: &Loaded) {
    let _ = writeln!(md, "## Training stability\n");
    let lines: String = models
        .iter()
        .map(|(m, r)| r.rollback_lines(&m.key))
        .collect();
    let _ = writeln!(
        md,
        "A divergence (a non-finite loss or energy, |loss| above 1e5 as the reference, or \
         |E| above `guard.max_abs_energy`) rolls the run back to its last checkpoint and \
         retries with a new random stream and the same hyper-parameters, at most \
         `guard.max_failures` times; then the run stops and counts as diverged (the paper \
         marks JEM and JEM++ as regularly diverging).\n"
    );
    if lines.is_empty() {
        let _ = writeln!(md, "No model of this reproduction rolled back.\n");
    } else {
        let _ = writeln!(md, "{lines}");
    }
}

#[cfg(test)]
mod tests;
