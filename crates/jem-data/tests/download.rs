//! Downloads against a local HTTP server (loopback only): resume, checksums, extraction,
//! and the offline message.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jem_data::download::{self, Checksum, FetchOptions, RemoteFile};

/// Serves `files` on 127.0.0.1 with `Range` support. The first `cut` responses stop after
/// half of the body, like a dropped connection.
struct Server {
    port: u16,
    ranges: Arc<Mutex<Vec<Option<u64>>>>,
}

fn serve(files: Vec<(String, Vec<u8>)>, cut: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    let cuts = Arc::new(AtomicUsize::new(cut));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(stream) = stream else { continue };
            handle(stream, &files, &seen, &cuts);
        }
    });
    Server { port, ranges }
}

fn handle(
    mut stream: TcpStream,
    files: &[(String, Vec<u8>)],
    seen: &Mutex<Vec<Option<u64>>>,
    cuts: &AtomicUsize,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("range: bytes=") {
            range = r.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    seen.lock().unwrap().push(range);
    let name = path.trim_start_matches('/');
    let Some((_, body)) = files.iter().find(|(n, _)| n == name) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let start = range.unwrap_or(0) as usize;
    let (status, part) = if range.is_some() {
        ("206 Partial Content", &body[start..])
    } else {
        ("200 OK", &body[..])
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        part.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let cut = cuts.load(Ordering::SeqCst) > 0;
    if cut {
        cuts.fetch_sub(1, Ordering::SeqCst);
        let _ = stream.write_all(&part[..part.len() / 2]);
        let _ = stream.flush();
        return; // connection dropped mid-body
    }
    let _ = stream.write_all(part);
}

fn md5_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    download::file_digest(&p, &Checksum::Md5(String::new())).unwrap()
}

fn remote(name: &str, bytes: &[u8], port: u16) -> RemoteFile {
    RemoteFile {
        urls: vec![format!("http://127.0.0.1:{port}/{name}")],
        file_name: name.into(),
        checksum: Checksum::Md5(md5_hex(bytes)),
    }
}

fn quiet() -> FetchOptions {
    FetchOptions {
        progress: false,
        ..FetchOptions::default()
    }
}

#[test]
fn digests_match_known_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("abc");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(
        download::file_digest(&p, &Checksum::Md5(String::new())).unwrap(),
        "900150983cd24fb0d6963f7d28e17f72"
    );
    assert_eq!(
        download::file_digest(&p, &Checksum::Sha256(String::new())).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn interrupted_download_resumes_and_verifies() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let server = serve(vec![("data.bin".into(), body.clone())], 1);
    let dir = tempfile::tempdir().unwrap();
    let file = remote("data.bin", &body, server.port);
    // first attempt is cut: an error, and only a .part file is left
    let e = download::fetch_file(&file, dir.path(), &quiet())
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.bin"), "{e}");
    assert!(
        !dir.path().join("data.bin").exists(),
        "a partial download must not look complete"
    );
    let part_len = std::fs::metadata(dir.path().join("data.bin.part"))
        .unwrap()
        .len();
    assert!(part_len > 0 && part_len < body.len() as u64);
    // second attempt resumes from the bytes already there
    let path = download::fetch_file(&file, dir.path(), &quiet()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert!(!dir.path().join("data.bin.part").exists());
    assert_eq!(
        server.ranges.lock().unwrap().as_slice(),
        &[None, Some(part_len)]
    );
    // third call: already complete, verified, no request
    download::fetch_file(&file, dir.path(), &quiet()).unwrap();
    assert_eq!(server.ranges.lock().unwrap().len(), 2);
}

#[test]
fn checksum_mismatch_deletes_the_download() {
    let body = b"hello world".to_vec();
    let server = serve(vec![("f.txt".into(), body.clone())], 0);
    let dir = tempfile::tempdir().unwrap();
    let mut file = remote("f.txt", &body, server.port);
    file.checksum = Checksum::Md5("00000000000000000000000000000000".into());
    let e = download::fetch_file(&file, dir.path(), &quiet())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("checksum mismatch") && e.contains("f.txt"),
        "{e}"
    );
    assert!(!dir.path().join("f.txt").exists() && !dir.path().join("f.txt.part").exists());
    // a wrong file placed by hand is reported, not overwritten
    std::fs::write(dir.path().join("f.txt"), b"tampered").unwrap();
    let e = download::fetch_file(&file, dir.path(), &quiet())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not written by `jem data fetch`"), "{e}");
}

#[test]
fn offline_fails_fast_and_says_what_to_do() {
    // a closed port on loopback: connection refused at once
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let file = remote("cifar-10-binary.tar.gz", b"x", port);
    let t = std::time::Instant::now();
    let e = download::fetch_file(&file, dir.path(), &quiet())
        .unwrap_err()
        .to_string();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(
        e.contains("by hand")
            && e.contains(
                &dir.path()
                    .join("cifar-10-binary.tar.gz")
                    .display()
                    .to_string()
            ),
        "{e}"
    );
    assert!(e.contains("md5"), "{e}");
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(enc);
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn cifar_archive_downloads_extracts_and_loads() {
    let set =
        jem_data::ImageSet::new(vec![9u8; 2 * 3072], vec![3, 4], [3, 32, 32], 10, "t").unwrap();
    let batch = jem_data::cifar::encode_cifar10(&set).unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = (1..=5)
        .map(|i| {
            (
                format!("cifar-10-batches-bin/data_batch_{i}.bin"),
                batch.clone(),
            )
        })
        .collect();
    entries.push(("cifar-10-batches-bin/test_batch.bin".into(), batch.clone()));
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let archive = tar_gz(&refs);
    let server = serve(vec![("cifar-10-binary.tar.gz".into(), archive.clone())], 0);
    let dir = tempfile::tempdir().unwrap();
    let path = download::fetch_file(
        &remote("cifar-10-binary.tar.gz", &archive, server.port),
        dir.path(),
        &quiet(),
    )
    .unwrap();
    download::extract_tar_gz(&path, dir.path()).unwrap();
    let opts = jem_data::LoadOptions::default();
    let train = jem_data::DatasetName::Cifar10
        .load("train", dir.path(), &opts)
        .unwrap();
    assert_eq!(train.len(), 10);
    assert_eq!(train.labels[..2], [3, 4]);
    assert!(jem_data::DatasetName::Cifar10.is_present(dir.path()));
    assert!(!dir.path().join(".extract-cifar-10-binary.tar.gz").exists());
    // a corrupt archive is an error naming it
    let bad = dir.path().join("bad.tar.gz");
    std::fs::write(&bad, &archive[..archive.len() / 2]).unwrap();
    let e = download::extract_tar_gz(&bad, dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.tar.gz"), "{e}");
}

#[test]
fn zip_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let zpath = dir.path().join("img.zip");
    {
        let f = std::fs::File::create(&zpath).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("img_align_celeba/000001.jpg", o).unwrap();
        z.write_all(b"jpegbytes").unwrap();
        z.finish().unwrap();
    }
    let out = dir.path().join("celeba");
    download::extract_zip(&zpath, &out).unwrap();
    let mut s = String::new();
    std::fs::File::open(out.join("img_align_celeba/000001.jpg"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "jpegbytes");
    assert!(Path::new(&out).join("img_align_celeba").is_dir());
}
