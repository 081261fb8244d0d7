//! Downloads with checksums, resume and progress, and archive extraction.
//!
//! A file is downloaded to `<name>.part`; an interrupted download resumes from the bytes
//! already there (HTTP `Range`); only after its checksum matches is it renamed to `<name>`,
//! so a partial download is never mistaken for a complete file.
//!
//! The checksums and file descriptions are always here; the downloads and the archive
//! extraction need the `download` feature (on by default: an HTTP client with TLS, tar, zip).

use std::io::Read;
#[cfg(feature = "download")]
use std::io::Write;
use std::path::Path;
#[cfg(feature = "download")]
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "download")]
use jem_io::progress::{BYTES, Progress, ProgressMode};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::error::{DataError, IoContext, Result};

/// A published checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// MD5, lowercase hex.
    Md5(String),
    /// SHA-256, lowercase hex.
    Sha256(String),
}

impl Checksum {
    fn algo(&self) -> &'static str {
        match self {
            Checksum::Md5(_) => "md5",
            Checksum::Sha256(_) => "sha256",
        }
    }

    fn expected(&self) -> &str {
        match self {
            Checksum::Md5(h) | Checksum::Sha256(h) => h,
        }
    }
}

/// A file to download: mirrors tried in order, the local name, its checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// URLs, tried in order.
    pub urls: Vec<String>,
    /// File name in the destination folder.
    pub file_name: String,
    /// Published checksum.
    pub checksum: Checksum,
}

/// How to download.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Replace every URL by `<mirror>/<file name>` (a local mirror, or a proxy).
    pub mirror: Option<String>,
    /// Show a progress bar (on a terminal) or log lines (otherwise).
    pub progress: bool,
    /// Connection timeout.
    pub connect_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            mirror: None,
            progress: true,
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// Hex digest of a file.
pub fn file_digest(path: &Path, checksum: &Checksum) -> Result<String> {
    let mut f = std::fs::File::open(path).at(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut md5 = Md5::new();
    let mut sha = Sha256::new();
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        match checksum {
            Checksum::Md5(_) => md5.update(&buf[..n]),
            Checksum::Sha256(_) => sha.update(&buf[..n]),
        }
    }
    let digest: Vec<u8> = match checksum {
        Checksum::Md5(_) => md5.finalize().to_vec(),
        Checksum::Sha256(_) => sha.finalize().to_vec(),
    };
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks `path` against `checksum`; `note` is appended to the mismatch message.
pub fn verify(path: &Path, checksum: &Checksum, note: &str) -> Result<()> {
    let actual = file_digest(path, checksum)?;
    if actual != checksum.expected().to_ascii_lowercase() {
        return Err(DataError::Checksum {
            path: path.to_path_buf(),
            algo: checksum.algo(),
            expected: checksum.expected().to_string(),
            actual,
            note: note.to_string(),
        });
    }
    Ok(())
}

#[cfg(feature = "download")]
fn part_path(path: &Path) -> PathBuf {
    let mut n = path.file_name().unwrap_or_default().to_os_string();
    n.push(".part");
    path.with_file_name(n)
}

#[cfg(feature = "download")]
/// Downloads `file` into `dir` (resuming a `.part` left by an interrupted run) and verifies
/// it. A complete file already there is verified and kept. Returns the file's path.
pub fn fetch_file(file: &RemoteFile, dir: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).at(dir)?;
    let dest = dir.join(&file.file_name);
    if dest.exists() {
        verify(
            &dest,
            &file.checksum,
            "; this file was not written by `jem data fetch`: delete it and fetch again",
        )?;
        return Ok(dest);
    }
    let urls: Vec<String> = match &opts.mirror {
        Some(m) => vec![format!("{}/{}", m.trim_end_matches('/'), file.file_name)],
        None => file.urls.clone(),
    };
    let mut errors = Vec::new();
    for url in &urls {
        match download_to(url, &part_path(&dest), opts) {
            Ok(()) => {
                let part = part_path(&dest);
                if let Err(e) = verify(&part, &file.checksum, "; the download was deleted") {
                    let _ = std::fs::remove_file(&part);
                    errors.push(e.to_string());
                    continue;
                }
                std::fs::rename(&part, &dest).at(&dest)?;
                return Ok(dest);
            }
            Err(DataError::Download { url, msg }) => errors.push(format!("{url}: {msg}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(DataError::Download {
        url: file.file_name.clone(),
        msg: format!(
            "{}.\nTo install it by hand, download {} (published {} {}) and put it at {}, \
             then run the same command again: it verifies and unpacks files already there.",
            errors.join("; "),
            urls[0],
            file.checksum.algo(),
            file.checksum.expected(),
            dest.display()
        ),
    })
}

#[cfg(feature = "download")]
fn download_to(url: &str, part: &Path, opts: &FetchOptions) -> Result<()> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_resolve(Some(opts.connect_timeout))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let err = |msg: String| DataError::Download {
        url: url.to_string(),
        msg,
    };
    let resp = req.call().map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
    let (append, start) = match status {
        206 if have > 0 => (true, have),
        200 => (false, 0),
        416 if have > 0 => return Ok(()), // nothing left to fetch: verify what we have
        _ => return Err(err(format!("the server answered HTTP {status}"))),
    };
    if header("content-type").is_some_and(|t| t.starts_with("text/html")) {
        return Err(err(
            "the server sent a web page instead of the file (a login or quota page?)".into(),
        ));
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .at(part)?;
    let total = length.map(|l| l + start);
    let name = url.rsplit('/').next().unwrap_or(url);
    let label = if start > 0 {
        format!("{name} (resumed)")
    } else {
        name.to_string()
    };
    let bar = Progress::new(
        &label,
        total.unwrap_or(0),
        BYTES,
        ProgressMode::shown(opts.progress),
    )
    .with_start(start);
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body
            .read(&mut buf)
            .map_err(|e| err(format!("interrupted ({e}); run again to resume")))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).at(part)?;
        bar.inc(n as u64);
    }
    out.sync_all().at(part)?;
    bar.finish();
    Ok(())
}

#[cfg(feature = "download")]
/// Extracts a `.tar.gz` archive into `dir`, through a temporary folder so that an
/// interrupted extraction leaves nothing half-written under its final name.
pub fn extract_tar_gz(archive: &Path, dir: &Path) -> Result<()> {
    extract_via_temp(archive, dir, |tmp| {
        let f = std::fs::File::open(archive).at(archive)?;
        let fail = |e: std::io::Error| DataError::format(archive, format!("cannot extract: {e}"));
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for entry in tar.entries().map_err(fail)? {
            let mut entry = entry.map_err(fail)?;
            let name = entry.path().map_err(fail)?.display().to_string();
            let kind = entry.header().entry_type();
            if !(kind.is_file() || kind.is_dir()) {
                return Err(DataError::format(
                    archive,
                    format!(
                        "entry `{name}` is a link or device ({kind:?}); a data archive holds files only"
                    ),
                ));
            }
            // unpack_in refuses (false) a path that would leave `tmp`
            if !entry.unpack_in(tmp).map_err(fail)? {
                return Err(leaves_folder(archive, &name));
            }
        }
        Ok(())
    })
}

#[cfg(feature = "download")]
/// Extracts a `.zip` archive into `dir` (same guarantees as [`extract_tar_gz`]).
pub fn extract_zip(archive: &Path, dir: &Path) -> Result<()> {
    extract_via_temp(archive, dir, |tmp| {
        let f = std::fs::File::open(archive).at(archive)?;
        let fail =
            |e: zip::result::ZipError| DataError::format(archive, format!("cannot extract: {e}"));
        let mut zip = zip::ZipArchive::new(f).map_err(fail)?;
        for i in 0..zip.len() {
            let entry = zip.by_index_raw(i).map_err(fail)?;
            if entry.enclosed_name().is_none() {
                let name = entry.name().map_err(fail)?;
                return Err(leaves_folder(archive, &name));
            }
        }
        zip.extract(tmp).map_err(fail)
    })
}

#[cfg(feature = "download")]
fn leaves_folder(archive: &Path, name: &str) -> DataError {
    DataError::format(
        archive,
        format!("entry `{name}` would be written outside the extraction folder"),
    )
}

#[cfg(feature = "download")]
fn extract_via_temp(
    archive: &Path,
    dir: &Path,
    unpack: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let name = archive.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".extract-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    let result = unpack(&tmp).and_then(|()| {
        for entry in std::fs::read_dir(&tmp).at(&tmp)? {
            let entry = entry.at(&tmp)?;
            let target = dir.join(entry.file_name());
            if target.is_dir() {
                std::fs::remove_dir_all(&target).at(&target)?;
            }
            std::fs::rename(entry.path(), &target).at(&target)?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}
