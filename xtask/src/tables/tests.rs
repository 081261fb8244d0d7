use super::*;
use crate::reproduce::{load_models, paper_file};
use serde_json::{Value, json};

/// A scratch folder of one test (tests run in parallel: never share one).
fn scratch(test: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-tables-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(out: &Path, key: &str, file: &str, v: Value) {
    let dir = out.join(key).join(if file == "summary.json" {
        "run"
    } else {
        "eval"
    });
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), v.to_string()).unwrap();
}

fn row<'a>(md: &'a str, start: &str) -> &'a str {
    md.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no row {start} in\n{md}"))
}

/// Results of two models: SADA-JEM (K = 5) with two rollbacks, JEM diverged.
fn results(out: &Path) {
    write(out, "sadajem", "accuracy.json", json!({"accuracy": 0.9512}));
    write(out, "sadajem", "fid.json", json!({"fid": {"fid": 12.345}}));
    write(
        out,
        "sadajem",
        "is.json",
        json!({"is": {"mean": 8.5, "std": 0.1}}),
    );
    write(
        out,
        "sadajem",
        "ood.json",
        json!({"sets": [{"name": "svhn", "n": 26032,
            "px": {"auroc": 0.9}, "py": {"auroc": 0.8}, "pxgrad": {"auroc": 0.7}}]}),
    );
    let event = |it: u64, to: Value, change: &str| {
        json!({"iteration": it, "cause": "non-finite loss NaN", "to_iteration": to,
               "change": change})
    };
    write(
        out,
        "sadajem",
        "summary.json",
        json!({"rollbacks": 2, "diverged": false, "stopped": "the schedule ended",
               "rollback_events": [event(10, json!(8), "new random stream (seed offset 1)"),
                                   event(20, json!(16), "new random stream (seed offset 2)")]}),
    );
    write(
        out,
        "jem",
        "summary.json",
        json!({"rollbacks": 2, "diverged": true, "stopped": "diverged: ...",
               "rollback_events": [event(25, json!(24), "new random stream (seed offset 1)"),
                                   event(30, Value::Null, "none: the run stopped")]}),
    );
}

#[test]
fn every_row_of_the_papers_tables_has_ours_beside_the_papers_number() {
    let out = scratch("cifar10");
    results(&out);
    let paper = PaperFile::load(&paper_file()).unwrap();
    let presets = paper.presets_of("cifar10", false);
    let models = load_models(&presets).unwrap();
    let mut md = String::new();
    write_tables(&mut md, Some(&paper), "cifar10", &models, &out);
    for t in paper.tables_of("cifar10") {
        assert!(md.contains(&format!("## {}\n", t.title)), "{}", t.title);
        for r in &t.row {
            assert!(
                md.contains(&format!("| {} |", r.label)),
                "{}: {}",
                t.id,
                r.label
            );
        }
    }
    assert_eq!(
        row(&md, "| SADA-JEM (K=5) | `sadajem` | 95.12 |"),
        "| SADA-JEM (K=5) | `sadajem` | 95.12 | 95.5 | 8.50 ± 0.10 | 8.77 | 12.35 | 9.41 \
         | 2 rollbacks (it. 10, 20) |  |"
    );
    // a row we cannot train: the paper's numbers only
    assert_eq!(
        row(&md, "| IGEBM (K=60) [10] |"),
        "| IGEBM (K=60) [10] | — | — | 49.1 | — | 8.30 | — | 37.9 | — |  |"
    );
    // the stability columns: our divergence beside the paper's words
    let jem = row(&md, "| JEM (K=20)* [17] | `jem` |");
    assert!(
        jem.contains("| diverged at it. 30 after 1 rollback | unstable, regularly diverged"),
        "{jem}"
    );
    assert!(row(&md, "| Softmax | `softmax` |").contains("| — |  |"));
    // Table 3: ours beside the paper's, in the paper's column order
    assert_eq!(
        row(&md, "| SADA-JEM (K=5) | `sadajem` | 0.900 |"),
        "| SADA-JEM (K=5) | `sadajem` | 0.900 | .91 | — | .79 | — | .90 | — | .82 |"
    );
    assert!(
        md.contains("| SADA-JEM (K=5) | `sadajem` | 0.800 | .92 |"),
        "{md}"
    );
    // Tables 5 and 6 without --ablations: the presets that would run
    assert!(
        md.contains("| JEM +SAM | `jem-k10-sam` (with `--ablations`) | — | 90.1 | — | 35.0 |"),
        "{md}"
    );
    assert!(
        md.contains("| SAM (rho = 0.2) | `sadajem-k10` | — | 96.0 | — | 11.4 |"),
        "{md}"
    );
    assert!(row(&md, "| ASAM (rho = 8) |").ends_with("| diverged after the 2nd epoch |"));
    // the protocol beside the FID columns, the sources, the paper's footnotes
    assert!(md.contains("filtered by confidence per predicted class"));
    assert!(md.contains("Paper's numbers: paper, Table 1 (`configs/paper-numbers.toml`)."));
    assert!(md.contains("Paper: * The training is unstable and regularly diverged."));
    // CIFAR-10 has no ECE in the paper: ours alone
    assert!(md.contains("## Calibration (ours)"));
    // the stability section lists every rollback
    assert!(md.contains(
        "- sadajem: iteration 10: non-finite loss NaN; rolled back to 8, new random stream (seed offset 1)"
    ));
    assert!(md.contains("- jem: iteration 30: non-finite loss NaN; the guard's budget was spent"));
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn cifar100_has_table_2_and_the_ece_values_with_our_other_models_under_them() {
    let out = scratch("cifar100");
    write(
        &out,
        "sadajem-k10",
        "calibration.json",
        json!({"reference": {"ece": 0.031}}),
    );
    write(
        &out,
        "sadajem",
        "calibration.json",
        json!({"reference": {"ece": 0.025}}),
    );
    let paper = PaperFile::load(&paper_file()).unwrap();
    let models = load_models(&paper.presets_of("cifar100", false)).unwrap();
    let mut md = String::new();
    write_tables(&mut md, Some(&paper), "cifar100", &models, &out);
    assert!(md.contains("## Table 2: results on CIFAR-100"));
    assert!(
        md.contains("| SADA-JEM (K=10) | `sadajem-k10` | 3.10 | 2.04 |"),
        "{md}"
    );
    assert!(
        md.contains("| (ours only) | `sadajem` | 2.50 | — |"),
        "{md}"
    );
    assert!(!md.contains("## Calibration (ours)"));
    assert!(!md.contains("## Table 1"));
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn targets_the_paper_does_not_have_get_our_tables_only() {
    let out = scratch("quick");
    write(
        &out,
        "sadajem",
        "accuracy.json",
        json!({"accuracy": 0.6475}),
    );
    write(
        &out,
        "sadajem",
        "summary.json",
        json!({"rollbacks": 0, "diverged": false}),
    );
    let models = load_models(&[
        "fashion-mnist-quick/sadajem".into(),
        "fashion-mnist-quick/softmax".into(),
    ])
    .unwrap();
    let paper = PaperFile::load(&paper_file()).unwrap();
    let mut md = String::new();
    write_tables(&mut md, Some(&paper), "quick", &models, &out);
    assert!(!md.contains("paper's row"));
    assert!(md.contains("The paper has no results on this data set"));
    assert!(row(&md, "| sadajem |").contains("| 64.75 | — | — | — | stable (0 rollbacks) |"));
    assert!(row(&md, "| softmax |").ends_with("| — |"));
    assert!(md.contains("No model of this reproduction rolled back."));
    let _ = std::fs::remove_dir_all(out);
}

/// A FID from `<model>/rerun/eval/fid.json` fills a model's missing one, marked as the second
/// run's in the table and in `results.json`; a first run's own FID wins over a rerun's.
#[test]
fn a_reruns_fid_fills_only_a_missing_one_and_says_so() {
    let out = scratch("rerun");
    let rerun = |key: &str, fid: f64| {
        let dir = out.join(key).join("rerun/eval");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("fid.json"),
            json!({"fid": {"fid": fid}}).to_string(),
        )
        .unwrap();
    };
    write(&out, "lost", "accuracy.json", json!({"accuracy": 0.8}));
    rerun("lost", 31.25);
    write(&out, "kept", "fid.json", json!({"fid": {"fid": 12.5}}));
    rerun("kept", 99.0);
    let lost = crate::results::Results::load(&out, "lost");
    assert_eq!(lost.cell("fid"), "31.25 (second run)");
    assert_eq!(lost.cell("accuracy"), "80.00");
    let entry = lost.json_entry();
    assert_eq!(
        (entry["fid"].as_f64(), &entry["fid_from_rerun"]),
        (Some(31.25), &json!(true))
    );
    let kept = crate::results::Results::load(&out, "kept");
    assert_eq!(kept.cell("fid"), "12.50");
    assert_eq!(kept.json_entry()["fid_from_rerun"], json!(false));
    let none = crate::results::Results::load(&out, "absent");
    assert_eq!(
        (none.cell("fid"), none.json_entry()["fid"].clone()),
        ("—".into(), Value::Null)
    );
    // the report's table says which model's FID is a rerun's, and why
    rerun("sadajem", 24.0625);
    let models = load_models(&[
        "fashion-mnist-quick/sadajem".into(),
        "fashion-mnist-quick/softmax".into(),
    ])
    .unwrap();
    let mut md = String::new();
    write_tables(&mut md, None, "quick", &models, &out);
    assert!(
        row(&md, "| sadajem |").contains("| 24.06 (second run) |"),
        "{md}"
    );
    assert!(md.contains("A FID marked \"(second run)\" (`sadajem`) is that of a rerun"));
    let _ = std::fs::remove_dir_all(out);
}
