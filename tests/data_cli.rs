//! End-to-end tests of `jem data ...` through the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jem_data::{ImageSet, cifar, svhn};

fn jem(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jem"));
    cmd.args(args)
        .env_remove("JEM_DATA_DIR")
        .env_remove("JEM_CACHE_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run jem")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "jem failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    p.join("fashion-mnist").exists().then_some(p)
}

fn colour_set(n: usize, classes: usize) -> ImageSet {
    let images = (0..n * 3072).map(|i| (i % 256) as u8).collect();
    ImageSet::new(
        images,
        (0..n).map(|i| (i % classes) as u32).collect(),
        [3, 32, 32],
        classes,
        "t",
    )
    .unwrap()
}

#[test]
fn info_of_the_embedded_set() {
    let v = json(&jem(
        &["data", "info", "fashion-mnist-quick", "--json"],
        &[],
    ));
    assert_eq!(v["dataset"], "fashion-mnist-quick");
    assert_eq!(v["shape"], serde_json::json!([1, 28, 28]));
    assert_eq!(v["splits"]["train"]["count"], 10_000);
    assert_eq!(v["splits"]["test"]["count"], 2_000);
    assert_eq!(
        v["splits"]["train"]["per_class"],
        serde_json::json!(vec![1000; 10])
    );
    let table = jem(&["data", "info", "fashion-mnist-quick"], &[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Ankle boot") && text.contains("10000 images"),
        "{text}"
    );
}

#[test]
fn info_of_the_real_fashion_mnist() {
    let Some(data) = shared_data() else {
        println!("skipped: ../shared/data is absent");
        return;
    };
    let v = json(&jem(
        &[
            "data",
            "info",
            "fashion-mnist",
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ],
        &[],
    ));
    assert_eq!(v["splits"]["train"]["count"], 60_000);
    assert_eq!(
        v["splits"]["test"]["per_class"],
        serde_json::json!(vec![1000; 10])
    );
    // JEM_DATA_DIR is the default data folder; mnist has only its test split here
    let v = json(&jem(
        &["data", "info", "mnist", "--json"],
        &[("JEM_DATA_DIR", &data)],
    ));
    assert_eq!(v["splits"]["test"]["count"], 10_000);
    assert_eq!(v["missing_splits"], serde_json::json!(["train"]));
}

#[test]
fn info_of_cifar_and_svhn_files_in_official_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c10 = d.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&c10).unwrap();
    for i in 1..=5 {
        std::fs::write(
            c10.join(format!("data_batch_{i}.bin")),
            cifar::encode_cifar10(&colour_set(20, 10)).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(
        c10.join("test_batch.bin"),
        cifar::encode_cifar10(&colour_set(10, 10)).unwrap(),
    )
    .unwrap();
    let v = json(&jem(
        &[
            "data",
            "info",
            "cifar10",
            "--json",
            "--data-dir",
            d.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(v["splits"]["train"]["count"], 100);
    assert_eq!(
        v["splits"]["test"]["per_class"],
        serde_json::json!(vec![1; 10])
    );
    assert_eq!(v["shape"], serde_json::json!([3, 32, 32]));

    let c100 = d.join("cifar-100-binary");
    std::fs::create_dir_all(&c100).unwrap();
    let set = colour_set(8, 10);
    let coarse: Vec<u8> = (0..8).map(|i| i % 20).collect();
    let fine: Vec<u8> = (0..8).map(|i| 90 + i).collect();
    for f in ["train.bin", "test.bin"] {
        std::fs::write(
            c100.join(f),
            cifar::encode_cifar100(&set, &coarse, &fine).unwrap(),
        )
        .unwrap();
    }
    let v = json(&jem(
        &[
            "data",
            "info",
            "cifar100",
            "--json",
            "--data-dir",
            d.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(v["num_classes"], 100);
    assert_eq!(v["splits"]["train"]["per_class"][97], 1);
    let v = json(&jem(
        &[
            "data",
            "info",
            "cifar100",
            "--json",
            "--cifar100-labels",
            "coarse",
            "--data-dir",
            d.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(v["num_classes"], 20);

    std::fs::create_dir_all(d.join("svhn")).unwrap();
    std::fs::write(
        d.join("svhn/train_32x32.mat"),
        svhn::encode_svhn(&colour_set(7, 10), true).unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("svhn/test_32x32.mat"),
        svhn::encode_svhn(&colour_set(3, 10), false).unwrap(),
    )
    .unwrap();
    let v = json(&jem(
        &[
            "data",
            "info",
            "svhn",
            "--json",
            "--data-dir",
            d.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(v["splits"]["train"]["count"], 7);
    assert_eq!(v["missing_splits"], serde_json::json!(["extra"]));

    // a truncated batch: a clear error naming the file, exit code 1
    let bad = c10.join("data_batch_3.bin");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..1000]).unwrap();
    let out = jem(
        &["data", "info", "cifar10", "--data-dir", d.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("data_batch_3.bin") && stderr(&out).contains("truncated"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_data_points_to_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let out = jem(
        &[
            "data",
            "info",
            "cifar10",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("jem data fetch cifar10") && e.contains("data_batch_1.bin"),
        "{e}"
    );
    let out = jem(&["data", "info", "imagenet"], &[]);
    assert!(
        stderr(&out).contains("unknown data set `imagenet`") && stderr(&out).contains("cifar100")
    );
}

#[test]
fn fetch_offline_fails_fast_with_instructions() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mirror = format!("http://127.0.0.1:{port}");
    let out = jem(
        &[
            "data",
            "fetch",
            "cifar10",
            "--quiet",
            "--mirror",
            &mirror,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("by hand")
            && e.contains("cifar-10-binary.tar.gz")
            && e.contains("c32a1d4ab5d03f1284b67883e8d87530"),
        "{e}"
    );
    // an archive placed by hand is verified before use
    std::fs::write(
        dir.path().join("cifar-10-binary.tar.gz"),
        b"not the archive",
    )
    .unwrap();
    let out = jem(
        &[
            "data",
            "fetch",
            "cifar10",
            "--quiet",
            "--mirror",
            &mirror,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        stderr(&out).contains("checksum mismatch"),
        "{}",
        stderr(&out)
    );
    // embedded sets need nothing
    let out = jem(&["data", "fetch", "fashion-mnist-quick"], &[]);
    assert!(out.status.success());
}

#[test]
fn list_shows_presence() {
    let dir = tempfile::tempdir().unwrap();
    let out = jem(
        &["data", "list", "--data-dir", dir.path().to_str().unwrap()],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fashion-mnist-quick") && text.contains("embedded"));
    assert!(text.contains("cifar10") && text.contains("not present"));
}

#[test]
fn class_stats_are_computed_once_then_cached() {
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "data",
        "class-stats",
        "mnist-quick",
        "--split",
        "test",
        "--pad-to",
        "32",
    ];
    let env = [("JEM_CACHE_DIR", cache.path())];
    let run = || json(&jem(&args, &env));
    let first = run();
    assert_eq!(first["dim"], 1024);
    assert_eq!(first["counts"], serde_json::json!(vec![200; 10]));
    let path = PathBuf::from(first["path"].as_str().unwrap());
    assert!(path.starts_with(cache.path().join("class-stats")) && path.exists());
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let second = run();
    assert_eq!(second["path"], first["path"]);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified,
        "second run reads the cache"
    );
    // a corrupt cache file is named in a warning and rebuilt
    std::fs::write(&path, b"junk").unwrap();
    let out = jem(&args, &env);
    assert!(
        out.status.success() && stderr(&out).contains(path.file_name().unwrap().to_str().unwrap()),
        "{}",
        stderr(&out)
    );
    assert!(jem_data::ClassGaussians::load(&path).is_ok());
}

#[test]
fn fetch_inception_weights_offline_explains_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mirror = format!("http://127.0.0.1:{port}");
    let args = [
        "data",
        "fetch",
        "inception",
        "--quiet",
        "--mirror",
        &mirror,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ];
    let out = jem(&args, &[]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("pt_inception-2015-12-05-6726825d.pth")
            && e.contains("6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"),
        "{e}"
    );
    // a file placed by hand is verified before use
    let weights = dir.path().join("inception");
    std::fs::create_dir_all(&weights).unwrap();
    std::fs::write(
        weights.join("pt_inception-2015-12-05-6726825d.pth"),
        b"not the weights",
    )
    .unwrap();
    let out = jem(&args, &[]);
    assert!(
        !out.status.success() && stderr(&out).contains("checksum mismatch"),
        "{}",
        stderr(&out)
    );
}
