//! Pixel scaling and augmentation, on one image at a time (CHW, `f32`).
//!
//! Pixels map from bytes to [-1, 1] exactly as `ToTensor()` + `Normalize(0.5, 0.5)`:
//! `(x / 255 - 0.5) / 0.5` in `f32`. A [`Transform`] then applies, in this order:
//! 1. `pad_to`: zero-padding to a larger size, centred, with black pixels (byte 0, i.e. -1),
//!    as `Pad` on the image before `ToTensor` (28x28 digits become 32x32);
//! 2. `gray_to_rgb`: repeat a single channel three times;
//! 3. `crop_pad`: reflect-pad by this many pixels, then crop a random window of the original
//!    size (`Pad(p, padding_mode="reflect")` + `RandomCrop`);
//! 4. `hflip`: mirror left-right with probability 1/2 (`RandomHorizontalFlip`);
//! 5. `noise_sigma`: add Gaussian noise of this standard deviation.

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::image_set::{FloatImageSet, ImageSet};

/// The byte-to-[-1, 1] table, computed as torchvision does in `f32`.
pub fn byte_to_unit_table() -> [f32; 256] {
    std::array::from_fn(|x| ((x as f32 / 255.0) - 0.5) / 0.5)
}

/// Anything that yields images in [-1, 1] by index: decoded sets and derived float sets.
pub trait ImageSource: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `[C, H, W]`.
    fn shape(&self) -> [usize; 3];
    /// Number of classes.
    fn num_classes(&self) -> usize;
    /// Label of image `i`.
    fn label(&self, i: usize) -> u32;
    /// Writes image `i` as `f32` in [-1, 1] into `out` (length `C * H * W`).
    fn read_unit(&self, i: usize, out: &mut [f32]);
}

impl ImageSource for ImageSet {
    fn len(&self) -> usize {
        ImageSet::len(self)
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }
    fn read_unit(&self, i: usize, out: &mut [f32]) {
        static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
        let t = TABLE.get_or_init(byte_to_unit_table);
        for (o, &b) in out.iter_mut().zip(self.image(i)) {
            *o = t[b as usize];
        }
    }
}

impl ImageSource for FloatImageSet {
    fn len(&self) -> usize {
        FloatImageSet::len(self)
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn num_classes(&self) -> usize {
        self.num_classes
    }
    fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }
    fn read_unit(&self, i: usize, out: &mut [f32]) {
        out.copy_from_slice(self.image(i));
    }
}

/// The largest image side a transform may pad to.
pub const MAX_SIDE: usize = 1024;

/// What to do to each image; the default does nothing but scale to [-1, 1].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Transform {
    /// Zero-pad (black) to this `[H, W]`, centred.
    pub pad_to: Option<[usize; 2]>,
    /// Repeat a grayscale channel into three.
    pub gray_to_rgb: bool,
    /// Reflect-pad by this many pixels, then random-crop back (0 = off).
    pub crop_pad: usize,
    /// Random horizontal flip.
    pub hflip: bool,
    /// Standard deviation of added Gaussian noise (0 = off).
    pub noise_sigma: f32,
}

impl Transform {
    /// The training augmentation of the reference code for 32x32 images:
    /// reflect-pad 4, random crop, horizontal flip (`flip = false` for digits).
    pub fn augment(flip: bool) -> Self {
        Self {
            crop_pad: 4,
            hflip: flip,
            ..Self::default()
        }
    }

    /// True when the transform draws random numbers.
    pub fn is_random(&self) -> bool {
        self.crop_pad > 0 || self.hflip || self.noise_sigma > 0.0
    }

    /// The same transform without its random parts (the model-space geometry only).
    pub fn deterministic(&self) -> Self {
        Self {
            pad_to: self.pad_to,
            gray_to_rgb: self.gray_to_rgb,
            ..Self::default()
        }
    }

    /// Output `[C, H, W]` for inputs of shape `input`; checks that the transform applies.
    pub fn output_shape(&self, input: [usize; 3]) -> Result<[usize; 3]> {
        let [c, h, w] = input;
        let [ph, pw] = self.pad_to.unwrap_or([h, w]);
        if ph > MAX_SIDE || pw > MAX_SIDE {
            return Err(DataError::Invalid(format!(
                "transform.pad_to {:?} is over the limit of {MAX_SIDE} pixels a side",
                [ph, pw]
            )));
        }
        if ph < h || pw < w {
            return Err(DataError::Invalid(format!(
                "transform.pad_to {:?} is smaller than the images ({h}x{w})",
                [ph, pw]
            )));
        }
        if self.crop_pad >= ph || self.crop_pad >= pw {
            return Err(DataError::Invalid(format!(
                "transform.crop_pad {} must be smaller than the image size {ph}x{pw}",
                self.crop_pad
            )));
        }
        if !(self.noise_sigma >= 0.0 && self.noise_sigma.is_finite()) {
            return Err(DataError::Invalid(format!(
                "transform.noise_sigma {} must be a finite number >= 0",
                self.noise_sigma
            )));
        }
        let c = match (c, self.gray_to_rgb) {
            (1, true) => 3,
            (_, true) => {
                return Err(DataError::Invalid(format!(
                    "transform.gray_to_rgb needs 1-channel images, these have {c}"
                )));
            }
            (c, false) => c,
        };
        Ok([c, ph, pw])
    }

    /// Applies the transform to `src` (CHW of shape `input`, in [-1, 1]) into `out`
    /// (of the shape given by [`Transform::output_shape`], which must have succeeded).
    pub fn apply<R: Rng>(&self, src: &[f32], input: [usize; 3], rng: &mut R, out: &mut [f32]) {
        let [c_in, h, w] = input;
        let [ph, pw] = self.pad_to.unwrap_or([h, w]);
        let (top, left) = ((ph - h) / 2, (pw - w) / 2);
        let p = self.crop_pad as i64;
        let (oy, ox) = if p > 0 {
            let oy = rng.random_range(0..=2 * p) - p;
            let ox = rng.random_range(0..=2 * p) - p;
            (oy as isize, ox as isize)
        } else {
            (0, 0)
        };
        let flip = self.hflip && rng.random_bool(0.5);
        let c_out = out.len() / (ph * pw);
        let reflect = |i: isize, n: usize| -> usize {
            let n = n as isize;
            let r = if i < 0 {
                -i
            } else if i >= n {
                2 * (n - 1) - i
            } else {
                i
            };
            r as usize
        };
        // column map of the output row, shared by all rows and channels
        let cols: Vec<Option<usize>> = (0..pw)
            .map(|x| {
                let x = if flip { pw - 1 - x } else { x };
                let xp = reflect(x as isize + ox, pw);
                xp.checked_sub(left).filter(|&v| v < w)
            })
            .collect();
        for c in 0..c_out {
            let cs = if c_in == 1 { 0 } else { c };
            let plane = &src[cs * h * w..(cs + 1) * h * w];
            for y in 0..ph {
                let yp = reflect(y as isize + oy, ph);
                let row = yp.checked_sub(top).filter(|&v| v < h);
                let dst = &mut out[(c * ph + y) * pw..(c * ph + y + 1) * pw];
                match row {
                    Some(r) => {
                        let srow = &plane[r * w..(r + 1) * w];
                        for (d, col) in dst.iter_mut().zip(&cols) {
                            *d = col.map_or(-1.0, |x| srow[x]);
                        }
                    }
                    None => dst.fill(-1.0),
                }
            }
        }
        if self.noise_sigma > 0.0 {
            let n = Normal::new(0.0f32, self.noise_sigma).expect("sigma checked");
            for v in out.iter_mut() {
                *v += n.sample(rng);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;

    fn img(shape: [usize; 3], seed: u64) -> Vec<f32> {
        let mut r = rng_for(&[seed]);
        (0..shape.iter().product::<usize>())
            .map(|_| r.random_range(-1.0f32..1.0))
            .collect()
    }

    fn run(t: &Transform, src: &[f32], shape: [usize; 3], seed: u64) -> Vec<f32> {
        let o = t.output_shape(shape).unwrap();
        let mut out = vec![0.0; o.iter().product()];
        t.apply(src, shape, &mut rng_for(&[seed]), &mut out);
        out
    }

    #[test]
    fn table_matches_torchvision_formula() {
        let t = byte_to_unit_table();
        assert_eq!(t[0], -1.0);
        assert_eq!(t[255], 1.0);
        assert_eq!(t[128], ((128.0f32 / 255.0) - 0.5) / 0.5);
    }

    #[test]
    fn identity_pad_and_gray() {
        let s = [1, 28, 28];
        let src = img(s, 1);
        assert_eq!(run(&Transform::default(), &src, s, 0), src);
        let t = Transform {
            pad_to: Some([32, 32]),
            gray_to_rgb: true,
            ..Default::default()
        };
        assert_eq!(t.output_shape(s).unwrap(), [3, 32, 32]);
        let out = run(&t, &src, s, 0);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    let v = out[c * 1024 + y * 32 + x];
                    if (2..30).contains(&y) && (2..30).contains(&x) {
                        assert_eq!(v, src[(y - 2) * 28 + x - 2]);
                    } else {
                        assert_eq!(v, -1.0);
                    }
                }
            }
        }
    }

    #[test]
    fn crop_window_is_a_reflected_shift() {
        let s = [3, 32, 32];
        let src = img(s, 2);
        let t = Transform::augment(false);
        for seed in 0..20 {
            let out = run(&t, &src, s, seed);
            // find the shift: the output is src shifted by (dy, dx) with reflection
            let found = (-4..=4).flat_map(|dy| (-4..=4).map(move |dx| (dy, dx))).any(|(dy, dx)| {
                (0..3).all(|c| {
                    (0..32).all(|y| {
                        (0..32).all(|x| {
                            let r = |i: isize| if i < 0 { -i } else if i > 31 { 62 - i } else { i } as usize;
                            out[c * 1024 + y * 32 + x]
                                == src[c * 1024 + r(y as isize + dy) * 32 + r(x as isize + dx)]
                        })
                    })
                })
            });
            assert!(found, "seed {seed}");
            assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn flip_twice_is_identity() {
        let s = [3, 8, 8];
        let src = img(s, 3);
        let flip = |v: &[f32]| {
            let mut o = vec![0.0; v.len()];
            for c in 0..3 {
                for y in 0..8 {
                    for x in 0..8 {
                        o[c * 64 + y * 8 + x] = v[c * 64 + y * 8 + 7 - x];
                    }
                }
            }
            o
        };
        let t = Transform {
            hflip: true,
            ..Default::default()
        };
        let mut flipped = 0;
        for seed in 0..40 {
            let out = run(&t, &src, s, seed);
            if out != src {
                flipped += 1;
                assert_eq!(out, flip(&src));
                assert_eq!(flip(&out), src);
            }
        }
        assert!((8..=32).contains(&flipped), "{flipped} of 40 flipped");
    }

    #[test]
    fn noise_has_the_asked_sigma_and_bad_settings_fail() {
        let s = [1, 32, 32];
        let src = vec![0.0; 1024];
        let t = Transform {
            noise_sigma: 0.03,
            ..Default::default()
        };
        let out = run(&t, &src, s, 5);
        let sd = (out.iter().map(|v| v * v).sum::<f32>() / 1024.0).sqrt();
        assert!((sd - 0.03).abs() < 0.005, "{sd}");
        let bad = Transform {
            crop_pad: 40,
            ..Default::default()
        };
        assert!(
            bad.output_shape(s)
                .unwrap_err()
                .to_string()
                .contains("crop_pad")
        );
        let bad = Transform {
            gray_to_rgb: true,
            ..Default::default()
        };
        assert!(bad.output_shape([3, 32, 32]).is_err());
        let bad = Transform {
            noise_sigma: f32::NAN,
            ..Default::default()
        };
        assert!(bad.output_shape(s).is_err());
    }
}
