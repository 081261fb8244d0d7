//! The small real data sets compiled into the library, so the quick reproduction runs on a
//! fresh machine with no download: a class-balanced subset of Fashion-MNIST (10,000 train,
//! 2,000 test images) and 2,000 MNIST test digits for out-of-distribution evaluation.
//! They are IDX files (gzip), read by the same reader as the full sets, and were made by
//! `cargo xtask make-quick-data` from the official-format files.

use std::path::Path;

use crate::datasets::DatasetName;
use crate::error::{DataError, Result};
use crate::idx;
use crate::image_set::ImageSet;

macro_rules! file {
    ($dir:literal, $name:literal) => {
        (
            concat!($dir, "/", $name),
            include_bytes!(concat!("../embedded/", $dir, "/", $name)).as_slice(),
        )
    };
}

type Embedded = (&'static str, &'static [u8]);

const FMNIST_TRAIN: [Embedded; 2] = [
    file!("fashion-mnist-quick", "train-images-idx3-ubyte.gz"),
    file!("fashion-mnist-quick", "train-labels-idx1-ubyte.gz"),
];
const FMNIST_TEST: [Embedded; 2] = [
    file!("fashion-mnist-quick", "t10k-images-idx3-ubyte.gz"),
    file!("fashion-mnist-quick", "t10k-labels-idx1-ubyte.gz"),
];
const MNIST_TEST: [Embedded; 2] = [
    file!("mnist-quick", "t10k-images-idx3-ubyte.gz"),
    file!("mnist-quick", "t10k-labels-idx1-ubyte.gz"),
];

/// Images per class in each embedded split: (data set, split, per class).
pub const LAYOUT: [(&str, &str, usize); 3] = [
    ("fashion-mnist-quick", "train", 1000),
    ("fashion-mnist-quick", "test", 200),
    ("mnist-quick", "test", 200),
];

/// Loads an embedded split.
pub fn load(name: DatasetName, split: &str) -> Result<ImageSet> {
    let files = match (name, split) {
        (DatasetName::FashionMnistQuick, "train") => &FMNIST_TRAIN,
        (DatasetName::FashionMnistQuick, "test") => &FMNIST_TEST,
        (DatasetName::MnistQuick, "test") => &MNIST_TEST,
        _ => {
            return Err(DataError::Invalid(format!(
                "no embedded split `{split}` of {name}"
            )));
        }
    };
    let (ip, lp) = (Path::new(files[0].0), Path::new(files[1].0));
    idx::image_set_from_idx(
        idx::parse_idx(files[0].1, ip)?,
        idx::parse_idx(files[1].1, lp)?,
        10,
        (ip, lp),
    )
}
