//! End-to-end tests of `jem train`: a tiny run, resume, and the errors a user can make.

use std::path::Path;
use std::process::{Command, Output};

fn jem(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jem"))
        .args(args)
        .env("JEM_CACHE_DIR", cache)
        .output()
        .expect("run jem")
}

const PRESET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/configs/fashion-mnist-quick/sadajem.toml"
);

/// Overrides that make the quick preset a few cheap iterations.
const TINY: [&str; 20] = [
    "--set",
    "data.px_batch_size=8",
    "--set",
    "data.clf_batch_size=8",
    "--set",
    "sampler.steps=1",
    "--set",
    "sampler.buffer_size=100",
    "--set",
    "eval.ood=[]",
    "--set",
    "eval.batch_size=100",
    "--set",
    "data.valid_size=200",
    "--set",
    "run.eval_every_iters=0",
    "--set",
    "run.log_every=1",
    "--set",
    "run.max_iters=2",
];

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn trains_resumes_and_reports_json() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let mut args = vec!["train", "--config", PRESET, "--out", run_s, "--quiet"];
    args.extend(TINY);
    let out = jem(&args, tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["iterations"], 2);
    assert!(summary["last_eval"]["test_acc"].as_f64().unwrap() >= 0.0);
    let resumed = jem(
        &[
            "train",
            "--resume",
            run_s,
            "--set",
            "run.max_iters=3",
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let summary: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(summary["iterations"], 3);
    // the same folder again without --resume: refused, the run is kept
    let again = jem(&args, tmp.path());
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
    // a truncated checkpoint: an error naming the file
    let last = run.join("last.safetensors");
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&last, &bytes[..bytes.len() / 3]).unwrap();
    let broken = jem(&["train", "--resume", run_s, "--quiet"], tmp.path());
    assert!(!broken.status.success());
    let e = stderr(&broken);
    assert!(
        e.contains("last.safetensors") && e.contains("not a readable"),
        "{e}"
    );
}

#[test]
fn bad_configs_are_errors_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (set, key) in [
        ("sampler.stepz=3", "sampler.stepz"),
        ("optim.lr=fast", "optim.lr"),
        ("optim.sam=adam", "optim.sam"),
        ("model.depth=12", "model.depth"),
        ("run.select_on=valid", "run.select_on"),
    ] {
        let mut args = vec!["train", "--config", PRESET, "--print-config", "--set", set];
        if key == "run.select_on" {
            args.extend(["--set", "data.valid_size=0"]);
        }
        let out = jem(&args, tmp.path());
        assert!(!out.status.success(), "{set} was accepted");
        assert!(stderr(&out).contains(key), "{set}: {}", stderr(&out));
    }
    let out = jem(&["train", "--config", "/no/such/preset.toml"], tmp.path());
    assert!(
        stderr(&out).contains("/no/such/preset.toml"),
        "{}",
        stderr(&out)
    );
    let out = jem(
        &["train", "--config", PRESET, "--device", "tpu"],
        tmp.path(),
    );
    assert!(stderr(&out).contains("--device"), "{}", stderr(&out));
    // the resolved config prints as TOML that parses back
    let out = jem(&["train", "--config", PRESET, "--print-config"], tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dataset = \"fashion-mnist-quick\""), "{text}");
}

#[test]
fn a_missing_data_set_is_an_error_naming_the_file_and_creates_no_run() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty-data");
    std::fs::create_dir(&empty).unwrap();
    let empty_s = empty.to_str().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let full = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/fashion-mnist/sadajem-wrn10-2.toml"
    );
    // the training set
    let out = jem(
        &[
            "train",
            "--config",
            full,
            "--data-dir",
            empty_s,
            "--out",
            run_s,
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    let file = empty.join("fashion-mnist/train-images-idx3-ubyte.gz");
    assert!(
        e.contains(file.to_str().unwrap())
            && e.contains("not found")
            && e.contains("jem data fetch fashion-mnist"),
        "{e}"
    );
    assert!(
        !run.exists(),
        "a run folder was created for a run that cannot start"
    );
    // an out-of-distribution set (the training set is embedded)
    let mut args = vec![
        "train",
        "--config",
        PRESET,
        "--data-dir",
        empty_s,
        "--out",
        run_s,
        "--quiet",
    ];
    args.extend(["--set", "eval.ood=[\"mnist\"]"]);
    let out = jem(&args, tmp.path());
    assert!(!out.status.success());
    let e = stderr(&out);
    let file = empty.join("mnist/t10k-images-idx3-ubyte.gz");
    assert!(
        e.contains("eval.ood") && e.contains(file.to_str().unwrap()) && e.contains("not found"),
        "{e}"
    );
    assert!(!run.exists());
}
