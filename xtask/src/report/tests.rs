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
