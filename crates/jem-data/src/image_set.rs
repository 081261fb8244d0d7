//! In-memory image sets: `u8` pixels in NCHW order plus labels, and float sets for derived data.

use crate::error::{DataError, Result};
use crate::rng::{derive_seed, permutation};

/// A decoded data set split: `len * C * H * W` bytes in NCHW order and one label per image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Pixels, NCHW, row-major.
    pub images: Vec<u8>,
    /// One label per image, each `< num_classes`.
    pub labels: Vec<u32>,
    /// `[C, H, W]` of every image.
    pub shape: [usize; 3],
    /// Number of classes (1 for unlabelled sets such as CelebA).
    pub num_classes: usize,
}

impl ImageSet {
    /// Builds a set, checking sizes and label range. `what` names the source in errors.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u32>,
        shape: [usize; 3],
        num_classes: usize,
        what: &str,
    ) -> Result<Self> {
        let per = shape.iter().product::<usize>();
        if per == 0 || images.len() != per * labels.len() {
            return Err(DataError::Invalid(format!(
                "{what}: {} pixel bytes do not make {} images of shape {shape:?}",
                images.len(),
                labels.len()
            )));
        }
        if let Some((i, l)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= num_classes)
        {
            return Err(DataError::Invalid(format!(
                "{what}: label {l} of image {i} is out of range (classes 0..{num_classes})"
            )));
        }
        Ok(Self {
            images,
            labels,
            shape,
            num_classes,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set has no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image, `C * H * W`.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of image `i`, CHW.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// A new set with the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        ImageSet {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            num_classes: self.num_classes,
        }
    }

    /// Appends the images of `other` (same shape and classes).
    pub fn extend(&mut self, other: &ImageSet) -> Result<()> {
        if other.shape != self.shape || other.num_classes != self.num_classes {
            return Err(DataError::Invalid(format!(
                "cannot join image sets of shapes {:?}/{} and {:?}/{} classes",
                self.shape, self.num_classes, other.shape, other.num_classes
            )));
        }
        self.images.extend_from_slice(&other.images);
        self.labels.extend_from_slice(&other.labels);
        Ok(())
    }

    /// Number of images of each class.
    pub fn per_class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Per-channel mean and (population) standard deviation of the pixels in [0, 1] units.
    pub fn channel_mean_std(&self) -> (Vec<f64>, Vec<f64>) {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let mut sums = vec![0u64; c];
        let mut sq = vec![0u64; c];
        for img in self.images.chunks_exact(c * plane) {
            for ch in 0..c {
                for &p in &img[ch * plane..(ch + 1) * plane] {
                    sums[ch] += p as u64;
                    sq[ch] += (p as u64) * (p as u64);
                }
            }
        }
        let n = (self.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sums.iter().map(|&s| s as f64 / n / 255.0).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(&s, m)| ((s as f64 / n / (255.0 * 255.0)) - m * m).max(0.0).sqrt())
            .collect();
        (mean, std)
    }

    /// Indices of a class-balanced random subset with `per_class` images of each class,
    /// chosen with `seed` and returned in increasing order.
    pub fn balanced_indices(&self, per_class: usize, seed: u64) -> Result<Vec<usize>> {
        let mut by_class = vec![Vec::new(); self.num_classes];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        let mut out = Vec::with_capacity(per_class * self.num_classes);
        for (c, idx) in by_class.iter().enumerate() {
            if idx.len() < per_class {
                return Err(DataError::Invalid(format!(
                    "class {c} has {} images, fewer than the {per_class} asked for",
                    idx.len()
                )));
            }
            let perm = permutation(idx.len(), derive_seed(&[seed, c as u64]));
            out.extend(perm[..per_class].iter().map(|&j| idx[j]));
        }
        out.sort_unstable();
        Ok(out)
    }
}

/// Images already in model space: `f32` CHW values in [-1, 1] (derived OOD sets).
#[derive(Clone, Debug, PartialEq)]
pub struct FloatImageSet {
    /// Values, NCHW.
    pub data: Vec<f32>,
    /// One label per image.
    pub labels: Vec<u32>,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
}

impl FloatImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The values of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n: usize = self.shape.iter().product();
        &self.data[i * n..(i + 1) * n]
    }
}
