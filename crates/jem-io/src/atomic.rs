//! Atomic file writes, one way for the whole workspace.
//!
//! [`write_atomic_with`] writes to `<name>.tmp<pid>` beside the target, flushes the file to
//! disk (`sync_all`), renames it over the target and, on Unix, flushes the folder so that
//! the rename itself survives a power loss. If any step fails the temporary file is removed
//! and the target is untouched: a reader sees the old content or the new, never a mix.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("jem-io-doc-{}", std::process::id()));
//! let path = dir.join("result.json");
//! jem_io::write_atomic(&path, b"{\"accuracy\": 0.9}").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), b"{\"accuracy\": 0.9}");
//! // a failed write leaves the old content in place
//! let err = jem_io::write_atomic_with(&path, |_| Err(std::io::Error::other("disk full")));
//! assert!(err.unwrap_err().to_string().contains("disk full"));
//! assert_eq!(std::fs::read(&path).unwrap(), b"{\"accuracy\": 0.9}");
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A failed atomic write: the target, the step that failed and the operating system's error.
#[derive(Debug)]
pub struct AtomicWriteError {
    /// The file that was to be written.
    pub path: PathBuf,
    /// The step that failed (`creating the folder`, `writing`, `renaming into place`).
    pub step: &'static str,
    /// The cause.
    pub source: io::Error,
}

impl fmt::Display for AtomicWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path.display(), self.step, self.source)
    }
}

impl std::error::Error for AtomicWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<AtomicWriteError> for io::Error {
    fn from(e: AtomicWriteError) -> Self {
        io::Error::new(e.source.kind(), e)
    }
}

/// The temporary name used while `path` is being written: `<name>.tmp<pid>` in the same
/// folder (the same file system, so the rename is atomic). A leftover from a killed process
/// can be recognized, and removed, by its pid.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (see the [module docs](self)).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], with a closure that writes the content into the temporary file
/// (for content too large to build in memory first). Missing folders are created.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), AtomicWriteError> {
    let fail = |step, source| AtomicWriteError {
        path: path.to_path_buf(),
        step,
        source,
    };
    if path.file_name().is_none() {
        return Err(fail(
            "naming the file",
            io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        ));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|e| fail("creating the folder", e))?;
    }
    let tmp = temp_path(path);
    let written = File::create(&tmp).and_then(|mut f| {
        write(&mut f)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("writing", e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("renaming into place", e));
    }
    sync_folder(dir.unwrap_or(Path::new(".")));
    Ok(())
}

/// Flushes a folder's entries (the rename) to disk. Best effort: some file systems refuse to
/// open or sync a folder, and the content itself is already on disk.
fn sync_folder(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("jem-io-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn writes_create_folders_and_leave_no_temporary_file() {
        let dir = scratch("create");
        let path = dir.join("a/b/out.bin");
        write_atomic(&path, &[1, 2, 3]).unwrap();
        write_atomic(&path, &[4]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![4]);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the target remains");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_names_the_step() {
        let dir = scratch("fail");
        let path = dir.join("keep.txt");
        write_atomic(&path, b"old").unwrap();
        let e = write_atomic_with(&path, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.step, "writing");
        assert!(
            e.to_string().contains("keep.txt: writing: disk full"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!temp_path(&path).exists());
        // a folder where the file should be: the rename fails, the temporary goes
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        let e = write_atomic(&blocked, b"x").unwrap_err();
        assert_eq!(e.step, "renaming into place");
        assert!(!temp_path(&blocked).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_without_a_file_name_is_an_error() {
        let e = write_atomic(Path::new("/"), b"x").unwrap_err();
        assert_eq!(e.step, "naming the file");
    }
}
