//! Derived data sets for out-of-distribution evaluation.

use rand::Rng;

use crate::image_set::FloatImageSet;
use crate::rng::{derive_seed, permutation, rng_for};
use crate::transform::ImageSource;

/// CIFAR10-interp as the reference builds it (`eval_sadajem.py`, `OODAUC`): the test set is
/// shuffled (with `seed`) and cut into batches of `batch` (100 in the reference); every
/// batch after the first is averaged, image by image, with the batch before it,
/// `(x_i + x_{i-1}) / 2` in [-1, 1] space. From 10,000 test images this gives 9,900.
/// Labels are all 0 (the set is unlabelled).
pub fn interpolated(source: &dyn ImageSource, batch: usize, seed: u64) -> FloatImageSet {
    let shape = source.shape();
    let d: usize = shape.iter().product();
    let order = permutation(source.len(), derive_seed(&[seed, 0x1a7e]));
    let n = order.len().saturating_sub(batch.max(1));
    let mut data = vec![0.0f32; n * d];
    let (mut a, mut b) = (vec![0.0f32; d], vec![0.0f32; d]);
    for k in 0..n {
        source.read_unit(order[k + batch], &mut a);
        source.read_unit(order[k], &mut b);
        for ((o, x), y) in data[k * d..(k + 1) * d].iter_mut().zip(&a).zip(&b) {
            *o = (x + y) / 2.0;
        }
    }
    FloatImageSet {
        data,
        labels: vec![0; n],
        shape,
        num_classes: 1,
    }
}

/// `n` images of independent uniform noise in [-1, 1].
pub fn uniform_noise(n: usize, shape: [usize; 3], seed: u64) -> FloatImageSet {
    let d: usize = shape.iter().product();
    let mut rng = rng_for(&[seed, 0x0a0e]);
    FloatImageSet {
        data: (0..n * d)
            .map(|_| rng.random_range(-1.0f32..=1.0))
            .collect(),
        labels: vec![0; n],
        shape,
        num_classes: 1,
    }
}

/// `n` constant images: each image has one value per channel, uniform in [-1, 1].
pub fn constant_images(n: usize, shape: [usize; 3], seed: u64) -> FloatImageSet {
    let plane = shape[1] * shape[2];
    let mut rng = rng_for(&[seed, 0xc0c0]);
    let mut data = Vec::with_capacity(n * shape[0] * plane);
    for _ in 0..n * shape[0] {
        let v = rng.random_range(-1.0f32..=1.0);
        data.extend(std::iter::repeat_n(v, plane));
    }
    FloatImageSet {
        data,
        labels: vec![0; n],
        shape,
        num_classes: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_set::ImageSet;

    #[test]
    fn interp_pairs_images_one_batch_apart() {
        let n = 30;
        let images: Vec<u8> = (0..n * 4).map(|i| (i / 4 * 8) as u8).collect();
        let set = ImageSet::new(images, vec![0; n], [1, 2, 2], 1, "t").unwrap();
        let out = interpolated(&set, 10, 3);
        assert_eq!(out.len(), 20);
        let order = permutation(n, derive_seed(&[3, 0x1a7e]));
        let unit = |i: usize| ((i as f32 * 8.0 / 255.0) - 0.5) / 0.5;
        for k in 0..20 {
            let want = (unit(order[k + 10]) + unit(order[k])) / 2.0;
            assert!(out.image(k).iter().all(|v| (v - want).abs() < 1e-6));
        }
        // same seed, same set; another seed, another shuffle
        assert_eq!(out, interpolated(&set, 10, 3));
        assert_ne!(out, interpolated(&set, 10, 4));
    }

    #[test]
    fn noise_and_constants_in_range() {
        let u = uniform_noise(5, [3, 4, 4], 1);
        assert_eq!(u.data.len(), 5 * 48);
        assert!(u.data.iter().all(|v| (-1.0..=1.0).contains(v)));
        let c = constant_images(5, [3, 4, 4], 1);
        for i in 0..5 {
            for ch in 0..3 {
                let p = &c.image(i)[ch * 16..(ch + 1) * 16];
                assert!(p.iter().all(|v| *v == p[0]));
            }
        }
        assert_eq!(c, constant_images(5, [3, 4, 4], 1));
    }
}
