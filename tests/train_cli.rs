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

/// `jem train` on the tiny preset into `run` for 6 iterations, checkpoints every 3.
fn six_iterations(run: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jem"));
    c.args([
        "train",
        "--config",
        PRESET,
        "--out",
        run.to_str().unwrap(),
        "--quiet",
    ])
    .args(&TINY[..TINY.len() - 2])
    .args([
        "--set",
        "run.max_iters=6",
        "--set",
        "run.checkpoint_every_iters=3",
    ])
    .args(["--set", "sampler.steps=5"])
    .stdout(std::process::Stdio::null());
    c
}

/// The iterations `train.jsonl` has logged so far.
fn logged(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("train.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("event").is_none())
        .collect()
}

/// Starts the run and sends `signal` to it once iteration `at` is logged.
fn interrupt_at(run: &Path, cache: &Path, at: usize, signal: &str) -> std::process::ExitStatus {
    let mut child = six_iterations(run)
        .env("JEM_CACHE_DIR", cache)
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while logged(run).len() < at {
        assert!(t0.elapsed().as_secs() < 300, "iteration {at} never came");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before iteration {at}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    child.wait().unwrap()
}

/// Every tensor of two checkpoints, bit for bit, and the logged losses and energies.
fn assert_same_runs(a: &Path, b: &Path) {
    let load = |d: &Path| {
        jem_train::Checkpoint::load(&d.join("last.safetensors"), &candle_core::Device::Cpu).unwrap()
    };
    let (ca, cb) = (load(a), load(b));
    assert_eq!(ca.progress.iteration, cb.progress.iteration);
    let bits = |t: &candle_core::Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    let mut n = 0;
    for (name, t) in ca.model.iter().chain(&ca.optim.tensors) {
        let other = cb.model.get(name).or(cb.optim.tensors.get(name)).unwrap();
        assert!(bits(t) == bits(other), "tensor {name} differs");
        n += 1;
    }
    assert!(bits(ca.replay_buffer.as_ref().unwrap()) == bits(cb.replay_buffer.as_ref().unwrap()));
    let fields = |d: &Path| -> Vec<String> {
        logged(d)
            .iter()
            .map(|v| {
                format!(
                    "{} {} {} {}",
                    v["iteration"], v["loss"], v["e_pos"], v["e_neg"]
                )
            })
            .collect()
    };
    assert_eq!(fields(a), fields(b));
    println!(
        "{n} tensors, the replay buffer and {} log lines are the same",
        fields(a).len()
    );
}

#[cfg(unix)]
#[test]
fn killed_or_interrupted_runs_resume_to_the_uninterrupted_result() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let straight = tmp.path().join("straight");
    assert!(
        six_iterations(&straight)
            .env("JEM_CACHE_DIR", cache)
            .status()
            .unwrap()
            .success()
    );
    let resume = |run: &Path| {
        let out = jem(
            &["train", "--resume", run.to_str().unwrap(), "--quiet"],
            cache,
        );
        assert!(out.status.success(), "{}", stderr(&out));
    };
    // SIGKILL after iteration 4 is logged: the last checkpoint is at 3, iteration 4 (and
    // perhaps 5) run again after the resume
    let killed = tmp.path().join("killed");
    let status = interrupt_at(&killed, cache, 4, "-KILL");
    assert!(!status.success());
    let at_kill =
        jem_train::Checkpoint::load(&killed.join("last.safetensors"), &candle_core::Device::Cpu)
            .unwrap()
            .progress
            .iteration;
    println!(
        "killed with {} iterations logged, the checkpoint at {at_kill}",
        logged(&killed).len()
    );
    assert_eq!(at_kill, 3);
    resume(&killed);
    assert_same_runs(&straight, &killed);
    // SIGTERM after iteration 2: a checkpoint of the iteration it stopped at, exit code 130
    let stopped = tmp.path().join("stopped");
    let status = interrupt_at(&stopped, cache, 2, "-TERM");
    assert_eq!(status.code(), Some(130));
    assert!(!stopped.join(".lock").exists(), "the lock is released");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stopped.join("summary.json")).unwrap())
            .unwrap();
    assert!(
        summary["stopped"].as_str().unwrap().contains("interrupted"),
        "{summary}"
    );
    resume(&stopped);
    assert_same_runs(&straight, &stopped);
}
