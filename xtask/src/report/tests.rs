use super::*;
use crate::reproduce::load_models;

/// The quick report says its models are one-epoch models and points to the converged
/// results; `results.json` has one entry per model, `null` where nothing was measured.
#[test]
fn the_quick_report_points_to_the_converged_results() {
    let out = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let models = load_models(&[
        "fashion-mnist-quick/sadajem".into(),
        "fashion-mnist-quick/softmax".into(),
    ])
    .unwrap();
    std::fs::write(out.join(CLAIMS_FILE), "## Claims\n\n| claim | verdict |\n").unwrap();
    let md = write(&out, "quick", &models, &Timings::load(&out), &[], "cpu").unwrap();
    let text = std::fs::read_to_string(md).unwrap();
    assert!(text.contains("**These are one-epoch models**"), "{text}");
    assert!(text.contains("## Claims\n\n| claim | verdict |"), "{text}");
    assert!(text.contains("docs/results/fashion-mnist/"));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["models"].as_object().unwrap().len(), 2);
    assert!(results["models"]["sadajem"]["accuracy"].is_null());
    let _ = std::fs::remove_dir_all(out);
}

/// One table per norm, both in /255 units; the L2 table says what its radius measures.
#[test]
fn the_robustness_table_has_one_table_per_norm() {
    let row = |label: &str, norm: &str, step: f64, eps: &[f64]| {
        let points: Vec<Value> = eps
            .iter()
            .map(|e| {
                serde_json::json!({"eps": e / 255.0, "clean_accuracy": 0.9,
                    "robust_accuracy": 0.5, "last_iterate_accuracy": 0.55})
            })
            .collect();
        serde_json::json!({"label": label, "norm": norm, "result": {"n": 200, "points": points,
            "config": {"steps": 10, "step_size": step / 255.0, "random_start": true}}})
    };
    let rows = Value::Array(vec![
        row("a", "l_inf", 2.0, &[1.0, 8.0]),
        row("a", "l_2", 64.0, &[32.0, 255.0]),
        row("b", "l_inf", 2.0, &[1.0, 8.0]),
        row("b", "l_2", 64.0, &[32.0, 255.0]),
    ]);
    let mut md = String::new();
    robustness_table(&mut md, &rows);
    assert!(md.contains("PGD l_inf, 10 steps, step 2/255,"), "{md}");
    assert!(md.contains("| model | clean | 1/255 | 8/255 |"), "{md}");
    assert!(md.contains("PGD l_2, 10 steps, step 64/255,"), "{md}");
    assert!(md.contains("| model | clean | 32/255 | 255/255 |"), "{md}");
    assert!(md.contains("Euclidean length"), "{md}");
    assert_eq!(
        md.matches("| b | 0.900 | 0.500 (0.550) |").count(),
        2,
        "{md}"
    );
    assert_eq!(per255(&serde_json::json!(0.5 / 255.0)), "0.5");
    assert_eq!(per255(&Value::Null), "?");
}

/// The report lists the robustness figures `jem eval robustness` wrote, one or one per norm,
/// and nothing else of the folder.
#[test]
fn the_robustness_figures_are_the_ones_written() {
    let dir = tempfile::tempdir().unwrap();
    assert!(robustness_figures(dir.path()).is_empty());
    assert!(robustness_figures(&dir.path().join("missing")).is_empty());
    for f in [
        "robustness-linf.png",
        "robustness-l2.png",
        "robustness.json",
        "robustness-.png",
        "other.png",
    ] {
        std::fs::write(dir.path().join(f), b"").unwrap();
    }
    assert_eq!(
        robustness_figures(dir.path()),
        [
            ("robustness-linf.png".to_string(), Some("L-inf".to_string())),
            ("robustness-l2.png".to_string(), Some("L2".to_string())),
        ]
    );
    let single = tempfile::tempdir().unwrap();
    std::fs::write(single.path().join("robustness.png"), b"").unwrap();
    assert_eq!(
        robustness_figures(single.path()),
        [("robustness.png".to_string(), None)]
    );
}
