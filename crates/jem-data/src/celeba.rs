//! CelebA aligned faces: `img_align_celeba/*.jpg` (178x218) and `list_eval_partition.txt`.
//!
//! Two ways to reach 32 pixels:
//! - [`CelebaResize::CenterCrop`] (default): crop the central 178x178 square, then resize to
//!   32x32 with an antialiased bilinear (triangle) filter, as PIL's bilinear resize does when
//!   shrinking. Every image is square, like the CIFAR images the models are trained on.
//! - [`CelebaResize::ShortSide`]: what the reference code does (`torchvision Resize(32)`):
//!   the short side becomes 32 and the long side `floor(32 * 218 / 178)` = 39, giving 3x39x32
//!   images (height 39, width 32).

use std::path::{Path, PathBuf};

#[cfg(feature = "celeba")]
use image::imageops::FilterType;

use crate::error::{DataError, IoContext, Result};
use crate::image_set::ImageSet;

/// Folder of the CelebA files inside the data folder.
pub const CELEBA_DIR: &str = "celeba";

/// How CelebA images become 32 pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CelebaResize {
    /// Central square crop, then 32x32 (our default).
    #[default]
    CenterCrop,
    /// Short side to 32, as the reference (`Resize(32)`): 39x32 for 218x178 inputs.
    ShortSide,
}

/// Partition index of a split in `list_eval_partition.txt`: train 0, valid 1, test 2.
pub fn partition_index(split: &str) -> Option<u8> {
    match split {
        "train" => Some(0),
        "valid" => Some(1),
        "test" => Some(2),
        _ => None,
    }
}

/// Parses `list_eval_partition.txt` (`000001.jpg 0` per line) into (file, partition) pairs.
pub fn read_partition(path: &Path) -> Result<Vec<(String, u8)>> {
    let text = std::fs::read_to_string(path).at(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(p), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(DataError::format(
                path,
                format!(
                    "line {}: expected `<file> <partition>`, found `{line}`",
                    i + 1
                ),
            ));
        };
        let p: u8 = p.parse().ok().filter(|p| *p <= 2).ok_or_else(|| {
            DataError::format(
                path,
                format!("line {}: partition `{p}` is not 0, 1 or 2", i + 1),
            )
        })?;
        if !is_plain_file_name(name) {
            return Err(DataError::format(
                path,
                format!(
                    "line {}: `{name}` is not a plain file name (it would leave img_align_celeba/)",
                    i + 1
                ),
            ));
        }
        out.push((name.to_string(), p));
    }
    Ok(out)
}

/// True for a name that stays inside its folder: one normal path component (no `..`, no root,
/// no separator, no drive prefix).
fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) && !name.contains(['/', '\\'])
}

/// Output `[C, H, W]` for an input of `w` x `h` pixels.
pub fn output_shape(resize: CelebaResize, w: u32, h: u32) -> [usize; 3] {
    match resize {
        CelebaResize::CenterCrop => [3, 32, 32],
        CelebaResize::ShortSide => {
            let (s, l) = (w.min(h) as u64, w.max(h) as u64);
            let long = (32 * l / s) as usize;
            if w <= h { [3, long, 32] } else { [3, 32, long] }
        }
    }
}

/// The largest image side [`prepare_image`] decodes (CelebA's aligned images are 178x218): a
/// few hundred bytes of JPEG can declare 65535x65535 pixels.
pub const MAX_IMAGE_SIDE: u32 = 2048;

/// Decodes and resizes one image to CHW bytes; images over [`MAX_IMAGE_SIDE`] are refused.
/// Without the `celeba` feature (JPEG decoding) this is an error naming the feature.
#[cfg(not(feature = "celeba"))]
pub fn prepare_image(path: &Path, _resize: CelebaResize) -> Result<(Vec<u8>, [usize; 3])> {
    Err(DataError::format(
        path,
        "decoding images needs jem-data's `celeba` feature, which this build lacks",
    ))
}

/// Decodes and resizes one image to CHW bytes; images over [`MAX_IMAGE_SIDE`] are refused.
#[cfg(feature = "celeba")]
pub fn prepare_image(path: &Path, resize: CelebaResize) -> Result<(Vec<u8>, [usize; 3])> {
    let limits = jem_io::image::ImageLimits {
        max_side: MAX_IMAGE_SIDE,
        max_alloc: 64 << 20,
    };
    let img = jem_io::image::decode_rgb8(path, limits)?;
    let (w, h) = img.dimensions();
    let shape = output_shape(resize, w, h);
    let out = match resize {
        CelebaResize::CenterCrop => {
            let s = w.min(h);
            let crop = image::imageops::crop_imm(&img, (w - s) / 2, (h - s) / 2, s, s).to_image();
            image::imageops::resize(&crop, 32, 32, FilterType::Triangle)
        }
        CelebaResize::ShortSide => {
            image::imageops::resize(&img, shape[2] as u32, shape[1] as u32, FilterType::Triangle)
        }
    };
    let (ow, oh) = (out.width() as usize, out.height() as usize);
    let mut chw = vec![0u8; 3 * ow * oh];
    for (i, p) in out.pixels().enumerate() {
        for c in 0..3 {
            chw[c * ow * oh + i] = p.0[c];
        }
    }
    Ok((chw, shape))
}

/// One decoded image: CHW bytes and their shape.
type Prepared = (Vec<u8>, [usize; 3]);

/// Loads a CelebA split (`train`, `valid` or `test`) from `<data_dir>/celeba/`. Images are
/// unlabelled (label 0, one class); decoding runs on all cores.
pub fn load_celeba(data_dir: &Path, split: &str, resize: CelebaResize) -> Result<ImageSet> {
    let root = data_dir.join(CELEBA_DIR);
    let part = partition_index(split)
        .ok_or_else(|| DataError::Invalid(format!("CelebA has no split `{split}`")))?;
    let files: Vec<PathBuf> = read_partition(&root.join("list_eval_partition.txt"))?
        .into_iter()
        .filter(|(_, p)| *p == part)
        .map(|(f, _)| root.join("img_align_celeba").join(f))
        .collect();
    if files.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no image in split `{split}`",
            root.join("list_eval_partition.txt").display()
        )));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = files.len().div_ceil(threads);
    let parts: Vec<Result<Vec<Prepared>>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(|f| prepare_image(f, resize)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("decoder thread panicked"))
            .collect()
    });
    let mut images = Vec::new();
    let mut shape = None;
    for (i, (px, sh)) in parts
        .into_iter()
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .enumerate()
    {
        if *shape.get_or_insert(sh) != sh {
            return Err(DataError::format(
                &files[i],
                format!(
                    "resizes to {sh:?}, unlike the first image ({:?})",
                    shape.unwrap_or(sh)
                ),
            ));
        }
        images.extend_from_slice(&px);
    }
    let n = files.len();
    ImageSet::new(
        images,
        vec![0; n],
        shape.unwrap_or([3, 32, 32]),
        1,
        "CelebA",
    )
}
