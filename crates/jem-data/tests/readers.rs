//! Readers on files in the exact official formats: made by the tests, by scipy (committed
//! fixtures), and the real Fashion-MNIST / MNIST files in `../shared/data` when present.

use std::path::{Path, PathBuf};

use jem_data::celeba::{CelebaResize, load_celeba};
use jem_data::{DatasetName, ImageSet, LoadOptions, idx, svhn};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.join("fashion-mnist").exists() {
        Some(p)
    } else {
        println!("skipped: {} is absent", p.display());
        None
    }
}

#[test]
fn svhn_files_written_by_scipy() {
    for name in ["svhn_scipy_compressed.mat", "svhn_scipy_plain.mat"] {
        let set = svhn::read_svhn_file(&fixture(name)).unwrap();
        assert_eq!(set.len(), 4);
        assert_eq!(set.shape, [3, 32, 32]);
        assert_eq!(set.labels, vec![0, 1, 5, 9], "label 10 means digit 0");
        for i in 0..4 {
            let img = set.image(i);
            for ch in 0..3 {
                for r in 0..32 {
                    for c in 0..32 {
                        let want = ((r + 2 * c + 5 * ch + 7 * i) % 256) as u8;
                        assert_eq!(
                            img[ch * 1024 + r * 32 + c],
                            want,
                            "{name} ({i},{ch},{r},{c})"
                        );
                    }
                }
            }
        }
    }
}

fn svhn_toy() -> ImageSet {
    let n = 6;
    let images = (0..n * 3072).map(|i| (i * 13 % 256) as u8).collect();
    ImageSet::new(images, (0..n as u32).collect(), [3, 32, 32], 10, "toy").unwrap()
}

#[test]
fn svhn_roundtrip_truncated_and_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let set = svhn_toy();
    for compress in [true, false] {
        let p = dir.path().join("test_32x32.mat");
        let bytes = svhn::encode_svhn(&set, compress).unwrap();
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(svhn::read_svhn_file(&p).unwrap(), set);

        std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let e = svhn::read_svhn_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("test_32x32.mat") && (e.contains("truncated") || e.contains("corrupt")),
            "{e}"
        );

        let mut bad = bytes.clone();
        let n = bad.len();
        for b in &mut bad[200..n - 8] {
            *b ^= 0x5a;
        }
        std::fs::write(&p, &bad).unwrap();
        assert!(svhn::read_svhn_file(&p).is_err());
    }
    // a label outside 1..=10
    let mut x = vec![0u8; 3072];
    x[0] = 1;
    let bytes = jem_data::matv5::encode_mat(
        &[
            (
                "X",
                jem_data::matv5::MX_UINT8,
                &[32, 32, 3, 1],
                jem_data::matv5::MatData::U8(&x),
            ),
            (
                "y",
                jem_data::matv5::MX_DOUBLE,
                &[1, 1],
                jem_data::matv5::MatData::F64(&[11.0]),
            ),
        ],
        true,
    );
    let p = dir.path().join("bad_label.mat");
    std::fs::write(&p, bytes).unwrap();
    let e = svhn::read_svhn_file(&p).unwrap_err().to_string();
    assert!(e.contains("label 11 of image 0"), "{e}");
}

#[test]
fn idx_truncated_gzip_names_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("train-images-idx3-ubyte.gz");
    let bytes = idx::encode_idx(&[10, 28, 28], &vec![7u8; 7840], true).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 20]).unwrap();
    let e = idx::read_idx_file(&p).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
}

#[test]
fn real_fashion_mnist_and_mnist() {
    let Some(data) = shared_data() else { return };
    let opts = LoadOptions::default();
    let train = DatasetName::FashionMnist
        .load("train", &data, &opts)
        .unwrap();
    assert_eq!(train.len(), 60_000);
    assert_eq!(train.shape, [1, 28, 28]);
    assert_eq!(train.per_class_counts(), vec![6000; 10]);
    let test = DatasetName::FashionMnist
        .load("test", &data, &opts)
        .unwrap();
    assert_eq!(test.per_class_counts(), vec![1000; 10]);
    // Fashion-MNIST's published training-set pixel statistics: mean 0.2860, std 0.3530
    let (m, s) = train.channel_mean_std();
    assert!(
        (m[0] - 0.2860).abs() < 1e-3 && (s[0] - 0.3530).abs() < 1e-3,
        "{m:?} {s:?}"
    );
    let mnist = DatasetName::Mnist.load("test", &data, &opts).unwrap();
    assert_eq!(mnist.len(), 10_000);
    let e = DatasetName::Mnist
        .load("train", &data, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("jem data fetch mnist"),
        "{e}"
    );
}

#[test]
fn embedded_sets_are_balanced_subsets_of_the_real_files() {
    let opts = LoadOptions::default();
    let tmp = Path::new("/nonexistent");
    let train = DatasetName::FashionMnistQuick
        .load("train", tmp, &opts)
        .unwrap();
    assert_eq!(train.per_class_counts(), vec![1000; 10]);
    let test = DatasetName::FashionMnistQuick
        .load("test", tmp, &opts)
        .unwrap();
    assert_eq!(test.per_class_counts(), vec![200; 10]);
    let mnist = DatasetName::MnistQuick.load("test", tmp, &opts).unwrap();
    assert_eq!(mnist.per_class_counts(), vec![200; 10]);
    let Some(data) = shared_data() else { return };
    // every embedded test image is one of the real test images, with its label
    let full = DatasetName::FashionMnist
        .load("test", &data, &opts)
        .unwrap();
    let mut index = std::collections::HashMap::new();
    for i in 0..full.len() {
        index.insert(full.image(i).to_vec(), full.labels[i]);
    }
    for i in 0..test.len() {
        assert_eq!(index.get(test.image(i)), Some(&test.labels[i]));
    }
}

fn write_celeba(root: &Path, n: u32, corrupt: Option<u32>) {
    let dir = root.join("celeba/img_align_celeba");
    std::fs::create_dir_all(&dir).unwrap();
    let mut list = String::new();
    for i in 1..=n {
        let name = format!("{i:06}.jpg");
        let img = image::RgbImage::from_fn(178, 218, |x, y| {
            image::Rgb([
                (x * 255 / 177) as u8,
                (y * 255 / 217) as u8,
                (i * 40 % 256) as u8,
            ])
        });
        img.save(dir.join(&name)).unwrap();
        if corrupt == Some(i) {
            std::fs::write(dir.join(&name), b"\xff\xd8\xff not really a jpeg").unwrap();
        }
        list.push_str(&format!("{name} {}\n", if i <= 2 { 0 } else { 2 }));
    }
    std::fs::write(root.join("celeba/list_eval_partition.txt"), list).unwrap();
}

#[test]
fn celeba_crop_and_short_side() {
    let dir = tempfile::tempdir().unwrap();
    write_celeba(dir.path(), 5, None);
    let test = load_celeba(dir.path(), "test", CelebaResize::CenterCrop).unwrap();
    assert_eq!(test.len(), 3);
    assert_eq!(test.shape, [3, 32, 32]);
    // red grows with x, green with y: the crop keeps the full width and the central rows
    let img = test.image(0);
    assert!(
        img[0] < 30 && img[31] > 225,
        "red across the row: {} .. {}",
        img[0],
        img[31]
    );
    let g_top = img[1024] as i32;
    let g_bottom = img[1024 + 31 * 32] as i32;
    assert!(
        g_top > 20 && g_bottom < 235,
        "central crop drops top and bottom: {g_top} {g_bottom}"
    );
    let short = load_celeba(dir.path(), "test", CelebaResize::ShortSide).unwrap();
    assert_eq!(short.shape, [3, 39, 32]);
    let train = load_celeba(dir.path(), "train", CelebaResize::CenterCrop).unwrap();
    assert_eq!(train.len(), 2);
    assert!(load_celeba(dir.path(), "valid", CelebaResize::CenterCrop).is_err());
}

#[test]
fn celeba_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    write_celeba(dir.path(), 4, Some(3));
    let e = load_celeba(dir.path(), "test", CelebaResize::CenterCrop)
        .unwrap_err()
        .to_string();
    assert!(e.contains("000003.jpg") && e.contains("decode"), "{e}");
    std::fs::write(
        dir.path().join("celeba/list_eval_partition.txt"),
        "000001.jpg 7\n",
    )
    .unwrap();
    let e = load_celeba(dir.path(), "test", CelebaResize::CenterCrop)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("list_eval_partition.txt") && e.contains("line 1"),
        "{e}"
    );
}
