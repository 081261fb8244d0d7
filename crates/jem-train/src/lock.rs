//! One training process per run folder: `RUN_DIR/.lock` holds the process id of the process
//! training there, from its start to its end, so that a second `jem train` (a resume started
//! twice, `cargo xtask reproduce` beside a manual run) is refused instead of interleaving its
//! checkpoints and logs with the first one's.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::rundir::process_alive;
use crate::{Result, TrainError};

/// The lock file's name in a run folder.
pub const LOCK_FILE: &str = ".lock";

/// A held run-folder lock; dropping it removes the file.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `run_dir` (which must exist). A lock left by a process that no longer
    /// runs is taken over; one of a running process, or of a process whose state cannot be
    /// told (no `/proc`), is refused with an error naming the process and the file.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(LOCK_FILE);
        let err = |e: std::io::Error| TrainError::io(&path, e);
        // two rounds: the second after removing a dead process's lock
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id()).map_err(err)?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let owner = text.trim().parse::<u32>().ok();
                    match owner.map(|pid| (pid, process_alive(pid))) {
                        Some((pid, Some(true))) => {
                            return Err(TrainError::RunDir(format!(
                                "{}: process {pid} is training in this run folder ({}); wait \
                                 for it to end or stop it first",
                                run_dir.display(),
                                path.display()
                            )));
                        }
                        Some((pid, None)) => {
                            return Err(TrainError::RunDir(format!(
                                "{}: locked by process {pid}, whose state cannot be told here; \
                                 if it no longer runs, delete {}",
                                run_dir.display(),
                                path.display()
                            )));
                        }
                        // a dead process's lock, or a file cut short while being written
                        _ => match std::fs::remove_file(&path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(err(e)),
                        },
                    }
                }
                Err(e) => return Err(err(e)),
            }
        }
        Err(TrainError::RunDir(format!(
            "{}: another process takes this run folder's lock ({}) at the same time",
            run_dir.display(),
            path.display()
        )))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_lock_is_refused_and_a_dead_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        let file = dir.path().join(LOCK_FILE);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            std::process::id().to_string()
        );
        drop(lock);
        assert!(!file.exists());
        if process_alive(1).is_none() {
            return; // no /proc: liveness cannot be told here
        }
        // pid 1 runs for as long as the system does
        std::fs::write(&file, "1").unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("process 1 is training"), "{e}");
        // a pid above Linux's largest (2^22) belongs to no process
        std::fs::write(&file, "4194305").unwrap();
        let lock = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            std::process::id().to_string()
        );
        drop(lock);
        // an empty file (a process killed while writing it) is taken over too
        std::fs::write(&file, "").unwrap();
        assert!(RunLock::acquire(dir.path()).is_ok());
    }
}
