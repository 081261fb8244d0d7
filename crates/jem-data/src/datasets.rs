//! The data sets the paper uses: names, splits, where their files live, how to fetch them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::celeba::{self, CELEBA_DIR, CelebaResize};
use crate::cifar::{self, Cifar100Labels};
#[cfg(feature = "download")]
use crate::download::{self, FetchOptions};
use crate::download::{Checksum, RemoteFile};
use crate::error::{DataError, Result};
use crate::image_set::ImageSet;
use crate::{embedded, idx, svhn};

/// A data set known to the project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetName {
    /// MNIST digits (28x28 gray).
    Mnist,
    /// Fashion-MNIST (28x28 gray, 10 clothing classes).
    FashionMnist,
    /// CIFAR-10 (32x32 colour).
    Cifar10,
    /// CIFAR-100 (32x32 colour, 100 fine / 20 coarse classes).
    Cifar100,
    /// SVHN cropped digits (32x32 colour).
    Svhn,
    /// CelebA aligned faces (unlabelled here; OOD only).
    Celeba,
    /// Embedded subset of Fashion-MNIST: 10,000 train and 2,000 test images, balanced.
    FashionMnistQuick,
    /// Embedded subset of the MNIST test set: 2,000 images, balanced (OOD for the above).
    MnistQuick,
}

/// Options that change how a split is decoded.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// CIFAR-100 labels (fine by default).
    pub cifar100_labels: Cifar100Labels,
    /// CelebA resizing (centre crop by default).
    pub celeba_resize: CelebaResize,
}

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

fn idx_sources(base: &[&str], names: [(&str, &str); 4]) -> Vec<RemoteFile> {
    names
        .iter()
        .map(|(file, md5)| RemoteFile {
            urls: base.iter().map(|b| format!("{b}{file}")).collect(),
            file_name: file.to_string(),
            checksum: Checksum::Md5(md5.to_string()),
        })
        .collect()
}

impl DatasetName {
    /// Every data set, in a stable order.
    pub const ALL: [DatasetName; 8] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Cifar100,
        DatasetName::Svhn,
        DatasetName::Celeba,
        DatasetName::FashionMnistQuick,
        DatasetName::MnistQuick,
    ];

    /// The command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::Svhn => "svhn",
            DatasetName::Celeba => "celeba",
            DatasetName::FashionMnistQuick => "fashion-mnist-quick",
            DatasetName::MnistQuick => "mnist-quick",
        }
    }

    /// True for the sets compiled into the library (no files needed).
    pub fn is_embedded(self) -> bool {
        matches!(
            self,
            DatasetName::FashionMnistQuick | DatasetName::MnistQuick
        )
    }

    /// The splits this data set has.
    pub fn splits(self) -> &'static [&'static str] {
        match self {
            DatasetName::Svhn => &["train", "test", "extra"],
            DatasetName::Celeba => &["train", "valid", "test"],
            DatasetName::MnistQuick => &["test"],
            _ => &["train", "test"],
        }
    }

    /// Number of classes (CIFAR-100: of the chosen labels; CelebA: 1, unlabelled).
    pub fn num_classes(self, opts: &LoadOptions) -> usize {
        match self {
            DatasetName::Cifar100 => match opts.cifar100_labels {
                Cifar100Labels::Fine => 100,
                Cifar100Labels::Coarse => 20,
            },
            DatasetName::Celeba => 1,
            _ => 10,
        }
    }

    /// Class names where they are short enough to list.
    pub fn class_names(self) -> Option<&'static [&'static str]> {
        match self {
            DatasetName::FashionMnist | DatasetName::FashionMnistQuick => Some(&FASHION_CLASSES),
            DatasetName::Mnist | DatasetName::MnistQuick | DatasetName::Svhn => Some(&DIGITS),
            DatasetName::Cifar10 => Some(&CIFAR10_CLASSES),
            _ => None,
        }
    }

    /// Whether horizontal flips are a valid augmentation (not for digits).
    pub fn flip_ok(self) -> bool {
        !matches!(
            self,
            DatasetName::Mnist | DatasetName::MnistQuick | DatasetName::Svhn
        )
    }

    /// The folder (inside the data folder) where the data set's files live.
    pub fn dir(self, data_dir: &Path) -> PathBuf {
        match self {
            DatasetName::Cifar10 => data_dir.join(cifar::CIFAR10_DIR),
            DatasetName::Cifar100 => data_dir.join(cifar::CIFAR100_DIR),
            DatasetName::Svhn => data_dir.join(svhn::SVHN_DIR),
            DatasetName::Celeba => data_dir.join(CELEBA_DIR),
            other => data_dir.join(other.as_str()),
        }
    }

    /// The files a split needs (empty for embedded sets). For IDX sets both the `.gz` and
    /// the uncompressed name are accepted; this lists the name found, else the `.gz` name.
    pub fn split_files(self, split: &str, data_dir: &Path) -> Vec<PathBuf> {
        let idx_pair = |dir: PathBuf, prefix: &str| -> Vec<PathBuf> {
            ["images-idx3-ubyte", "labels-idx1-ubyte"]
                .iter()
                .map(|kind| {
                    let raw = dir.join(format!("{prefix}-{kind}"));
                    if raw.exists() {
                        raw
                    } else {
                        dir.join(format!("{prefix}-{kind}.gz"))
                    }
                })
                .collect()
        };
        match (self, split) {
            (DatasetName::Mnist | DatasetName::FashionMnist, "train") => {
                idx_pair(self.dir(data_dir), "train")
            }
            (DatasetName::Mnist | DatasetName::FashionMnist, "test") => {
                idx_pair(self.dir(data_dir), "t10k")
            }
            (DatasetName::Cifar10, s) => cifar::cifar10_files(data_dir, s == "train"),
            (DatasetName::Cifar100, s) => vec![cifar::cifar100_file(data_dir, s == "train")],
            (DatasetName::Svhn, s) => vec![svhn::svhn_file(data_dir, s)],
            (DatasetName::Celeba, _) => {
                vec![
                    self.dir(data_dir).join("list_eval_partition.txt"),
                    self.dir(data_dir).join("img_align_celeba"),
                ]
            }
            _ => Vec::new(),
        }
    }

    /// Loads one split, with a clear error when a file is missing or bad.
    pub fn load(self, split: &str, data_dir: &Path, opts: &LoadOptions) -> Result<ImageSet> {
        if !self.splits().contains(&split) {
            return Err(DataError::Invalid(format!(
                "{self} has no split `{split}` (it has: {})",
                self.splits().join(", ")
            )));
        }
        if self.is_embedded() {
            return embedded::load(self, split);
        }
        for f in self.split_files(split, data_dir) {
            if !f.exists() {
                return Err(DataError::Missing {
                    path: f,
                    what: format!("{self} {split} split"),
                    hint: format!(
                        "Run `jem data fetch {self} --data-dir {}` or see `jem data fetch --help`.",
                        data_dir.display()
                    ),
                });
            }
        }
        let files = self.split_files(split, data_dir);
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist => {
                idx::load_idx_pair(&files[0], &files[1], 10)
            }
            DatasetName::Cifar10 => cifar::load_cifar10(data_dir, split == "train"),
            DatasetName::Cifar100 => {
                cifar::load_cifar100(data_dir, split == "train", opts.cifar100_labels)
            }
            DatasetName::Svhn => svhn::read_svhn_file(&files[0]),
            DatasetName::Celeba => celeba::load_celeba(data_dir, split, opts.celeba_resize),
            DatasetName::FashionMnistQuick | DatasetName::MnistQuick => unreachable!(),
        }
    }

    /// The official downloads and whether each is an archive to unpack.
    pub fn remote_files(self) -> Vec<(RemoteFile, Archive)> {
        let plain = |v: Vec<RemoteFile>| v.into_iter().map(|f| (f, Archive::None)).collect();
        match self {
            DatasetName::Mnist => plain(idx_sources(
                &[
                    "https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "http://yann.lecun.com/exdb/mnist/",
                ],
                [
                    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
                    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
                ],
            )),
            DatasetName::FashionMnist => plain(idx_sources(
                &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
                [
                    ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                    ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
                    ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                    ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
                ],
            )),
            DatasetName::Cifar10 => vec![(
                RemoteFile {
                    urls: vec!["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz".into()],
                    file_name: "cifar-10-binary.tar.gz".into(),
                    checksum: Checksum::Md5("c32a1d4ab5d03f1284b67883e8d87530".into()),
                },
                Archive::TarGz,
            )],
            DatasetName::Cifar100 => vec![(
                RemoteFile {
                    urls: vec!["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz".into()],
                    file_name: "cifar-100-binary.tar.gz".into(),
                    checksum: Checksum::Md5("03b5dce01913d631647c71ecec9e9cb8".into()),
                },
                Archive::TarGz,
            )],
            DatasetName::Svhn => plain(
                [
                    ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
                    ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
                ]
                .iter()
                .map(|(f, md5)| RemoteFile {
                    urls: vec![format!("http://ufldl.stanford.edu/housenumbers/{f}")],
                    file_name: f.to_string(),
                    checksum: Checksum::Md5(md5.to_string()),
                })
                .collect(),
            ),
            DatasetName::Celeba => [
                ("0B7EVK8r0v71pZjFTYXZWM3FlRnM", "00d2c5bc6d35e252742224ab0c1e8fcb", "img_align_celeba.zip", Archive::Zip),
                ("0B7EVK8r0v71pY0NSMzRuSXJEVkk", "d32c9cbf5e040fd4025c592c306e6668", "list_eval_partition.txt", Archive::None),
            ]
            .into_iter()
            .map(|(id, md5, name, archive)| {
                (
                    RemoteFile {
                        urls: vec![format!(
                            "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"
                        )],
                        file_name: name.to_string(),
                        checksum: Checksum::Md5(md5.to_string()),
                    },
                    archive,
                )
            })
            .collect(),
            DatasetName::FashionMnistQuick | DatasetName::MnistQuick => Vec::new(),
        }
    }

    /// True when every file of every split is present.
    pub fn is_present(self, data_dir: &Path) -> bool {
        self.splits()
            .iter()
            .filter(|s| **s != "extra")
            .all(|s| self.split_files(s, data_dir).iter().all(|f| f.exists()))
    }

    /// Downloads, verifies and unpacks the data set into `data_dir` (feature `download`). Files already present
    /// are verified instead of downloaded; archives are deleted after unpacking unless
    /// `keep_archives`. Returns the data set's folder.
    #[cfg(feature = "download")]
    pub fn fetch(
        self,
        data_dir: &Path,
        opts: &FetchOptions,
        keep_archives: bool,
    ) -> Result<PathBuf> {
        let dir = self.dir(data_dir);
        if self.is_embedded() || self.is_present(data_dir) {
            return Ok(dir);
        }
        // archives unpack into the data folder (they contain the data set's folder); plain
        // files go straight into the data set's folder
        for (file, archive) in self.remote_files() {
            let target = if archive == Archive::None {
                dir.clone()
            } else {
                data_dir.to_path_buf()
            };
            let path = download::fetch_file(&file, &target, opts)?;
            let unpack_into = if self == DatasetName::Celeba {
                dir.clone()
            } else {
                data_dir.to_path_buf()
            };
            match archive {
                Archive::None => {}
                Archive::TarGz => download::extract_tar_gz(&path, &unpack_into)?,
                Archive::Zip => download::extract_zip(&path, &unpack_into)?,
            }
            if archive != Archive::None && !keep_archives {
                std::fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?;
            }
        }
        if !self.is_present(data_dir) {
            return Err(DataError::Invalid(format!(
                "{self}: the downloads did not contain the expected files under {}",
                dir.display()
            )));
        }
        Ok(dir)
    }
}

/// Kind of a downloaded file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archive {
    /// Used as it is.
    None,
    /// A gzip-compressed tar archive.
    TarGz,
    /// A zip archive.
    Zip,
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let norm = s.to_ascii_lowercase().replace('_', "-");
        let alias = match norm.as_str() {
            "fmnist" => "fashion-mnist",
            "cifar-10" => "cifar10",
            "cifar-100" => "cifar100",
            other => other,
        };
        DatasetName::ALL
            .into_iter()
            .find(|d| d.as_str() == alias)
            .ok_or_else(|| {
                DataError::Invalid(format!(
                    "unknown data set `{s}` (known: {})",
                    DatasetName::ALL.map(|d| d.as_str()).join(", ")
                ))
            })
    }
}

/// The data folder: `explicit` if given, else `$JEM_DATA_DIR`, else the per-user cache
/// folder (`~/.cache/sadajem/data` on Linux).
pub fn resolve_data_dir(explicit: Option<&Path>) -> PathBuf {
    resolve_dir(explicit, "JEM_DATA_DIR", Some("data"))
}

/// The folder for computed caches (class statistics, ...): `explicit` if given, else
/// `$JEM_CACHE_DIR`, else the per-user cache folder (`~/.cache/sadajem` on Linux). Caches
/// never go into the data folder, which may be read-only or shared.
pub fn resolve_cache_dir(explicit: Option<&Path>) -> PathBuf {
    resolve_dir(explicit, "JEM_CACHE_DIR", None)
}

fn resolve_dir(explicit: Option<&Path>, var: &str, sub: Option<&str>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let base = dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("sadajem");
    match sub {
        Some(s) => base.join(s),
        None => base,
    }
}
