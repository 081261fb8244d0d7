//! The training loop end to end on the embedded Fashion-MNIST subset with a tiny network:
//! resume is bit-identical, the divergence guard rolls back, presets parse.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use candle_core::{Device, Tensor};
use jem_train::checkpoint::Checkpoint;
use jem_train::{TrainConfig, TrainError, TrainOptions, Trainer};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The quick preset shrunk to a few cheap iterations.
fn tiny(extra: &[&str]) -> TrainConfig {
    let mut sets: Vec<String> = [
        "data.px_batch_size=8",
        "data.clf_batch_size=8",
        "sampler.steps=2",
        "sampler.buffer_size=100",
        "sampler.reinit_freq=0.3",
        "eval.ood=[]",
        "eval.batch_size=100",
        "data.valid_size=200",
        "run.eval_every_iters=0",
        "run.log_every=1",
        "run.grid_every=2",
        "schedule.warmup_iters=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    TrainConfig::load(
        &repo().join("configs/fashion-mnist-quick/sadajem.toml"),
        &sets,
    )
    .unwrap()
}

/// One statistics cache for all tests (computed once: setups are serialized).
fn shared_cache() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

static SETUP: Mutex<()> = Mutex::new(());

fn start(cfg: TrainConfig, dir: &Path) -> jem_train::Result<Trainer> {
    let _one_at_a_time = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    Trainer::new(cfg, options(dir))
}

fn resume(dir: &Path, sets: &[&str]) -> jem_train::Result<Trainer> {
    let _one_at_a_time = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Trainer::resume(options(dir), &sets)
}

fn options(dir: &Path) -> TrainOptions {
    TrainOptions {
        run_dir: dir.to_path_buf(),
        data_dir: dir.join("no-data-needed"),
        cache_dir: shared_cache().to_path_buf(),
        device: Device::Cpu,
        quiet: true,
    }
}

/// A run's JSON-lines log (`train.jsonl`, `eval.jsonl`) split into iteration records and
/// events (`divergence`, `rollback`); every line must parse.
fn read_log(dir: &Path, file: &str) -> (Vec<Value>, Vec<Value>) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{file}: {e}: {l}")))
        .partition(|v| v.get("event").is_none())
}

/// The `iteration` of each record.
fn iterations(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .map(|r| r["iteration"].as_u64().unwrap())
        .collect()
}

fn assert_same_checkpoints(a: &Path, b: &Path) {
    let ca = Checkpoint::load(a, &Device::Cpu).unwrap();
    let cb = Checkpoint::load(b, &Device::Cpu).unwrap();
    assert_eq!(ca.progress.iteration, cb.progress.iteration);
    for (name, ta) in &ca.model {
        assert!(
            bits(ta) == bits(&cb.model[name]),
            "model tensor {name} differs"
        );
    }
    assert_eq!(ca.optim.tensors.len(), cb.optim.tensors.len());
    for (name, ta) in &ca.optim.tensors {
        assert!(
            bits(ta) == bits(&cb.optim.tensors[name]),
            "optimizer tensor {name} differs"
        );
    }
    assert!(bits(ca.replay_buffer.as_ref().unwrap()) == bits(cb.replay_buffer.as_ref().unwrap()));
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn two_plus_two_resumed_iterations_equal_four_straight_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("straight"), tmp.path().join("resumed"));
    let s = start(tiny(&["run.max_iters=4"]), &a)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(s.iterations, 4);
    let s = start(tiny(&["run.max_iters=2"]), &b)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(s.iterations, 2);
    let mut t = resume(&b, &["run.max_iters=4"]).unwrap();
    assert_eq!(t.progress().iteration, 2);
    assert_eq!(t.run().unwrap().iterations, 4);
    // one trainer per run folder: a second one is refused while the first lives
    let e = resume(&b, &[]).err().unwrap().to_string();
    assert!(e.contains("is training in this run folder"), "{e}");
    drop(t);
    assert!(!b.join(".lock").exists());
    let ck = |dir: &Path| dir.join("last.safetensors");
    assert_eq!(
        Checkpoint::load(&ck(&a), &Device::Cpu)
            .unwrap()
            .progress
            .iteration,
        4
    );
    assert_same_checkpoints(&ck(&a), &ck(&b));
    // the run folder has what a researcher looks at
    for f in [
        "config.toml",
        "train.jsonl",
        "eval.jsonl",
        "summary.json",
        "samples/neg-0000004.png",
        "samples/buffer-final.png",
        "curves/loss.png",
        "curves/energy.png",
        "curves/accuracy.png",
    ] {
        assert!(b.join(f).exists(), "{f} missing");
    }
    let (records, events) = read_log(&b, "train.jsonl");
    assert_eq!(
        iterations(&records),
        [1, 2, 3, 4],
        "one log line per iteration across both sessions"
    );
    assert!(events.is_empty(), "{events:?}");
    assert!(
        records
            .iter()
            .all(|r| r["e_pos"].is_f64() && r["ce"].is_f64())
    );
    // a resumed run may only change when to stop, log and evaluate
    let e = resume(&b, &["optim.lr=1"]).err().unwrap().to_string();
    assert!(e.contains("optim.lr"), "{e}");
    // a new run does not overwrite an existing one
    let e = start(tiny(&[]), &b).err().unwrap().to_string();
    assert!(e.contains("--resume"), "{e}");
    // the model part of a checkpoint does not resume (it has no momentum and no buffer)
    let full = Checkpoint::load(&ck(&b), &Device::Cpu).unwrap();
    full.model_only().save(&ck(&b)).unwrap();
    let e = resume(&b, &[]).err().unwrap().to_string();
    assert!(e.contains("holds the model only"), "{e}");
}

#[test]
fn by_default_a_divergence_retries_with_a_new_seed_and_the_same_hyper_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let cfg = tiny(&[
        "run.max_iters=4",
        "run.checkpoint_every_iters=1",
        "guard.inject_nan_at=[2]",
    ]);
    assert_eq!(cfg.guard.recovery, [jem_train::config::Recovery::NewSeed]);
    let mut t = start(cfg, &dir).unwrap();
    let s = t.run().unwrap();
    assert_eq!((s.iterations, s.rollbacks, s.diverged), (4, 1, false));
    let g = &t.progress().guard;
    // the experiment is unchanged: same learning rate, same K
    assert_eq!((g.failures, g.seed_offset, g.extra_steps), (1, 1, 0));
    assert_eq!(g.lr_scale, 1.0);
    let (records, events) = read_log(&dir, "train.jsonl");
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(iterations(&records), [1, 2, 3, 4]);
    assert_eq!(events[0]["event"], "divergence");
    assert_eq!(events[0]["iteration"], 2);
    assert_eq!(events[1]["event"], "rollback");
    assert_eq!(events[1]["to_iteration"], 2);
    // summary.json lists the rollback: iteration, cause, what changed
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["rollbacks"], 1);
    assert_eq!(summary["diverged"], false);
    let e = &summary["rollback_events"][0];
    assert_eq!(
        (e["iteration"].as_u64(), e["to_iteration"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(
        e["cause"].as_str().unwrap().contains("non-finite loss"),
        "{e}"
    );
    assert_eq!(e["change"], "new random stream (seed offset 1)");
    // the recovery state survives in the checkpoint, so a resumed run keeps it
    let ck = Checkpoint::load(&dir.join("last.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(ck.progress.guard.seed_offset, 1);
    assert_eq!(ck.progress.guard.events.len(), 1);
}

#[test]
fn lowering_the_lr_and_adding_steps_are_opt_in_recoveries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let cfg = tiny(&[
        "run.max_iters=4",
        "run.checkpoint_every_iters=1",
        "guard.inject_nan_at=[2]",
        "guard.recovery=[\"new-seed\", \"lower-lr\", \"more-steps\"]",
    ]);
    let mut t = start(cfg, &dir).unwrap();
    let s = t.run().unwrap();
    assert_eq!((s.iterations, s.rollbacks), (4, 1));
    let g = &t.progress().guard;
    assert_eq!((g.failures, g.seed_offset, g.extra_steps), (1, 1, 5));
    assert!((g.lr_scale - 0.5).abs() < 1e-12);
    assert_eq!(
        s.rollback_events[0].change,
        "new random stream (seed offset 1), learning rate x0.5, K + 5 SGLD steps"
    );
}

#[test]
fn divergence_beyond_the_budget_stops_with_a_clear_error_and_a_sound_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let cfg = tiny(&[
        "run.max_iters=3",
        "guard.max_failures=0",
        "guard.inject_nan_at=[1]",
    ]);
    let err = start(cfg, &dir).unwrap().run().err().unwrap();
    assert!(matches!(err, TrainError::Diverged(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("iteration 1") && msg.contains("guard.max_failures"),
        "{msg}"
    );
    let ck = Checkpoint::load(&dir.join("last.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(ck.progress.iteration, 0);
    // the divergence is a result: summary.json says the run stopped on it
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        (&summary["diverged"], &summary["rollbacks"]),
        (&Value::Bool(true), &Value::from(0))
    );
    assert!(
        summary["stopped"].as_str().unwrap().starts_with("diverged"),
        "{summary}"
    );
    let e = &summary["rollback_events"][0];
    assert_eq!(e["iteration"], 1);
    assert!(e["to_iteration"].is_null(), "{e}");
}

#[test]
fn the_softmax_baseline_trains_without_a_sampler() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let cfg = TrainConfig::load(
        &repo().join("configs/fashion-mnist-quick/softmax.toml"),
        &[
            "run.max_iters=3".into(),
            "eval.ood=[]".into(),
            "data.clf_batch_size=8".into(),
            "data.valid_size=200".into(),
            "eval.batch_size=100".into(),
            "run.eval_every_iters=0".into(),
        ],
    )
    .unwrap();
    let mut t = start(cfg, &dir).unwrap();
    assert!(t.buffer().is_none());
    let s = t.run().unwrap();
    assert_eq!(s.iterations, 3);
    let ck = Checkpoint::load(&dir.join("last.safetensors"), &Device::Cpu).unwrap();
    assert!(ck.replay_buffer.is_none());
    // no energy term: the energies are not computed, so they are null, not zeros, and
    // there is no energy chart
    let (records, _) = read_log(&dir, "train.jsonl");
    assert_eq!(
        iterations(&records),
        [3],
        "run.log_every = 10: a line at the end"
    );
    for r in &records {
        for k in ["e_pos", "e_neg", "e_diff"] {
            assert!(r[k].is_null(), "{k}: {r}");
        }
        assert!(r["ce"].is_f64() && r["loss"].is_f64(), "{r}");
    }
    assert!(dir.join("curves/loss.png").exists());
    assert!(!dir.join("curves/energy.png").exists());
}

#[test]
fn a_run_killed_after_its_last_checkpoint_resumes_with_each_iteration_logged_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let last = dir.join("last.safetensors");
    start(tiny(&["run.max_iters=2"]), &dir)
        .unwrap()
        .run()
        .unwrap();
    let at_2 = tmp.path().join("at-2.safetensors");
    std::fs::copy(&last, &at_2).unwrap();
    resume(&dir, &["run.max_iters=4"]).unwrap().run().unwrap();
    let at_4 = tmp.path().join("at-4.safetensors");
    std::fs::copy(&last, &at_4).unwrap();
    // as if killed after iteration 4 with the last checkpoint at 2, in the middle of
    // writing a log line and a checkpoint
    std::fs::copy(&at_2, &last).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("train.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"iteration\": 5, \"e_p").unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = dir.join(format!("last.safetensors.tmp{dead}"));
    let foreign = dir.join(format!("notes.txt.tmp{dead}"));
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    std::fs::write(&foreign, b"not ours").unwrap();

    let mut t = resume(&dir, &["run.max_iters=4"]).unwrap();
    assert_eq!(t.progress().iteration, 2);
    if cfg!(target_os = "linux") {
        assert!(!stale.exists(), "the dead process's temporary file stays");
    }
    assert!(foreign.exists(), "a file that is not ours was removed");
    let (records, _) = read_log(&dir, "train.jsonl");
    assert_eq!(iterations(&records), [1, 2], "trimmed to the checkpoint");
    t.run().unwrap();
    let (records, events) = read_log(&dir, "train.jsonl");
    assert_eq!(iterations(&records), [1, 2, 3, 4]);
    assert!(events.is_empty(), "{events:?}");
    let (evals, _) = read_log(&dir, "eval.jsonl");
    assert_eq!(iterations(&evals), [2, 4]);
    assert_same_checkpoints(&at_4, &last);
}

#[test]
fn a_rollback_logs_each_iteration_once_and_keeps_the_best_model_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // checkpoint at 3, evaluation (and perhaps a new best) at every iteration, NaN at 6:
    // the run rolls back from 6 to 3 and does 4, 5, 6 again
    let cfg = tiny(&[
        "run.max_iters=7",
        "run.checkpoint_every_iters=3",
        "run.eval_every_iters=1",
        "guard.inject_nan_at=[6]",
    ]);
    let mut t = start(cfg, &dir).unwrap();
    let s = t.run().unwrap();
    assert_eq!((s.iterations, s.rollbacks), (7, 1));
    let (records, events) = read_log(&dir, "train.jsonl");
    assert_eq!(
        iterations(&records),
        [1, 2, 3, 4, 5, 6, 7],
        "each iteration once"
    );
    assert_eq!(
        events.len(),
        2,
        "the divergence and the rollback stay: {events:?}"
    );
    let (evals, _) = read_log(&dir, "eval.jsonl");
    assert_eq!(iterations(&evals), [0, 1, 2, 3, 4, 5, 6, 7]);
    // best.safetensors is the model the final progress calls best; one written in the
    // abandoned stretch (4 or 5) is kept under another name
    let best_at = t.progress().best.map(|(_, i)| i);
    let best = dir.join("best.safetensors");
    if best.exists() {
        let on_disk = Checkpoint::load(&best, &Device::Cpu)
            .unwrap()
            .progress
            .iteration;
        assert_eq!(Some(on_disk), best_at);
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(rest) = name.strip_prefix("best-abandoned-") {
            let at: u64 = rest.trim_end_matches(".safetensors").parse().unwrap();
            assert!((4..6).contains(&at), "{name}");
        }
    }
}

#[test]
fn incomplete_checkpoints_are_refused_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let last = dir.join("last.safetensors");
    start(tiny(&["run.max_iters=2"]), &dir)
        .unwrap()
        .run()
        .unwrap();
    let good = std::fs::read(&last).unwrap();
    let load = || Checkpoint::load(&last, &Device::Cpu).unwrap();
    // a momentum buffer missing: resuming would restart that parameter's momentum at zero
    let mut ck = load();
    let key = ck.optim.tensors.keys().next().unwrap().clone();
    ck.optim.tensors.remove(&key);
    ck.save(&last).unwrap();
    let e = resume(&dir, &[]).err().unwrap().to_string();
    assert!(
        e.contains("last.safetensors is incomplete") && e.contains(&format!("`{key}`")),
        "{e}"
    );
    // an empty replay buffer
    std::fs::write(&last, &good).unwrap();
    let mut ck = load();
    let b = ck.replay_buffer.as_ref().unwrap();
    ck.replay_buffer = Some(b.narrow(0, 0, 0).unwrap());
    ck.save(&last).unwrap();
    let e = resume(&dir, &[]).err().unwrap().to_string();
    assert!(e.contains("replay buffer is [0, 1, 32, 32]"), "{e}");
    // the complete one resumes
    std::fs::write(&last, &good).unwrap();
    assert_eq!(resume(&dir, &[]).unwrap().progress().iteration, 2);
}

#[test]
fn a_run_with_dropout_resumes_exactly() {
    // the dropout generator's position is in the checkpoint, so 2 + 2 iterations draw the
    // same masks as 4 (before it was saved, 79 of 83 tensors differed)
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("straight"), tmp.path().join("resumed"));
    let cfg = |n: &str| tiny(&["model.dropout=0.3", n]);
    start(cfg("run.max_iters=4"), &a).unwrap().run().unwrap();
    start(cfg("run.max_iters=2"), &b).unwrap().run().unwrap();
    let mut t = resume(&b, &["run.max_iters=4"]).unwrap();
    assert_eq!(t.run().unwrap().iterations, 4);
    let ck = Checkpoint::load(&b.join("last.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(ck.progress.dropout_rng.as_ref().map(String::len), Some(112));
    assert_same_checkpoints(&a.join("last.safetensors"), &b.join("last.safetensors"));
    drop(t);
    // the same from a checkpoint without the generator (as older versions wrote them): the
    // masks of iterations 3 and 4 differ, and so does most of the model
    let c = tmp.path().join("old");
    start(cfg("run.max_iters=2"), &c).unwrap().run().unwrap();
    let mut old = Checkpoint::load(&c.join("last.safetensors"), &Device::Cpu).unwrap();
    old.progress.dropout_rng = None;
    old.save(&c.join("last.safetensors")).unwrap();
    resume(&c, &["run.max_iters=4"]).unwrap().run().unwrap();
    let load = |d: &Path| Checkpoint::load(&d.join("last.safetensors"), &Device::Cpu).unwrap();
    let (straight, old) = (load(&a), load(&c));
    let all: Vec<_> = straight
        .model
        .iter()
        .chain(&straight.optim.tensors)
        .collect();
    let differ = all
        .iter()
        .filter(|(k, t)| {
            let o = old.model.get(*k).or(old.optim.tensors.get(*k)).unwrap();
            bits(t) != bits(o)
        })
        .count();
    println!(
        "without the saved generator {differ} of {} tensors differ",
        all.len()
    );
    assert!(differ > 0);
}
