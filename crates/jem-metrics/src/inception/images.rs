//! FID, KID and the Inception Score straight from images: a folder of PNG / JPEG files or a
//! `.npy` array (feature `images`).
//!
//! ```no_run
//! use candle_core::Device;
//! use jem_metrics::inception::FidInception;
//! use jem_metrics::inception::images::{ImageMetrics, PixelRange};
//! use jem_metrics::kid::KidOptions;
//!
//! let net = FidInception::load("pt_inception-2015-12-05-6726825d.pth", &Device::Cpu)?;
//! let metrics = ImageMetrics::new(&net);
//! let real = metrics.features("real_images/".as_ref(), PixelRange::Auto)?;
//! let fake = metrics.features("samples.npy".as_ref(), PixelRange::Symmetric)?;
//! println!("FID {}", metrics.fid(&real, &fake)?.fid);
//! println!("KID {}", metrics.kid(&real, &fake, &KidOptions::default())?.mean);
//! # Ok::<(), jem_metrics::MetricError>(())
//! ```

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use jem_io::image::{ImageLimits, decode_rgb8};

use super::{FidInception, InceptionFeatures, NUM_LOGITS, POOL_DIM};
use crate::fid::{FidOptions, FidReport, GaussianStats, frechet_distance_with};
use crate::inception_score::{InceptionScore, inception_score_from_logits, reference_splits};
use crate::kid::{KidOptions, KidReport, kid};
use crate::npy::{NpyData, read_npy};
use crate::{MetricError, Result};

/// How the values of a `.npy` array map to pixels in `[0, 1]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PixelRange {
    /// Integer arrays are bytes (`0..=255`), float arrays are in `[0, 1]`.
    #[default]
    Auto,
    /// `[0, 1]`.
    Unit,
    /// `[-1, 1]`, as model samples are.
    Symmetric,
    /// `0..=255`.
    Byte,
}

impl std::str::FromStr for PixelRange {
    type Err = MetricError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" | "" => Ok(Self::Auto),
            "unit" => Ok(Self::Unit),
            "symmetric" => Ok(Self::Symmetric),
            "byte" => Ok(Self::Byte),
            _ => Err(MetricError::Invalid(format!(
                "pixel range `{s}`: expected auto, unit, symmetric or byte"
            ))),
        }
    }
}

/// The Inception metrics of image files through one network.
pub struct ImageMetrics<'a> {
    net: &'a FidInception,
    /// Images per forward pass (50, as pytorch-fid).
    pub batch_size: usize,
    /// Write a progress line to stderr.
    pub progress: bool,
}

impl<'a> ImageMetrics<'a> {
    /// Metrics through `net`, 50 images a batch, no progress output.
    pub fn new(net: &'a FidInception) -> Self {
        Self {
            net,
            batch_size: 50,
            progress: false,
        }
    }

    /// The Inception outputs of the images in `source` ([`load_images`]).
    pub fn features(&self, source: &Path, range: PixelRange) -> Result<InceptionFeatures> {
        let images = load_images(source, range)?
            .to_device(self.net.device())
            .map_err(|e| MetricError::Invalid(format!("{}: {e}", source.display())))?;
        self.net.extract(&images, self.batch_size, self.progress)
    }

    /// FID between two feature sets (pool3 statistics, pytorch-fid's options).
    pub fn fid(&self, real: &InceptionFeatures, fake: &InceptionFeatures) -> Result<FidReport> {
        let r = GaussianStats::from_features_named("real", &real.pool, real.count, POOL_DIM)?;
        let f = GaussianStats::from_features_named("generated", &fake.pool, fake.count, POOL_DIM)?;
        frechet_distance_with(&r, &f, &FidOptions::default())
    }

    /// KID between two feature sets (torch-fidelity's estimator and subsets).
    pub fn kid(
        &self,
        real: &InceptionFeatures,
        fake: &InceptionFeatures,
        opts: &KidOptions,
    ) -> Result<KidReport> {
        kid(&real.pool, &fake.pool, POOL_DIM, opts)
    }

    /// The Inception Score of a feature set in the TF convention (`splits`: `None` for the
    /// reference's 10, or fewer for small sets); needs weights with the classifier.
    pub fn inception_score(
        &self,
        features: &InceptionFeatures,
        splits: Option<usize>,
    ) -> Result<InceptionScore> {
        self.net.require_logits()?;
        let n = features.count;
        let splits = splits.unwrap_or_else(|| reference_splits(n));
        inception_score_from_logits(&features.logits_unbiased, NUM_LOGITS, splits)
    }
}

/// Images as `[N, C, H, W]` f32 in `[0, 1]` on the CPU: a folder of PNG / JPEG files (sorted
/// by name, all of one size, decoded as RGB) or a `.npy` array `[N, H, W]`, `[N, C, H, W]`
/// or `[N, H, W, C]` (1 or 3 channels) whose values `range` maps to `[0, 1]`. A value
/// outside the range is an error naming its index.
pub fn load_images(source: &Path, range: PixelRange) -> Result<Tensor> {
    if source.is_dir() {
        return load_folder(source);
    }
    let bad = |msg: String| MetricError::Invalid(format!("{}: {msg}", source.display()));
    let a = read_npy(source)?;
    let (n, c, h, w, nhwc) = match a.shape[..] {
        [n, h, w] => (n, 1, h, w, false),
        [n, c, h, w] if c == 1 || c == 3 => (n, c, h, w, false),
        [n, h, w, c] if c == 1 || c == 3 => (n, c, h, w, true),
        _ => {
            return Err(bad(format!(
                "images must be [N, H, W], [N, C, H, W] or [N, H, W, C] with 1 or 3 channels, \
                 got shape {:?}",
                a.shape
            )));
        }
    };
    if n == 0 {
        return Err(bad("no images".into()));
    }
    let integers = matches!(a.data, NpyData::UInt(_) | NpyData::Int(_));
    let (scale, offset) = match (range, integers) {
        (PixelRange::Byte, _) | (PixelRange::Auto, true) => (1.0 / 255.0, 0.0),
        (PixelRange::Symmetric, _) => (0.5, 0.5),
        _ => (1.0, 0.0),
    };
    let raw = a.to_f64();
    let mut v = Vec::with_capacity(raw.len());
    for (i, &x) in raw.iter().enumerate() {
        let p = x * scale + offset;
        if !(-1e-6..=1.0 + 1e-6).contains(&p) {
            return Err(bad(format!(
                "value {x} at flat index {i} is outside the pixel range ({range:?}): use the \
                 symmetric range for images in [-1, 1] or byte for 0..255"
            )));
        }
        v.push(p.clamp(0.0, 1.0) as f32);
    }
    let cpu = &Device::Cpu;
    let t = if nhwc {
        Tensor::from_vec(v, (n, h, w, c), cpu).and_then(|t| t.permute((0, 3, 1, 2)))
    } else {
        Tensor::from_vec(v, (n, c, h, w), cpu)
    };
    t.and_then(|t| t.contiguous())
        .map_err(|e| bad(e.to_string()))
}

fn load_folder(dir: &Path) -> Result<Tensor> {
    let bad = |p: &Path, msg: String| MetricError::Invalid(format!("{}: {msg}", p.display()));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| bad(dir, format!("cannot read the folder: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad(dir, "no PNG or JPEG images in the folder".into()));
    }
    let mut pixels = Vec::new();
    let mut size = None;
    for f in &files {
        let img = decode(f)?;
        let dims = img.dimensions();
        let first = *size.get_or_insert(dims);
        if first != dims {
            return Err(bad(
                f,
                format!(
                    "{}x{} pixels, but the first image has {}x{}: all images must have one size",
                    dims.0, dims.1, first.0, first.1
                ),
            ));
        }
        pixels.extend(img.into_raw().into_iter().map(|p| f32::from(p) / 255.0));
    }
    let (w, h) = size.unwrap_or((0, 0));
    Tensor::from_vec(
        pixels,
        (files.len(), h as usize, w as usize, 3),
        &Device::Cpu,
    )
    .and_then(|t| t.permute((0, 3, 1, 2))?.contiguous())
    .map_err(|e| bad(dir, e.to_string()))
}

/// The largest image side decoded (a few bytes of PNG can declare 65535 x 65535 pixels).
pub const MAX_IMAGE_SIDE: u32 = 4096;

fn decode(f: &Path) -> Result<image::RgbImage> {
    let limits = ImageLimits {
        max_side: MAX_IMAGE_SIDE,
        max_alloc: 256 << 20,
    };
    Ok(decode_rgb8(f, limits)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("jem-metrics-img-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn folders_and_arrays_load_to_unit_range_nchw() {
        let dir = scratch("load");
        for (i, v) in [0u8, 255].into_iter().enumerate() {
            image::RgbImage::from_pixel(4, 3, image::Rgb([v, v / 2, 0]))
                .save(dir.join(format!("{i}.png")))
                .unwrap();
        }
        let t = load_images(&dir, PixelRange::Auto).unwrap();
        assert_eq!(t.dims(), [2, 3, 3, 4]);
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v[0], 0.0);
        assert_eq!(v[36], 1.0);
        assert_eq!(v[36 + 12], 127.0 / 255.0);
        // an image of another size is refused, naming it
        image::RgbImage::new(5, 3).save(dir.join("2.png")).unwrap();
        let e = load_images(&dir, PixelRange::Auto).unwrap_err().to_string();
        assert!(e.contains("2.png") && e.contains("5x3"), "{e}");

        let npy = dir.join("x.npy");
        crate::npy::write_npy(&npy, &[1, 2, 2, 1], &[-1.0f32, 0.0, 0.5, 1.0]).unwrap();
        let t = load_images(&npy, PixelRange::Symmetric).unwrap();
        assert_eq!(t.dims(), [1, 1, 2, 2]);
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, [0.0, 0.5, 0.75, 1.0]);
        let e = load_images(&npy, PixelRange::Unit).unwrap_err().to_string();
        assert!(e.contains("flat index 0"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
