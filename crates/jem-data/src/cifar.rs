//! CIFAR-10 and CIFAR-100 in their official binary versions.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` .. `data_batch_5.bin` and
//! `test_batch.bin`, each a sequence of 3073-byte records: one label byte (0..9), then the
//! 32x32 red plane, green plane and blue plane (row-major).
//! CIFAR-100 (`cifar-100-binary/`): `train.bin` and `test.bin`, 3074-byte records: the coarse
//! label (0..19), the fine label (0..99), then the same 3072 pixel bytes.

use std::path::{Path, PathBuf};

use crate::error::{DataError, IoContext, Result};
use crate::image_set::ImageSet;

/// Pixel bytes of one CIFAR image (3 x 32 x 32).
pub const IMAGE_BYTES: usize = 3 * 32 * 32;
/// Folder the CIFAR-10 binary archive extracts to.
pub const CIFAR10_DIR: &str = "cifar-10-batches-bin";
/// Folder the CIFAR-100 binary archive extracts to.
pub const CIFAR100_DIR: &str = "cifar-100-binary";

/// Which CIFAR-100 label to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cifar100Labels {
    /// The 100 fine classes (the default, as in the paper).
    #[default]
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

/// The CIFAR-10 files of a split, relative to the data folder.
pub fn cifar10_files(data_dir: &Path, train: bool) -> Vec<PathBuf> {
    let dir = data_dir.join(CIFAR10_DIR);
    if train {
        (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect()
    } else {
        vec![dir.join("test_batch.bin")]
    }
}

/// The CIFAR-100 file of a split.
pub fn cifar100_file(data_dir: &Path, train: bool) -> PathBuf {
    data_dir
        .join(CIFAR100_DIR)
        .join(if train { "train.bin" } else { "test.bin" })
}

/// Decodes records of `label_bytes` label bytes + 3072 pixel bytes; `pick` is the label
/// byte to keep and `classes` its range.
fn parse_records(
    bytes: &[u8],
    label_bytes: usize,
    pick: usize,
    classes: usize,
    path: &Path,
) -> Result<ImageSet> {
    let rec = label_bytes + IMAGE_BYTES;
    if bytes.is_empty() || !bytes.len().is_multiple_of(rec) {
        return Err(DataError::format(
            path,
            format!(
                "size {} bytes is not a positive multiple of the {rec}-byte record \
                 (truncated or not a CIFAR binary file)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / rec;
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let l = r[pick];
        if l as usize >= classes {
            return Err(DataError::format(
                path,
                format!("label {l} of record {i} is out of range (classes 0..{classes})"),
            ));
        }
        labels.push(l as u32);
        images.extend_from_slice(&r[label_bytes..]);
    }
    ImageSet::new(
        images,
        labels,
        [3, 32, 32],
        classes,
        &path.display().to_string(),
    )
}

/// Reads one CIFAR-10 binary batch file.
pub fn read_cifar10_file(path: &Path) -> Result<ImageSet> {
    let bytes = std::fs::read(path).at(path)?;
    parse_records(&bytes, 1, 0, 10, path)
}

/// Reads one CIFAR-100 binary file with the chosen labels.
pub fn read_cifar100_file(path: &Path, labels: Cifar100Labels) -> Result<ImageSet> {
    let bytes = std::fs::read(path).at(path)?;
    match labels {
        Cifar100Labels::Fine => parse_records(&bytes, 2, 1, 100, path),
        Cifar100Labels::Coarse => parse_records(&bytes, 2, 0, 20, path),
    }
}

/// Loads the CIFAR-10 training (50,000) or test (10,000) split.
pub fn load_cifar10(data_dir: &Path, train: bool) -> Result<ImageSet> {
    let mut files = cifar10_files(data_dir, train).into_iter();
    let first = files.next().expect("at least one file");
    let mut set = read_cifar10_file(&first)?;
    for f in files {
        set.extend(&read_cifar10_file(&f)?)?;
    }
    Ok(set)
}

/// Loads a CIFAR-100 split.
pub fn load_cifar100(data_dir: &Path, train: bool, labels: Cifar100Labels) -> Result<ImageSet> {
    read_cifar100_file(&cifar100_file(data_dir, train), labels)
}

/// Encodes CIFAR-10 records (for tests and exports); `set` must be 3x32x32 with < 256 labels.
pub fn encode_cifar10(set: &ImageSet) -> Result<Vec<u8>> {
    check_cifar_shape(set)?;
    let mut out = Vec::with_capacity(set.len() * (IMAGE_BYTES + 1));
    for i in 0..set.len() {
        out.push(set.labels[i] as u8);
        out.extend_from_slice(set.image(i));
    }
    Ok(out)
}

/// Encodes CIFAR-100 records with the given coarse and fine labels.
pub fn encode_cifar100(images: &ImageSet, coarse: &[u8], fine: &[u8]) -> Result<Vec<u8>> {
    check_cifar_shape(images)?;
    if coarse.len() != images.len() || fine.len() != images.len() {
        return Err(DataError::Invalid(
            "CIFAR-100 encoding needs one coarse and one fine label per image".into(),
        ));
    }
    let mut out = Vec::with_capacity(images.len() * (IMAGE_BYTES + 2));
    for i in 0..images.len() {
        out.push(coarse[i]);
        out.push(fine[i]);
        out.extend_from_slice(images.image(i));
    }
    Ok(out)
}

fn check_cifar_shape(set: &ImageSet) -> Result<()> {
    if set.shape != [3, 32, 32] || set.labels.iter().any(|&l| l > 255) {
        return Err(DataError::Invalid(format!(
            "CIFAR records need 3x32x32 images and byte labels, got {:?}",
            set.shape
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(n: usize) -> ImageSet {
        let images = (0..n * IMAGE_BYTES).map(|i| (i * 7 % 251) as u8).collect();
        ImageSet::new(
            images,
            (0..n as u32).map(|i| i % 10).collect(),
            [3, 32, 32],
            10,
            "t",
        )
        .unwrap()
    }

    #[test]
    fn cifar10_roundtrip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let set = tiny(5);
        let p = dir.path().join("b.bin");
        std::fs::write(&p, encode_cifar10(&set).unwrap()).unwrap();
        assert_eq!(read_cifar10_file(&p).unwrap(), set);
        // record layout: label byte then the red plane
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes[0], 0);
        assert_eq!(bytes[3073], 1);
        assert_eq!(&bytes[1..11], &set.images[..10]);

        std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
        let e = read_cifar10_file(&p).unwrap_err().to_string();
        assert!(e.contains("b.bin") && e.contains("truncated"), "{e}");
        let mut bad = bytes.clone();
        bad[3073 * 2] = 12;
        std::fs::write(&p, &bad).unwrap();
        let e = read_cifar10_file(&p).unwrap_err().to_string();
        assert!(e.contains("label 12 of record 2"), "{e}");
    }

    #[test]
    fn cifar100_fine_and_coarse() {
        let dir = tempfile::tempdir().unwrap();
        let set = tiny(4);
        let coarse = [1u8, 19, 0, 5];
        let fine = [99u8, 42, 0, 7];
        let p = dir.path().join("train.bin");
        std::fs::write(&p, encode_cifar100(&set, &coarse, &fine).unwrap()).unwrap();
        let f = read_cifar100_file(&p, Cifar100Labels::Fine).unwrap();
        assert_eq!(f.labels, vec![99, 42, 0, 7]);
        assert_eq!(f.num_classes, 100);
        assert_eq!(f.images, set.images);
        let c = read_cifar100_file(&p, Cifar100Labels::Coarse).unwrap();
        assert_eq!(c.labels, vec![1, 19, 0, 5]);
        assert_eq!(c.num_classes, 20);
        let mut bad = std::fs::read(&p).unwrap();
        bad[1] = 100;
        std::fs::write(&p, &bad).unwrap();
        assert!(read_cifar100_file(&p, Cifar100Labels::Fine).is_err());
        bad.truncate(3074 * 2 + 5);
        std::fs::write(&p, &bad).unwrap();
        assert!(
            read_cifar100_file(&p, Cifar100Labels::Coarse)
                .unwrap_err()
                .to_string()
                .contains("3074-byte record")
        );
    }
}
