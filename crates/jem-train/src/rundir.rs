//! Tidying a run folder when a session starts: temporary files that a killed process left
//! behind, and, on resume, log lines written after the checkpoint the run continues from.
//!
//! Files are written atomically by `jem_data::fsutil::write_atomic`: to `<file>.tmp<pid>`,
//! then renamed. A process killed while writing leaves that temporary file forever. And a run
//! killed after its last checkpoint has logged iterations that the resumed run does again;
//! trimming the logs to the checkpoint keeps every iteration in them once.

use std::path::{Path, PathBuf};

use crate::checkpoint::Progress;
use crate::eval::EvalRecord;
use crate::{Result, TrainError};

/// Folders of a run (relative to it) whose files are written atomically.
const ATOMIC_DIRS: [&str; 3] = ["", "samples", "curves"];

/// Extensions of the files a run writes atomically (checkpoints, config, summary, logs,
/// figures).
const ATOMIC_EXTS: [&str; 5] = ["safetensors", "toml", "json", "jsonl", "png"];

/// The process id in `name` when it is a temporary name of a file a run writes:
/// `<stem>.<ext>.tmp<pid>` with `ext` one of [`ATOMIC_EXTS`].
fn temp_owner(name: &str) -> Option<u32> {
    let (file, pid) = name.rsplit_once(".tmp")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (stem, ext) = file.rsplit_once('.')?;
    if stem.is_empty() || !ATOMIC_EXTS.contains(&ext) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` is running: `None` where this cannot be told (no `/proc`).
pub(crate) fn process_alive(pid: u32) -> Option<bool> {
    if pid == std::process::id() {
        return Some(true);
    }
    let proc = Path::new("/proc");
    (cfg!(target_os = "linux") && proc.join("self").exists())
        .then(|| proc.join(pid.to_string()).exists())
}

/// Removes the temporary files in `run_dir`, `samples/` and `curves/` that a process no
/// longer running left there, and returns them. Only names of the run's own temporary files
/// qualify (see [`temp_owner`]); those of a live process, or of any process where liveness
/// cannot be told, are kept, and nothing else is touched.
pub fn remove_stale_temps(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for sub in ATOMIC_DIRS {
        let dir = match sub {
            "" => run_dir.to_path_buf(),
            _ => run_dir.join(sub),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(TrainError::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| TrainError::io(&dir, e))?;
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(temp_owner) else {
                continue;
            };
            let is_file = entry
                .file_type()
                .map_err(|e| TrainError::io(&dir, e))?
                .is_file();
            if is_file && process_alive(pid) == Some(false) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| {
                    TrainError::RunDir(format!(
                        "{}: cannot remove this temporary file of process {pid}, which no \
                         longer runs: {e}",
                        path.display()
                    ))
                })?;
                removed.push(path);
            }
        }
    }
    Ok(removed)
}

/// The lines of `train.jsonl` that a run at `progress` has logged: records of iterations up to
/// `progress.iteration`, and divergence events (with their rollback) the checkpoint's guard
/// state counts. Unreadable lines (a line torn by a kill) go.
fn trim_train_log(text: &str, progress: &Progress) -> Vec<String> {
    let mut keep_rollback = true;
    let mut kept = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        let keep = match v.get("event").and_then(serde_json::Value::as_str) {
            Some("divergence") => {
                keep_rollback = num("failures").is_none_or(|f| f <= progress.guard.failures as u64);
                keep_rollback
            }
            Some("rollback") => keep_rollback,
            _ => num("iteration").is_none_or(|i| i <= progress.iteration),
        };
        if keep {
            kept.push(line.to_string());
        }
    }
    kept
}

/// The lines of `eval.jsonl` up to `iteration` (unreadable lines go).
fn trim_eval_log(text: &str, iteration: u64) -> Vec<String> {
    text.lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
                v.get("iteration")
                    .and_then(serde_json::Value::as_u64)
                    .is_none_or(|i| i <= iteration)
            })
        })
        .map(str::to_string)
        .collect()
}

/// Rewrites `path` (atomically) with `trim`'s lines when they differ from its content.
fn rewrite(path: &Path, trim: impl FnOnce(&str) -> Vec<String>) -> Result<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(TrainError::io(path, e)),
    };
    let kept: String = trim(&text).iter().map(|l| format!("{l}\n")).collect();
    if kept != text {
        jem_io::write_atomic(path, kept.as_bytes())?;
    }
    Ok(kept)
}

/// Trims `train.jsonl` and `eval.jsonl` of `run_dir` to what the checkpoint at `progress`
/// reflects, so that the resumed run, which does the later iterations again, logs each once.
/// Returns the evaluation logged at the checkpoint's iteration, which the run need not redo.
pub fn trim_logs(run_dir: &Path, progress: &Progress) -> Result<Option<EvalRecord>> {
    rewrite(&run_dir.join("train.jsonl"), |t| {
        trim_train_log(t, progress)
    })?;
    let evals = rewrite(&run_dir.join("eval.jsonl"), |t| {
        trim_eval_log(t, progress.iteration)
    })?;
    Ok(evals
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<EvalRecord>(l).ok())
        .filter(|r| r.iteration == progress.iteration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runs_own_temporary_names_qualify() {
        let ours = jem_data::fsutil::temp_path(Path::new("last.safetensors"));
        let ours = ours.to_str().unwrap();
        assert_eq!(temp_owner(ours), Some(std::process::id()), "{ours}");
        assert_eq!(temp_owner("epoch-0003.safetensors.tmp12"), Some(12));
        assert_eq!(temp_owner("neg-0000050.png.tmp7"), Some(7));
        for other in [
            "last.safetensors",
            "last.safetensors.tmp",
            "last.safetensors.tmp12x",
            "last.safetensors.tmp-12",
            "notes.txt.tmp12",
            "data.tmp12",
            ".toml.tmp12",
            "last.safetensors.tmp12.bak",
        ] {
            assert_eq!(temp_owner(other), None, "{other}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn stale_temporary_files_go_and_nothing_else() {
        // a process id that surely ran and ended: a child that has been waited for
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        std::fs::create_dir_all(run.join("samples")).unwrap();
        let stale = [
            format!("last.safetensors.tmp{dead}"),
            format!("config.toml.tmp{dead}"),
            format!("samples/neg-0000002.png.tmp{dead}"),
        ];
        let kept = [
            "last.safetensors".to_string(),
            "train.jsonl".to_string(),
            format!("notes.txt.tmp{dead}"),
            format!("last.safetensors.tmp{dead}x"),
            // init always runs; our own process may be writing
            "best.safetensors.tmp1".to_string(),
            format!("summary.json.tmp{}", std::process::id()),
            format!("other/last.safetensors.tmp{dead}"),
        ];
        std::fs::create_dir_all(run.join("other")).unwrap();
        for f in stale.iter().chain(&kept) {
            std::fs::write(run.join(f), b"x").unwrap();
        }
        // a folder with a temporary-looking name is not a file to remove
        std::fs::create_dir(run.join(format!("eval.jsonl.tmp{dead}"))).unwrap();
        let mut removed = remove_stale_temps(run).unwrap();
        removed.sort();
        let mut expected: Vec<PathBuf> = stale.iter().map(|f| run.join(f)).collect();
        expected.sort();
        let removed: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
        let expected: Vec<String> = expected.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(removed, expected);
        for f in &kept {
            assert!(run.join(f).exists(), "{f} was removed");
        }
        assert!(run.join(format!("eval.jsonl.tmp{dead}")).is_dir());
        // a missing run folder is nothing to tidy
        assert!(remove_stale_temps(&run.join("none")).unwrap().is_empty());
    }

    fn progress(iteration: u64, failures: usize) -> Progress {
        let mut p = Progress::start();
        p.iteration = iteration;
        p.guard.failures = failures;
        p
    }

    #[test]
    fn logs_keep_what_the_checkpoint_reflects() {
        let train = [
            r#"{"iteration":1,"loss":1.0}"#,
            r#"{"iteration":2,"loss":1.0}"#,
            r#"{"event":"divergence","iteration":2,"failures":1}"#,
            r#"{"event":"rollback","from_iteration":2,"to_iteration":2}"#,
            r#"{"iteration":3,"loss":1.0}"#,
            r#"{"iteration":4,"loss":1.0}"#,
            r#"{"event":"divergence","iteration":4,"failures":2}"#,
            r#"{"event":"rollback","from_iteration":4,"to_iteration":4}"#,
            r#"{"iteration":5,"loss":1.0}"#,
            r#"{"iteration":6,"lo"#,
        ]
        .join("\n");
        // checkpoint at 4, written before the second divergence
        let kept = trim_train_log(&train, &progress(4, 1));
        assert_eq!(
            kept,
            [
                r#"{"iteration":1,"loss":1.0}"#,
                r#"{"iteration":2,"loss":1.0}"#,
                r#"{"event":"divergence","iteration":2,"failures":1}"#,
                r#"{"event":"rollback","from_iteration":2,"to_iteration":2}"#,
                r#"{"iteration":3,"loss":1.0}"#,
                r#"{"iteration":4,"loss":1.0}"#,
            ]
        );
        assert_eq!(trim_train_log(&train, &progress(5, 2)).len(), 9);
        let evals = "{\"iteration\":0}\n{\"iteration\":3}\n{\"iteration\":5}\n{\"itera";
        assert_eq!(
            trim_eval_log(evals, 3),
            ["{\"iteration\":0}", "{\"iteration\":3}"]
        );
    }

    #[test]
    fn trimming_rewrites_only_what_changes_and_returns_the_checkpoints_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        // no logs yet: nothing to do
        assert!(trim_logs(run, &progress(0, 0)).unwrap().is_none());
        assert!(!run.join("train.jsonl").exists());
        let eval = |i: u64| {
            format!(
                "{{\"iteration\":{i},\"epoch\":0.0,\"train_minutes\":0.0,\"test_acc\":0.5,\
                 \"test_ece\":0.1,\"test_log_px\":1.0,\"valid_acc\":null,\"ood\":[],\"seconds\":1.0}}\n"
            )
        };
        std::fs::write(run.join("eval.jsonl"), eval(2) + &eval(4)).unwrap();
        std::fs::write(
            run.join("train.jsonl"),
            "{\"iteration\":1}\n{\"iteration\":2}\n",
        )
        .unwrap();
        let r = trim_logs(run, &progress(2, 0)).unwrap().unwrap();
        assert_eq!(r.iteration, 2);
        assert_eq!(
            std::fs::read_to_string(run.join("eval.jsonl")).unwrap(),
            eval(2)
        );
        assert!(trim_logs(run, &progress(3, 0)).unwrap().is_none());
        let names: Vec<_> = std::fs::read_dir(run).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary file is left");
    }
}
