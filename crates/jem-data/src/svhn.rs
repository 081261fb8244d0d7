//! SVHN cropped digits: `train_32x32.mat`, `test_32x32.mat` (and `extra_32x32.mat`).
//!
//! Each file holds `X`, uint8 of size 32x32x3xN (MATLAB column-major: row, column, channel,
//! image), and `y`, N x 1 labels in 1..=10 where 10 stands for the digit 0.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::image_set::ImageSet;
use crate::matv5::{self, MatArray};

/// Folder of the SVHN files inside the data folder.
pub const SVHN_DIR: &str = "svhn";

/// The file of a split (`train`, `test` or `extra`).
pub fn svhn_file(data_dir: &Path, split: &str) -> PathBuf {
    data_dir.join(SVHN_DIR).join(format!("{split}_32x32.mat"))
}

/// Reads one SVHN `.mat` file into NCHW images with labels 0..9.
pub fn read_svhn_file(path: &Path) -> Result<ImageSet> {
    let vars = matv5::read_mat_file(path)?;
    let find = |n: &str| -> Result<&MatArray> {
        vars.iter()
            .find(|v| v.name == n)
            .ok_or_else(|| DataError::format(path, format!("no variable `{n}` in the file")))
    };
    let x = find("X")?;
    let y = find("y")?;
    let n = match x.dims[..] {
        [32, 32, 3, n] => n,
        [32, 32, 3] => 1,
        _ => {
            return Err(DataError::format(
                path,
                format!("`X` has dimensions {:?}, expected 32x32x3xN", x.dims),
            ));
        }
    };
    if y.numel() != n {
        return Err(DataError::format(
            path,
            format!("`y` has {} labels for {n} images", y.numel()),
        ));
    }
    let xs = x.to_u8().map_err(|m| DataError::format(path, m))?;
    let mut labels = Vec::with_capacity(n);
    for (i, v) in y.to_f64().into_iter().enumerate() {
        if v.fract() != 0.0 || !(1.0..=10.0).contains(&v) {
            return Err(DataError::format(
                path,
                format!("label {v} of image {i} is out of range (1..=10)"),
            ));
        }
        labels.push(if v == 10.0 { 0 } else { v as u32 });
    }
    // column-major X(r, c, ch, i) sits at r + 32 c + 1024 ch + 3072 i
    let mut images = vec![0u8; n * 3072];
    for i in 0..n {
        let src = &xs[i * 3072..(i + 1) * 3072];
        let dst = &mut images[i * 3072..(i + 1) * 3072];
        for ch in 0..3 {
            for r in 0..32 {
                for c in 0..32 {
                    dst[ch * 1024 + r * 32 + c] = src[r + 32 * c + 1024 * ch];
                }
            }
        }
    }
    ImageSet::new(images, labels, [3, 32, 32], 10, &path.display().to_string())
}

/// Encodes images and labels (0..9) as an SVHN `.mat` file (for tests and exports).
pub fn encode_svhn(set: &ImageSet, compress: bool) -> Result<Vec<u8>> {
    if set.shape != [3, 32, 32] || set.num_classes != 10 {
        return Err(DataError::Invalid(
            "SVHN files hold 3x32x32 images of 10 classes".into(),
        ));
    }
    let n = set.len();
    let mut x = vec![0u8; n * 3072];
    for i in 0..n {
        let src = set.image(i);
        for ch in 0..3 {
            for r in 0..32 {
                for c in 0..32 {
                    x[i * 3072 + r + 32 * c + 1024 * ch] = src[ch * 1024 + r * 32 + c];
                }
            }
        }
    }
    let y: Vec<f64> = set
        .labels
        .iter()
        .map(|&l| if l == 0 { 10.0 } else { l as f64 })
        .collect();
    Ok(matv5::encode_mat(
        &[
            (
                "X",
                matv5::MX_UINT8,
                &[32, 32, 3, n],
                matv5::MatData::U8(&x),
            ),
            ("y", matv5::MX_DOUBLE, &[n, 1], matv5::MatData::F64(&y)),
        ],
        compress,
    ))
}
