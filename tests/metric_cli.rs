//! End-to-end tests of `jem metric ...` on `.npy` files: the values of the golden files of
//! jem-metrics (made by pytorch-fid, scikit-learn, torchmetrics), and clear errors (never a
//! panic) on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jem_metrics::npy::{npy_bytes, write_npy};
use serde_json::Value;

fn jem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jem"))
        .args(args)
        .output()
        .expect("run jem")
}

fn golden(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/jem-metrics/tests/golden/metrics")
        .join(name)
        .display()
        .to_string()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(golden("expected.json")).unwrap()).unwrap()
}

/// Runs a command that must succeed and print one JSON object.
fn json_of(args: &[&str]) -> Value {
    let out = jem(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim().lines().count(), 1, "one line of JSON: {text}");
    serde_json::from_str(text.trim()).unwrap()
}

/// Runs a command that must fail with a message containing every one of `needles`.
fn fails_with(args: &[&str], needles: &[&str]) {
    let out = jem(args);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!e.contains("panicked"), "{args:?} panicked: {e}");
    for n in needles {
        assert!(e.contains(n), "{args:?}: `{n}` not in: {e}");
    }
}

fn close(a: &Value, b: &Value, rel: f64) {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!((a - b).abs() <= rel * b.abs(), "{a} vs {b}");
}

#[test]
fn fid_of_feature_files_is_exact() {
    let exp = expected();
    for case in ["random", "float32", "singular"] {
        let c = &exp["fid"][case];
        let v = json_of(&[
            "metric",
            "fid",
            "--real",
            &golden(c["a"].as_str().unwrap()),
            "--fake",
            &golden(c["b"].as_str().unwrap()),
        ]);
        close(&v["fid"], &c["exact"], 3e-9);
        assert_eq!(v["warnings"].as_array().unwrap().len(), 0);
    }
}

#[test]
fn is_ece_auroc_and_accuracy_match_the_reference_tools() {
    let exp = expected();
    let is = json_of(&[
        "metric",
        "is",
        "--probs",
        &golden("is_probs.npy"),
        "--splits",
        "3",
    ]);
    close(
        &is["is_mean"],
        &exp["inception_score"]["dirichlet_splits3"]["mean"],
        1e-12,
    );
    close(
        &is["is_std"],
        &exp["inception_score"]["dirichlet_splits3"]["std"],
        1e-9,
    );
    // default splits: max(1, N / 5000) = 1
    let is1 = json_of(&["metric", "is", "--probs", &golden("is_probs.npy")]);
    close(
        &is1["is_mean"],
        &exp["inception_score"]["dirichlet_splits1"]["mean"],
        1e-12,
    );
    assert_eq!(is1["splits"], 1);

    let (probs, labels) = (golden("ece_probs.npy"), golden("ece_labels_float.npy"));
    let ece = json_of(&["metric", "ece", "--probs", &probs, "--labels", &labels]);
    close(&ece["ece"], &exp["ece"]["torchmetrics_15"]["l1"], 1e-5);
    close(&ece["mce"], &exp["ece"]["torchmetrics_15"]["max"], 1e-5);
    assert_eq!(ece["bins"].as_array().unwrap().len(), 16);
    let r = json_of(&[
        "metric",
        "ece",
        "--probs",
        &probs,
        "--labels",
        &golden("ece_labels.npy"),
        "--convention",
        "reference",
    ]);
    close(&r["ece"], &exp["ece"]["reference_20"], 1e-5);
    assert_eq!(r["bins"].as_array().unwrap().len(), 20);

    let o = json_of(&[
        "metric",
        "auroc",
        "--in", // the old name of --id, kept as an alias
        &golden("ood_in.npy"),
        "--ood",
        &golden("ood_out.npy"),
    ]);
    for k in ["auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr"] {
        close(&o[k], &exp["ood"][k], 1e-14);
    }
    let a = json_of(&["metric", "accuracy", "--probs", &probs, "--labels", &labels]);
    close(&a["accuracy"], &exp["ece"]["accuracy"], 1e-15);
}

fn write(dir: &Path, name: &str, shape: &[usize], values: &[f64]) -> String {
    let p = dir.join(name);
    write_npy(&p, shape, values).unwrap();
    p.display().to_string()
}

#[test]
fn bad_inputs_are_named_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = write(d, "good.npy", &[3, 2], &[0.1, 0.2, 0.3, 0.4, 0.5, 0.7]);
    let one = write(d, "one.npy", &[1, 2], &[0.1, 0.2]);
    let nan = write(d, "nan.npy", &[2, 2], &[0.1, f64::NAN, 0.3, 0.4]);
    let flat = write(d, "flat.npy", &[4], &[0.1, 0.2, 0.3, 0.4]);
    let wide = write(d, "wide.npy", &[3, 3], &[0.0; 9]);
    let probs = write(d, "probs.npy", &[2, 2], &[0.9, 0.1, 0.2, 0.8]);
    let labels_bad = write(d, "labels.npy", &[2], &[0.0, 2.0]);
    let labels_frac = write(d, "frac.npy", &[2], &[0.0, 0.5]);
    let trunc = d.join("trunc.npy");
    let bytes = npy_bytes(&[3, 2], &[1.0f64; 6]).unwrap();
    std::fs::write(&trunc, &bytes[..bytes.len() - 3]).unwrap();
    let trunc = trunc.display().to_string();
    let junk = d.join("junk.npy");
    std::fs::write(&junk, b"not an array").unwrap();
    let junk = junk.display().to_string();
    let missing = d.join("missing.npy").display().to_string();

    let fid = |a: &str, b: &str| ["metric", "fid", "--real", a, "--fake", b].map(String::from);
    let run = |args: [String; 6], needles: &[&str]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with(&args, needles);
    };
    run(
        fid(&good, &one),
        &["--fake", "one.npy", "at least 2 samples"],
    );
    run(fid(&good, &nan), &["--fake", "nan.npy", "NaN"]);
    run(fid(&good, &flat), &["--fake", "flat.npy", "2-D"]);
    run(fid(&good, &wide), &["dimensions"]);
    run(fid(&good, &trunc), &["trunc.npy", "truncated"]);
    run(fid(&junk, &good), &["--real", "junk.npy", "not a .npy"]);
    run(fid(&missing, &good), &["--real", "missing.npy"]);
    fails_with(
        &["metric", "ece", "--probs", &probs, "--labels", &labels_bad],
        &["--labels", "labels.npy", "= 2", "0..2"],
    );
    fails_with(
        &["metric", "ece", "--probs", &probs, "--labels", &labels_frac],
        &["--labels", "0.5"],
    );
    fails_with(
        &["metric", "ece", "--probs", &probs, "--labels", &flat],
        &["--labels", "need 2 labels"],
    );
    fails_with(
        &["metric", "ece", "--probs", &good, "--labels", &labels_bad],
        &["need 3 labels"],
    );
    let logits = write(d, "logits.npy", &[2, 2], &[3.0, -1.0, 0.2, 0.8]);
    let labels_ok = write(d, "labels_ok.npy", &[2], &[0.0, 1.0]);
    fails_with(
        &["metric", "ece", "--probs", &logits, "--labels", &labels_ok],
        &["--probs", "outside [0, 1]"],
    );
    fails_with(
        &["metric", "auroc", "--id", &nan, "--ood", &flat],
        &["--id", "1-D"],
    );
    let inf = write(d, "inf.npy", &[2], &[0.0, f64::INFINITY]);
    fails_with(
        &["metric", "auroc", "--id", &flat, "--ood", &inf],
        &["--ood", "inf"],
    );
    fails_with(
        &["metric", "is", "--probs", &probs, "--splits", "5"],
        &["splits", "5 splits of 2 samples"],
    );
    fails_with(
        &["metric", "is", "--probs", &good],
        &["--probs", "row 0 sums to", "--logits"],
    );
    fails_with(
        &["metric", "is", "--probs", &good, "--logits", &good],
        &["exactly one"],
    );
    fails_with(
        &[
            "metric",
            "fid",
            "--real",
            &good,
            "--fake-images",
            &good,
            "--weights",
            &missing,
        ],
        &["missing.npy", "jem data fetch inception"],
    );
}

/// The network path on stand-in weights (`inception::synthetic`): statistics of a PNG folder,
/// FID against the same images as a `.npy` (0), the Inception Score of images, and a data
/// set's statistics cached on the second call.
#[test]
fn images_through_the_inception_network() {
    use candle_core::Tensor;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let weights = d.join("w.safetensors");
    let tensors: std::collections::HashMap<String, Tensor> =
        jem_metrics::inception::synthetic::formula_weights().unwrap();
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let w = weights.display().to_string();

    let (n, size) = (4usize, 16usize);
    let pngs = d.join("pngs");
    std::fs::create_dir(&pngs).unwrap();
    let mut bytes = Vec::new();
    for b in 0..n {
        let img = image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
            let v = |c: u32| ((x * (b as u32 + 1) * 13 + y * 7 * (c + 1) + c * 50) % 256) as u8;
            image::Rgb([v(0), v(1), v(2)])
        });
        bytes.extend(img.as_raw().iter().map(|&p| i64::from(p)));
        img.save(pngs.join(format!("{b:03}.png"))).unwrap();
    }
    let npy = d.join("images.npy");
    write_npy(&npy, &[n, size, size, 3], &bytes).unwrap();
    let (pngs, npy) = (pngs.display().to_string(), npy.display().to_string());

    let stats = d.join("real.safetensors").display().to_string();
    let s = json_of(&[
        "metric",
        "stats",
        "--images",
        &pngs,
        "--out",
        &stats,
        "--weights",
        &w,
        "-q",
    ]);
    assert_eq!(s["n"], 4);
    let f = json_of(&[
        "metric",
        "fid",
        "--real-stats",
        &stats,
        "--fake-images",
        &npy,
        "--weights",
        &w,
        "-q",
    ]);
    assert_eq!(f["mean_term"].as_f64().unwrap(), 0.0, "{f}");
    assert!(f["fid"].as_f64().unwrap().abs() < 1e-6, "{f}");
    let is = json_of(&["metric", "is", "--images", &npy, "--weights", &w, "-q"]);
    assert!(is["is_mean"].as_f64().unwrap() >= 1.0, "{is}");

    let cache = d.join("cache").display().to_string();
    let args = [
        "metric",
        "stats",
        "--dataset",
        "mnist-quick",
        "--split",
        "test",
        "--max-images",
        "3",
        "--cache-dir",
        &cache,
        "--weights",
        &w,
        "-q",
    ];
    let first = json_of(&args);
    assert_eq!(
        (first["cached"].as_bool(), first["n"].as_u64()),
        (Some(false), Some(3))
    );
    let second = json_of(&args);
    assert_eq!(second["cached"].as_bool(), Some(true));
    assert_eq!(first["stats"], second["stats"]);
}

#[test]
fn kid_of_feature_files_equals_torch_fidelity() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/jem-metrics/tests/golden/kid");
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let c = &e["cases"]["shifted"];
    let file = |k: &str| dir.join(c[k].as_str().unwrap()).display().to_string();
    let (a, b) = (file("features_1"), file("features_2"));
    let v = json_of(&[
        "metric",
        "kid",
        "--real",
        &a,
        "--fake",
        &b,
        "--subsets",
        "20",
        "--subset-size",
        "100",
    ]);
    close(&v["kid_mean"], &c["mean_float64"], 1e-10);
    close(&v["kid_std"], &c["std_float64"], 1e-9);
    assert_eq!(v["n_real"], 300);
    fails_with(
        &["metric", "kid", "--real", &a, "--fake", &b],
        &["subset size 1000", "300"],
    );
    fails_with(
        &[
            "metric",
            "kid",
            "--real",
            &a,
            "--real-images",
            &b,
            "--fake",
            &b,
        ],
        &["exactly one of --real and --real-images"],
    );
}
