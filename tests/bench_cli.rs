//! End-to-end tests of `jem bench` and `jem bench parity` on the CPU, with tiny models.

use std::process::{Command, Output};

fn jem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jem"))
        .args(args)
        .output()
        .expect("run jem")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const TINY: [&str; 12] = [
    "--depth",
    "10",
    "--width",
    "1",
    "--batch-size",
    "4",
    "--sgld-steps",
    "1",
    "--buffer-size",
    "8",
    "--seed",
    "3",
];

#[test]
fn bench_on_the_cpu_writes_every_measure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sub/bench.json");
    let mut args = vec!["bench", "--device", "cpu", "--iters", "1", "--warmup", "0"];
    args.extend(TINY);
    args.extend(["--out", json.to_str().unwrap()]);
    let text = ok(&jem(&args));
    for m in [
        "clf_step",
        "sgld_step",
        "sgld_step_eval",
        "sadajem_iter",
        "sadajem_iter_shared",
    ] {
        assert!(
            text.contains(&format!("ours wrn10-1 {m} device=cpu")),
            "{text}"
        );
    }
    assert!(text.contains("hours per 200-epoch CIFAR-10 run (12500 iterations per epoch)"));
    // the script-like iteration prints its split as torch_baseline.py does
    let shared = text
        .lines()
        .find(|l| l.contains(" sadajem_iter_shared "))
        .unwrap();
    assert!(
        shared.contains(" sgld_ms=") && shared.contains(" sam_ms="),
        "{shared}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["precision"], "fp32");
    assert_eq!(v["config"]["batch_px"], 4);
    assert_eq!(v["config"]["batch_lab"], 4);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for (r, m) in results.iter().zip([
        "clf_step",
        "sgld_step",
        "sgld_step_eval",
        "sadajem_iter",
        "sadajem_iter_shared",
    ]) {
        assert_eq!(r["measure"], m);
        assert_eq!(r["images_per_iter"], 4);
        assert!(r["images_per_s"].as_f64().unwrap() > 0.0);
        for k in ["median_ms", "min_ms", "max_ms"] {
            assert!(r[k].as_f64().unwrap() > 0.0, "{k}");
        }
        assert_eq!(r["times_ms"].as_array().unwrap().len(), 1);
        let phases = r["phases_ms"].as_array().map_or(0, Vec::len);
        assert_eq!(
            phases,
            if m == "sadajem_iter_shared" { 2 } else { 0 },
            "{m}"
        );
    }
    assert!(v["hours_per_200_epochs_cifar10"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_mb"].as_f64().unwrap() > 1.0);
}

#[test]
fn one_measure_with_tf32_is_labelled() {
    let mut args = vec![
        "bench",
        "--measure",
        "clf_step",
        "--iters",
        "1",
        "--warmup",
        "0",
    ];
    args.extend(TINY);
    args.extend(["--batch-lab", "2", "--tf32"]);
    let text = ok(&jem(&args));
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ours ")).count(),
        1,
        "{text}"
    );
    assert!(text.contains("peak_rss_mb="), "{text}");
    assert!(
        text.contains("clf_step device=cpu precision=tf32 batch=2"),
        "{text}"
    );
}

#[test]
fn parity_of_the_cpu_with_itself_passes() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("parity.json");
    let mut args = vec!["bench", "parity", "--device", "cpu", "--tol", "0"];
    args.extend(TINY);
    args.extend(["--out", json.to_str().unwrap()]);
    let text = ok(&jem(&args));
    assert!(text.contains("parity: PASS"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["pass"], true);
    assert_eq!(v["reference"], "cpu");
    // --json: the same object on stdout, the human lines on stderr
    let mut args = vec!["bench", "parity", "--device", "cpu", "--tol", "0", "--json"];
    args.extend(TINY);
    let out = jem(&args);
    let stdout: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(stdout["checks"], v["checks"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("parity: PASS"));
    let checks: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "fwd_bwd.logits",
            "fwd_bwd.param_grads",
            "fwd_bwd.input_grad",
            "iteration.loss",
            "iteration.x_neg",
            "iteration.updates"
        ]
    );
}

/// `--portable`: the checked side runs candle's own operations (what a GPU runs) on the CPU;
/// against the CPU kernels it differs by rounding, which the floor bounds.
#[test]
fn parity_of_the_portable_path_with_the_kernels_passes() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("parity.json");
    let mut args = vec!["bench", "parity", "--device", "cpu", "--portable"];
    args.extend(TINY);
    args.extend(["--out", json.to_str().unwrap()]);
    let text = ok(&jem(&args));
    assert!(text.contains("cpu (portable) vs cpu"), "{text}");
    assert!(text.contains("parity: PASS"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["config"]["portable"], true);
    for c in v["checks"].as_array().unwrap() {
        assert!(c["floor_l2"].as_f64().unwrap() > 0.0, "{c}");
        // the paths differ (else this test would not test the portable path)
        if c["check"] == "fwd_bwd.param_grads" {
            assert!(c["max_abs"].as_f64().unwrap() > 0.0, "{c}");
        }
    }
}

#[test]
fn bad_flags_are_named() {
    let out = jem(&["bench", "--device", "gpu0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--device `gpu0`"));
    let out = jem(&["bench", "--iters", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--iters `x`"));
    let out = jem(&["bench", "--depth", "12", "--iters", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("depth 12"));
    // without the cuda feature a GPU device is refused with the reason
    if !cfg!(feature = "cuda") {
        let out = jem(&["bench", "parity", "--device", "cuda:0"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("without `--features cuda`"));
    }
}
