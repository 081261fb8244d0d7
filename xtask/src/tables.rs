//! The report's tables in the paper's layout: hybrid modelling (Tables 1 and 2), OOD detection
//! (Table 3), calibration (Figure 4's ECE), and with `--ablations` the component ablation
//! (Table 5) and the SAM / ASAM radius sweep (Table 6); each with the published numbers of
//! `configs/paper-numbers.toml` in columns beside ours, every one footnoted with its source.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use jem_train::config::SamKind;
use serde::Deserialize;
use serde_json::Value;

use crate::reproduce::Model;

/// One published number.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// `cifar10`, `cifar100`, `fashion-mnist` or `quick`.
    pub target: String,
    /// The preset's file stem.
    pub model: String,
    /// `accuracy`, `is`, `fid`, `ece` or `ood:<set>:<score>`.
    pub metric: String,
    /// As printed.
    pub value: String,
    /// Where it comes from.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaperFile {
    #[serde(default)]
    number: Vec<Published>,
}

/// The published numbers of one target, and the sources cited so far (footnote order).
pub struct Paper {
    target: String,
    numbers: Vec<Published>,
    cited: Vec<String>,
}

impl Paper {
    /// Reads `file` (the TOML layout of `configs/paper-numbers.toml`).
    pub fn load(file: &Path, target: &str) -> Result<Self> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let parsed: PaperFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        Ok(Self {
            target: target.to_string(),
            numbers: parsed.number,
            cited: Vec::new(),
        })
    }

    /// No published numbers (a report without the file).
    pub fn empty(target: &str) -> Self {
        Self {
            target: target.to_string(),
            numbers: Vec::new(),
            cited: Vec::new(),
        }
    }

    /// `value [n]` for a published number, citing its source; `—` when there is none.
    pub fn cell(&mut self, model: &str, metric: &str) -> String {
        let Some(p) = self
            .numbers
            .iter()
            .find(|p| p.target == self.target && p.model == model && p.metric == metric)
        else {
            return "—".into();
        };
        let n = match self.cited.iter().position(|s| *s == p.source) {
            Some(i) => i + 1,
            None => {
                self.cited.push(p.source.clone());
                self.cited.len()
            }
        };
        format!("{} [{n}]", p.value)
    }

    /// Whether any published number exists for `model`.
    fn has_any(&self, model: &str, prefix: &str) -> bool {
        self.numbers
            .iter()
            .any(|p| p.target == self.target && p.model == model && p.metric.starts_with(prefix))
    }

    /// The footnotes of every source cited so far.
    pub fn footnotes(&self) -> String {
        let mut s = String::new();
        for (i, src) in self.cited.iter().enumerate() {
            let _ = writeln!(s, "[{}] {src}  ", i + 1);
        }
        s
    }
}

/// The JSON results of one model's evaluation stages.
pub struct Results {
    accuracy: Value,
    calibration: Value,
    fid: Value,
    is: Value,
    ood: Value,
}

fn read(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

impl Results {
    /// Reads `<out>/<model>/eval/*.json` (missing files read as absent numbers).
    pub fn load(out: &Path, key: &str) -> Self {
        let eval = out.join(key).join("eval");
        Self {
            accuracy: read(&eval.join("accuracy.json")),
            calibration: read(&eval.join("calibration.json")),
            fid: read(&eval.join("fid.json")),
            is: read(&eval.join("is.json")),
            ood: read(&eval.join("ood.json")),
        }
    }

    fn accuracy_pct(&self) -> String {
        num(&self.accuracy["accuracy"], 100.0, 2)
    }

    fn fid(&self) -> String {
        num(&self.fid["fid"]["fid"], 1.0, 2)
    }

    fn is(&self) -> String {
        match (
            self.is["is"]["mean"].as_f64(),
            self.is["is"]["std"].as_f64(),
        ) {
            (Some(m), Some(s)) => format!("{m:.2} ± {s:.2}"),
            _ => "—".into(),
        }
    }

    /// `(set name, images, [AUROC of log p(x), max p(y|x), gradient norm])`.
    fn ood_sets(&self) -> Vec<(String, Value, [Value; 3])> {
        self.ood["sets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or("?").to_string(),
                    s["n"].clone(),
                    [
                        s["px"]["auroc"].clone(),
                        s["py"]["auroc"].clone(),
                        s["pxgrad"]["auroc"].clone(),
                    ],
                )
            })
            .collect()
    }
}

fn num(v: &Value, scale: f64, digits: usize) -> String {
    v.as_f64()
        .map(|x| format!("{:.digits$}", x * scale))
        .unwrap_or_else(|| "—".into())
}

/// The presets that only the ablation tables show.
pub fn ablation_only(key: &str) -> bool {
    matches!(key, "jem-sam" | "jempp-sam" | "jempp-noda")
        || key.starts_with("sadajem-sam-")
        || key.starts_with("sadajem-asam-")
        || key == "sadajem-l2"
        || key == "sadajem-code"
}

fn dataset_title(target: &str) -> &'static str {
    match target {
        "cifar10" => "Table 1: hybrid modelling on CIFAR-10",
        "cifar100" => "Table 2: hybrid modelling on CIFAR-100",
        "fashion-mnist" => "Hybrid modelling on Fashion-MNIST (the layout of Tables 1 and 2)",
        _ => "Hybrid modelling on the embedded Fashion-MNIST subset (the layout of Tables 1 and 2)",
    }
}

fn hybrid_rows(md: &mut String, paper: &mut Paper, models: &[&Model], out: &Path) {
    let _ = writeln!(
        md,
        "| model | description | accuracy % | IS | FID | paper accuracy % | paper IS | paper FID |\n|---|---|---|---|---|---|---|---|"
    );
    for m in models {
        let r = Results::load(out, &m.key);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            m.key,
            m.cfg.description,
            r.accuracy_pct(),
            r.is(),
            r.fid(),
            paper.cell(&m.key, "accuracy"),
            paper.cell(&m.key, "is"),
            paper.cell(&m.key, "fid"),
        );
    }
}

fn footnotes(md: &mut String, paper: &mut Paper) {
    let notes = paper.footnotes();
    if !notes.is_empty() {
        let _ = writeln!(md, "\n{notes}");
    }
    paper.cited.clear();
    md.push('\n');
}

/// Tables 1/2 (accuracy, IS, FID), the ECE table and Table 3 (OOD AUROC per score).
pub fn main_tables(md: &mut String, paper: &mut Paper, models: &[Model], out: &Path) {
    let main: Vec<&Model> = models.iter().filter(|m| !ablation_only(&m.key)).collect();
    let _ = writeln!(md, "## {}\n", dataset_title(&paper.target));
    hybrid_rows(md, paper, &main, out);
    let _ = writeln!(
        md,
        "\nAccuracy: test set, eval-mode BatchNorm. IS and FID: the replay buffer filtered by \
         confidence per class (top 10 % for IS, 90 % for FID), as the reference computes them; \
         `—` where not computed."
    );
    footnotes(md, paper);

    let _ = writeln!(md, "## Calibration (Figure 4)\n");
    let _ = writeln!(
        md,
        "| model | ECE % (reference, 20 bins) | ECE % (torchmetrics, 15 bins) | paper ECE % |\n|---|---|---|---|"
    );
    for m in &main {
        let r = Results::load(out, &m.key);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            m.key,
            num(&r.calibration["reference"]["ece"], 100.0, 2),
            num(&r.calibration["torchmetrics"]["ece"], 100.0, 2),
            paper.cell(&m.key, "ece"),
        );
    }
    footnotes(md, paper);

    let _ = writeln!(md, "## Table 3: OOD detection (AUROC)\n");
    let mut sets: Vec<String> = Vec::new();
    for m in &main {
        for (name, _, _) in Results::load(out, &m.key).ood_sets() {
            if !sets.contains(&name) {
                sets.push(name);
            }
        }
    }
    if sets.is_empty() {
        let _ = writeln!(md, "Not computed.\n");
        return;
    }
    for (i, (score, label)) in [
        ("px", "log p(x)"),
        ("py", "max p(y|x)"),
        ("pxgrad", "−‖∂ log p(x) / ∂x‖"),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = writeln!(
            md,
            "score s(x) = {}\n\n| model | {} |\n|---|{}",
            label.replace('|', "\\|"),
            sets.join(" | "),
            "---|".repeat(sets.len())
        );
        for m in &main {
            let found = Results::load(out, &m.key).ood_sets();
            let cells: Vec<String> = sets
                .iter()
                .map(|s| {
                    found
                        .iter()
                        .find(|(n, _, _)| n == s)
                        .map(|(_, _, a)| num(&a[i], 1.0, 3))
                        .unwrap_or_else(|| "—".into())
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", m.key, cells.join(" | "));
            if paper.has_any(&m.key, "ood:") {
                let cells: Vec<String> = sets
                    .iter()
                    .map(|s| paper.cell(&m.key, &format!("ood:{s}:{score}")))
                    .collect();
                if cells.iter().any(|c| c != "—") {
                    let _ = writeln!(md, "| {} (paper) | {} |", m.key, cells.join(" | "));
                }
            }
        }
        md.push('\n');
    }
    let mut n: Vec<String> = Vec::new();
    for (name, count, _) in main
        .iter()
        .flat_map(|m| Results::load(out, &m.key).ood_sets())
    {
        let item = format!("{name} {count}");
        if !n.contains(&item) {
            n.push(item);
        }
    }
    let _ = writeln!(
        md,
        "In-distribution: the test split (positive class). OOD images per set: {}.",
        n.join(", ")
    );
    footnotes(md, paper);
}

/// Tables 5 and 6 (only with `--ablations`: when an ablation preset is in the plan).
pub fn ablation_tables(md: &mut String, paper: &mut Paper, models: &[Model], out: &Path) {
    let find = |k: &str| models.iter().find(|m| m.key == k);
    let t5: Vec<&Model> = [
        "jem",
        "jem-sam",
        "jempp",
        "jempp-sam",
        "jempp-noda",
        "sadajem",
    ]
    .into_iter()
    .filter_map(find)
    .collect();
    if t5.iter().any(|m| ablation_only(&m.key)) {
        ablation_table(
            md,
            paper,
            "Table 5: ablation of SADA-JEM's two changes",
            &["SAM", "p(x) batch augmented", "K"],
            &t5,
            out,
            |m| {
                vec![
                    sam_name(&m.cfg.optim.sam, m.cfg.optim.rho),
                    if m.cfg.data.px_augment { "yes" } else { "no" }.into(),
                    m.cfg.sampler.steps.to_string(),
                ]
            },
        );
    }
    let t6: Vec<&Model> = models
        .iter()
        .filter(|m| {
            m.key == "sadajem"
                || m.key.starts_with("sadajem-sam-")
                || m.key.starts_with("sadajem-asam-")
                || m.key == "sadajem-l2"
                || m.key == "sadajem-code"
        })
        .collect();
    if t6.iter().any(|m| ablation_only(&m.key)) {
        ablation_table(
            md,
            paper,
            "Table 6: the SAM / ASAM radius and the L2 energy term",
            &["optimizer", "L2"],
            &t6,
            out,
            |m| {
                vec![
                    sam_name(&m.cfg.optim.sam, m.cfg.optim.rho),
                    m.cfg.loss.l2.to_string(),
                ]
            },
        );
    }
}

/// One ablation table: the rows' settings, then accuracy, IS, FID and the paper's numbers.
fn ablation_table(
    md: &mut String,
    paper: &mut Paper,
    title: &str,
    settings: &[&str],
    rows: &[&Model],
    out: &Path,
    setting: impl Fn(&Model) -> Vec<String>,
) {
    let head = [
        &["model"],
        settings,
        &["accuracy %", "IS", "FID", "paper accuracy %", "paper FID"],
    ]
    .concat();
    let _ = writeln!(
        md,
        "## {title}\n\n| {} |\n|{}",
        head.join(" | "),
        "---|".repeat(head.len())
    );
    for m in rows {
        let r = Results::load(out, &m.key);
        let cells = [
            vec![m.key.clone()],
            setting(m),
            vec![
                r.accuracy_pct(),
                r.is(),
                r.fid(),
                paper.cell(&m.key, "accuracy"),
                paper.cell(&m.key, "fid"),
            ],
        ]
        .concat();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    footnotes(md, paper);
}

fn sam_name(kind: &SamKind, rho: f64) -> String {
    match kind {
        SamKind::None => "no".into(),
        SamKind::Sam => format!("SAM ({rho})"),
        SamKind::Asam => format!("ASAM ({rho})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_numbers_load_and_cite_their_sources_once() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/paper-numbers.toml");
        let mut p = Paper::load(&file, "cifar10").unwrap();
        assert_eq!(p.cell("sadajem", "accuracy"), "96.0–96.1 [1]");
        assert_eq!(p.cell("sadajem", "fid"), "9.41 [1]");
        assert!(p.cell("jempp", "fid").ends_with("[2]"));
        assert_eq!(p.cell("softmax", "accuracy"), "—");
        assert_eq!(p.footnotes().lines().count(), 2);
        // other targets do not see CIFAR-10's numbers
        let mut q = Paper::load(&file, "quick").unwrap();
        assert_eq!(q.cell("sadajem", "accuracy"), "—");
    }

    #[test]
    fn a_bad_numbers_file_is_a_named_error() {
        let dir = tempfile_dir("bad-numbers");
        let f = dir.join("bad.toml");
        std::fs::write(&f, "[[number]]\ntarget = \"cifar10\"\nvalu = 1\n").unwrap();
        let e = format!("{:#}", Paper::load(&f, "cifar10").err().unwrap());
        assert!(e.contains("bad.toml"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A scratch folder of one test (tests run in parallel: never share one).
    fn tempfile_dir(test: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-tables-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn tables_show_ours_beside_the_papers_numbers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = tempfile_dir("layout");
        let eval = out.join("sadajem/eval");
        std::fs::create_dir_all(&eval).unwrap();
        let w = |f: &str, v: Value| std::fs::write(eval.join(f), v.to_string()).unwrap();
        w("accuracy.json", serde_json::json!({"accuracy": 0.9512}));
        w("fid.json", serde_json::json!({"fid": {"fid": 12.345}}));
        w(
            "is.json",
            serde_json::json!({"is": {"mean": 8.5, "std": 0.1}}),
        );
        w(
            "ood.json",
            serde_json::json!({"sets": [{"name": "svhn", "n": 26032,
                "px": {"auroc": 0.9}, "py": {"auroc": 0.8}, "pxgrad": {"auroc": 0.7}}]}),
        );
        let models: Vec<Model> = ["sadajem", "jem-sam", "softmax"]
            .iter()
            .map(|k| {
                let config = root.join(format!("configs/cifar10/{k}.toml"));
                Model {
                    key: k.to_string(),
                    cfg: jem_train::TrainConfig::load(&config, &[]).unwrap(),
                    config,
                }
            })
            .collect();
        let mut paper = Paper::load(&root.join("configs/paper-numbers.toml"), "cifar10").unwrap();
        let mut md = String::new();
        main_tables(&mut md, &mut paper, &models, &out);
        ablation_tables(&mut md, &mut paper, &models, &out);
        assert!(
            md.contains("## Table 1: hybrid modelling on CIFAR-10"),
            "{md}"
        );
        let row = md.lines().find(|l| l.starts_with("| sadajem |")).unwrap();
        assert!(row.contains("| 95.12 | 8.50 ± 0.10 | 12.35 | 96.0–96.1 [1] | — | 9.41 [1] |"));
        assert!(md.contains("| softmax |") && md.contains("| — | — | — |"));
        // the ablation row is only in Table 5
        assert!(
            !md.split("## Table 5")
                .next()
                .unwrap()
                .contains("| jem-sam |")
        );
        assert!(md.contains("## Table 5") && !md.contains("## Table 6"));
        // Table 3: ours, and the paper's row beside it
        assert!(md.contains("| sadajem | 0.900 |"), "{md}");
        assert!(md.contains("| sadajem (paper) | 0.98 [1] |"), "{md}");
        assert!(md.contains("[1] third-party results page"));
        // Table 6 appears with a radius preset, its setting columns from the preset
        let config = root.join("configs/cifar10/sadajem-asam-rho2.0.toml");
        let rho = Model {
            key: "sadajem-asam-rho2.0".into(),
            cfg: jem_train::TrainConfig::load(&config, &[]).unwrap(),
            config,
        };
        let mut md = String::new();
        let with_rho = [models.into_iter().next().unwrap(), rho];
        ablation_tables(&mut md, &mut paper, &with_rho, &out);
        assert!(md.contains("## Table 6"), "{md}");
        assert!(md.contains("| sadajem-asam-rho2.0 | ASAM (2) |"), "{md}");
        assert!(md.contains("| sadajem | SAM (0.2) |"), "{md}");
        let _ = std::fs::remove_dir_all(out);
    }

    #[test]
    fn ablation_rows_are_told_apart_from_the_main_rows() {
        for k in [
            "jem-sam",
            "jempp-noda",
            "sadajem-sam-rho0.05",
            "sadajem-asam-rho2.0",
        ] {
            assert!(ablation_only(k), "{k}");
        }
        for k in [
            "sadajem",
            "sadajem-k10",
            "jem",
            "jempp",
            "softmax",
            "softmax-sam",
        ] {
            assert!(!ablation_only(k), "{k}");
        }
    }
}
