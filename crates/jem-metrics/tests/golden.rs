//! The exact metric functions against reference values from independent implementations
//! (pytorch-fid + scipy, mpmath at 50 digits, scikit-learn, torchmetrics, the SADA-JEM
//! reference's ECE, torch-fidelity's KID); `tests/golden/make_metrics_golden.py` and
//! `tests/golden/make_kid_golden.py` made the files.

use std::path::PathBuf;

use jem_metrics::calibration::{EceConvention, calibration};
#[cfg(feature = "fid")]
use jem_metrics::fid::{GaussianStats, frechet_distance};
use jem_metrics::inception_score::{inception_score, inception_score_from_logits};
use jem_metrics::npy::{NpyArray, read_npy};
use jem_metrics::ood::{auroc, ood_report, roc_curve};
use jem_metrics::{accuracy, confidences_and_hits, top_k_accuracy};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load(v: &Value) -> NpyArray {
    read_npy(&dir().join(v.as_str().unwrap())).unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn close(a: f64, b: f64, rel: f64, what: &str) {
    assert!(
        (a - b).abs() <= rel * b.abs().max(1e-300),
        "{what}: {a} vs {b} (rel {:e})",
        (a - b).abs() / b.abs()
    );
}

#[cfg(feature = "fid")]
fn stats(a: &NpyArray) -> GaussianStats {
    GaussianStats::from_features(&a.to_f64(), a.shape[0], a.shape[1]).unwrap()
}

#[test]
#[cfg(feature = "fid")]
fn fid_equals_the_50_digit_value_and_pytorch_fid() {
    let exp = expected();
    for (name, case) in exp["fid"].as_object().unwrap() {
        let (a, b) = (load(&case["a"]), load(&case["b"]));
        let r = frechet_distance(&stats(&a), &stats(&b)).unwrap();
        // exact to rounding (the 50-digit value saw the same float64 covariances); with
        // singular covariances the float64 rounding of their zero eigenvalues (~1e-16, square
        // roots ~1e-8) limits any route: scipy's sqrtm is 1.1e-8 off there, we are 1.4e-9
        let tol = if name == "singular" { 3e-9 } else { 1e-9 };
        close(r.fid, num(&case["exact"]), tol, &format!("{name} exact"));
        assert!(r.warnings.is_empty(), "{name}: {:?}", r.warnings);
        assert!(!r.offset_applied);
        // scipy's sqrtm is itself off by ~1e-8 relative on the singular cases
        let tol = if name == "random" || name == "float32" {
            1e-10
        } else {
            1e-7
        };
        close(
            r.fid,
            num(&case["pytorch_fid"]),
            tol,
            &format!("{name} pytorch-fid"),
        );
    }
}

#[test]
fn inception_score_matches_scipy_entropy() {
    let exp = expected();
    for (name, case) in exp["inception_score"].as_object().unwrap() {
        let splits = case["splits"].as_u64().unwrap() as usize;
        let is = if let Some(p) = case.get("probs") {
            let p = load(p);
            inception_score(&p.to_f64(), p.shape[1], splits).unwrap()
        } else {
            let l = load(&case["logits"]);
            inception_score_from_logits(&l.to_f64(), l.shape[1], splits).unwrap()
        };
        close(is.mean, num(&case["mean"]), 1e-12, name);
        close(is.std, num(&case["std"]), 1e-9, name);
        for (s, e) in is.splits.iter().zip(case["per_split"].as_array().unwrap()) {
            close(*s, num(e), 1e-12, name);
        }
    }
}

#[test]
fn ece_matches_torchmetrics_and_the_reference_with_edge_confidences() {
    let exp = expected();
    let e = &exp["ece"];
    let p = load(&e["probs"]);
    let classes = p.shape[1];
    let labels = load(&e["labels"]).to_labels("labels", classes).unwrap();
    let (conf, hits) = confidences_and_hits(&p.to_f64(), classes, &labels).unwrap();
    let tm = calibration(&conf, &hits, 15, EceConvention::Torchmetrics).unwrap();
    // torchmetrics sums in float32
    close(tm.ece, num(&e["torchmetrics_15"]["l1"]), 1e-5, "l1");
    close(tm.mce, num(&e["torchmetrics_15"]["max"]), 1e-5, "max");
    close(tm.rms, num(&e["torchmetrics_15"]["l2"]), 1e-5, "l2");
    let tm10 = calibration(&conf, &hits, 10, EceConvention::Torchmetrics).unwrap();
    close(tm10.ece, num(&e["torchmetrics_10"]), 1e-5, "10 bins");
    for bins in [20, 15] {
        let r = calibration(&conf, &hits, bins, EceConvention::Reference).unwrap();
        let key = format!("reference_{bins}");
        close(r.ece, num(&e[key.as_str()]), 1e-5, &key);
    }
    // a counterexample of the tolerance: placing edge confidences in the neighbouring bin
    // moves the ECE by far more than 1e-5 (so the tests above do check the binning)
    let shifted: Vec<f64> = conf.iter().map(|c| c - 1e-7).collect();
    let moved = calibration(&shifted, &hits, 15, EceConvention::Torchmetrics).unwrap();
    assert!(
        (moved.ece - tm.ece).abs() > 1e-4,
        "{} vs {}",
        moved.ece,
        tm.ece
    );
    close(
        accuracy(&p.to_f64(), classes, &labels).unwrap(),
        num(&e["accuracy"]),
        1e-15,
        "accuracy",
    );
    close(
        top_k_accuracy(&p.to_f64()[..400 * classes], classes, &labels[..400], 3).unwrap(),
        num(&e["top3_first400"]),
        1e-15,
        "top-3",
    );
    // float labels holding integers read the same
    let float_labels = read_npy(&dir().join("ece_labels_float.npy")).unwrap();
    assert_eq!(float_labels.to_labels("labels", classes).unwrap(), labels);
}

#[test]
fn ood_scores_match_scikit_learn_with_many_ties() {
    let exp = expected();
    let o = &exp["ood"];
    let (a, b) = (load(&o["in"]).to_f64(), load(&o["out"]).to_f64());
    close(auroc(&a, &b).unwrap(), num(&o["auroc"]), 1e-14, "auroc");
    let r = ood_report(&a, &b).unwrap();
    close(r.aupr_in, num(&o["aupr_in"]), 1e-14, "aupr in");
    close(r.aupr_out, num(&o["aupr_out"]), 1e-14, "aupr out");
    close(r.fpr_at_95_tpr, num(&o["fpr_at_95_tpr"]), 1e-14, "fpr95");
    let c = roc_curve(&a, &b).unwrap();
    let as_vec = |v: &Value| -> Vec<f64> { v.as_array().unwrap().iter().map(num).collect() };
    assert_eq!(c.fpr, as_vec(&o["roc_fpr"]));
    assert_eq!(c.tpr, as_vec(&o["roc_tpr"]));
    assert_eq!(c.thresholds[1..], as_vec(&o["roc_thresholds"])[..]);
}

/// torch-fidelity's KID on the same float32 features: its float64 run to rounding (the same
/// subsets, drawn by the same MT19937 stream), its float32 run to float32's rounding.
#[test]
#[cfg(feature = "fid")]
fn kid_equals_torch_fidelity_with_its_subsets() {
    use jem_metrics::kid::{KidOptions, NumpyRandomState, kid};
    let dir = dir().join("../kid");
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let e: Value = serde_json::from_str(&text).unwrap();
    let cases = e["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 3);
    for (name, c) in cases {
        let a = read_npy(&dir.join(c["features_1"].as_str().unwrap())).unwrap();
        let b = read_npy(&dir.join(c["features_2"].as_str().unwrap())).unwrap();
        let opts = KidOptions {
            subsets: c["subsets"].as_u64().unwrap() as usize,
            subset_size: c["subset_size"].as_u64().unwrap() as usize,
            degree: c["degree"].as_i64().unwrap() as i32,
            gamma: c["gamma"].as_f64(),
            coef0: num(&c["coef0"]),
            seed: c["seed"].as_u64().unwrap() as u32,
        };
        let first: Vec<usize> = c["first_subset_1"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let mut rng = NumpyRandomState::new(opts.seed);
        assert_eq!(
            rng.permutation(a.shape[0])[..opts.subset_size],
            first[..],
            "{name}"
        );
        let r = kid(&a.to_f64(), &b.to_f64(), a.shape[1], &opts).unwrap();
        close(
            r.mean,
            num(&c["mean_float64"]),
            1e-10,
            &format!("{name} mean"),
        );
        close(r.std, num(&c["std_float64"]), 1e-9, &format!("{name} std"));
        close(
            r.mean,
            num(&c["mean_float32"]),
            2e-5,
            &format!("{name} mean, f32"),
        );
        close(
            r.std,
            num(&c["std_float32"]),
            2e-5,
            &format!("{name} std, f32"),
        );
    }
}
