//! The paper's tables as `configs/paper-numbers.toml` holds them: the rows of Tables 1, 2, 3,
//! 5 and 6 and of the ECE values of section 4.2, with their published numbers, the preset
//! that reproduces each row, and the settings every paper preset must have. The report lays
//! the tables out from here, the reproduction plans its presets from here, and the tests hold
//! every preset to its row.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jem_sampler::SgldRule;
use jem_train::TrainConfig;
use jem_train::config::{L2Form, OptimKind, SamKind};
use serde::Deserialize;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperFile {
    /// Presets of ours that no row uses (the released code's, a validation split, ...).
    #[serde(default)]
    pub outside: Vec<String>,
    /// The paper's tables, in the paper's order.
    #[serde(default)]
    pub table: Vec<PaperTable>,
    /// The settings of every preset that a row names.
    #[serde(default)]
    pub preset: Vec<PresetSettings>,
}

/// One table of the paper.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperTable {
    /// Short id (`table1`, `table3-px`, `ece`, ...).
    pub id: String,
    /// Heading in the report.
    pub title: String,
    /// `cifar10` or `cifar100`: the reproduction that shows it.
    pub target: String,
    /// `main`, or `ablation` (its presets are trained with `--ablations` only).
    pub kind: TableKind,
    /// Columns: `accuracy`, `is`, `fid`, `ece`, `ood:<set>:<px|py>`.
    pub metrics: Vec<String>,
    /// The table's footnotes, as printed.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Also list the plan's other models under the paper's rows.
    #[serde(default)]
    pub extra_models: bool,
    /// Rows in the paper's order.
    pub row: Vec<PaperRow>,
}

/// Whether a table's presets belong to the main plan or to `--ablations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableKind {
    /// Tables 1-3 and the ECE values.
    Main,
    /// Tables 5 and 6.
    Ablation,
}

/// One row of a table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperRow {
    /// As printed in the paper.
    pub label: String,
    /// The preset that reproduces it (`cifar10/sadajem`), if we can train it.
    pub preset: Option<String>,
    /// Where the numbers come from (`paper, Table 1`).
    pub source: String,
    /// Metric -> the published number as printed.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// What the paper says about the stability of this row's training.
    pub stability: Option<String>,
}

/// The settings a paper preset must resolve to, written from its row of the paper.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetSettings {
    /// Path under `configs/` without `.toml`.
    pub path: String,
    /// Training data set.
    pub dataset: String,
    /// SGLD steps per iteration (K; JEM++'s M); 0 for a classifier.
    pub k: usize,
    /// `clipped`, `langevin` or `none`.
    pub sampler: String,
    /// `informative`, `uniform` or `none`.
    pub init: String,
    /// `sgd` or `adam`.
    pub optimizer: String,
    /// `none`, `sam` or `asam`.
    pub sam: String,
    /// SAM / ASAM radius.
    #[serde(default)]
    pub rho: f64,
    /// Data augmentation on the p(x) batch.
    pub px_augment: bool,
    /// Energy L2 coefficient.
    #[serde(default)]
    pub l2: f64,
    /// `mean-of-squares` or `square-of-mean` (only read when `l2 > 0`).
    pub l2_form: Option<String>,
    /// The row(s) and the paper's words behind the settings.
    pub paper: String,
}

impl PaperFile {
    /// Reads and checks the file: unique table ids, known metrics, every row's preset listed
    /// in `[[preset]]`, every `[[preset]]` used by a row, no preset both in a row and in
    /// `outside`.
    pub fn load(file: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let parsed: PaperFile =
            toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        parsed
            .check()
            .with_context(|| format!("checking {}", file.display()))?;
        Ok(parsed)
    }

    fn check(&self) -> Result<()> {
        let mut ids = BTreeSet::new();
        let listed: BTreeSet<&str> = self.preset.iter().map(|p| p.path.as_str()).collect();
        if listed.len() != self.preset.len() {
            bail!("a [[preset]] path is listed twice");
        }
        let mut used = BTreeSet::new();
        for t in &self.table {
            if !ids.insert(t.id.as_str()) {
                bail!("table id `{}` is used twice", t.id);
            }
            for m in &t.metrics {
                check_metric(m).with_context(|| format!("table {}", t.id))?;
            }
            for r in &t.row {
                if let Some(m) = r.values.keys().find(|m| !t.metrics.contains(m)) {
                    bail!(
                        "table {}, row `{}`: `{m}` is not a metric of the table",
                        t.id,
                        r.label
                    );
                }
                if let Some(p) = &r.preset {
                    if !listed.contains(p.as_str()) {
                        bail!(
                            "table {}, row `{}`: preset {p} has no [[preset]] entry",
                            t.id,
                            r.label
                        );
                    }
                    if self.outside.contains(p) {
                        bail!("preset {p} is both in a row and in `outside`");
                    }
                    used.insert(p.as_str());
                }
            }
        }
        if let Some(p) = listed.difference(&used).next() {
            bail!("[[preset]] {p} is the preset of no row");
        }
        Ok(())
    }

    /// The tables a reproduction of `target` shows.
    pub fn tables_of<'a>(&'a self, target: &'a str) -> impl Iterator<Item = &'a PaperTable> {
        self.table.iter().filter(move |t| t.target == target)
    }

    /// The presets that `target`'s rows name, in row order, each once: the main tables'
    /// first, then (with `ablations`) those only the ablation tables name.
    pub fn presets_of(&self, target: &str, ablations: bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for kind in [TableKind::Main, TableKind::Ablation] {
            if kind == TableKind::Ablation && !ablations {
                break;
            }
            for t in self.tables_of(target).filter(|t| t.kind == kind) {
                for p in t.row.iter().filter_map(|r| r.preset.as_ref()) {
                    if !out.contains(p) {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }
}

fn check_metric(m: &str) -> Result<()> {
    match m.split(':').collect::<Vec<_>>().as_slice() {
        ["accuracy" | "is" | "fid" | "ece"] => Ok(()),
        ["ood", set, "px" | "py" | "pxgrad"] if !set.is_empty() => Ok(()),
        _ => bail!("unknown metric `{m}`"),
    }
}

/// Where a preset's file is.
pub fn preset_file(configs: &Path, preset: &str) -> PathBuf {
    configs.join(format!("{preset}.toml"))
}

/// The differences between a resolved preset and the settings of its paper row, one line
/// each (`sampler.steps (K): 10, the paper's row: 5`); empty when it matches.
pub fn mismatches(cfg: &TrainConfig, want: &PresetSettings) -> Vec<String> {
    let generative = cfg.loss.px > 0.0;
    let sampler = match (generative, cfg.sampler.rule) {
        (false, _) => "none",
        (true, SgldRule::Clipped { .. }) => "clipped",
        (true, SgldRule::Langevin { .. }) => "langevin",
        (true, SgldRule::Unclipped { .. }) => "unclipped",
    };
    let init = if generative {
        match cfg.sampler.init {
            jem_sampler::InitKind::Informative => "informative",
            jem_sampler::InitKind::Uniform => "uniform",
        }
    } else {
        "none"
    };
    let optimizer = match cfg.optim.kind {
        OptimKind::Sgd => "sgd",
        OptimKind::Adam => "adam",
    };
    let sam = match cfg.optim.sam {
        SamKind::None => "none",
        SamKind::Sam => "sam",
        SamKind::Asam => "asam",
    };
    let l2_form = match cfg.loss.l2_form {
        L2Form::MeanOfSquares => "mean-of-squares",
        L2Form::SquareOfMean => "square-of-mean",
    };
    let k = if generative { cfg.sampler.steps } else { 0 };
    let mut out = Vec::new();
    let mut differ = |key: &str, ours: String, theirs: String| {
        if ours != theirs {
            out.push(format!("{key}: {ours}, the paper's row: {theirs}"));
        }
    };
    differ(
        "data.dataset",
        cfg.data.dataset.clone(),
        want.dataset.clone(),
    );
    differ("sampler.steps (K)", k.to_string(), want.k.to_string());
    differ("sampler.rule", sampler.into(), want.sampler.clone());
    differ("sampler.init", init.into(), want.init.clone());
    differ("optim.kind", optimizer.into(), want.optimizer.clone());
    differ("optim.sam", sam.into(), want.sam.clone());
    if cfg.optim.sam != SamKind::None {
        differ("optim.rho", cfg.optim.rho.to_string(), want.rho.to_string());
    }
    differ(
        "data.px_augment (DA on p(x))",
        (generative && cfg.data.px_augment).to_string(),
        want.px_augment.to_string(),
    );
    differ("loss.l2", cfg.loss.l2.to_string(), want.l2.to_string());
    if want.l2 > 0.0 {
        differ(
            "loss.l2_form",
            l2_form.into(),
            want.l2_form.clone().unwrap_or_default(),
        );
    }
    out
}

/// Every paper preset against its row: `(preset, mismatches)` for each one that differs or
/// does not load.
pub fn check_presets(paper: &PaperFile, configs: &Path) -> Vec<(String, Vec<String>)> {
    let mut bad = Vec::new();
    for want in &paper.preset {
        let file = preset_file(configs, &want.path);
        match TrainConfig::load(&file, &[]) {
            Ok(cfg) => {
                let m = mismatches(&cfg, want);
                if !m.is_empty() {
                    bad.push((format!("{} ({})", want.path, want.paper), m));
                }
            }
            Err(e) => bad.push((want.path.clone(), vec![format!("does not load: {e}")])),
        }
    }
    bad
}

/// `cargo xtask check-presets`: prints every paper preset that differs from its row.
pub fn check_presets_command() -> Result<()> {
    let paper = PaperFile::load(&crate::reproduce::paper_file())?;
    let bad = check_presets(&paper, &crate::reproduce::root().join("configs"));
    for (preset, lines) in &bad {
        eprintln!("{preset}:");
        for l in lines {
            eprintln!("  {l}");
        }
    }
    if !bad.is_empty() {
        bail!(
            "{} preset(s) differ from their rows of the paper",
            bad.len()
        );
    }
    println!(
        "{} presets match the settings of their rows of the paper",
        paper.preset.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests;
