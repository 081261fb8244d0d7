//! Derived data sets for out-of-distribution evaluation.

use rand::Rng;

use crate::error::{DataError, Result};
use crate::image_set::FloatImageSet;
use crate::rng::{derive_seed, permutation, rng_for};
use crate::transform::ImageSource;

/// The batch size of the reference's CIFAR10-interp loader (`eval_sadajem.py`, `OODAUC`).
pub const INTERP_BATCH: usize = 100;

/// The pairs of CIFAR10-interp for the images taken in `order` and cut into batches of
/// `batch`, as the reference's loop builds them (`eval_sadajem.py`, `OODAUC`):
///
/// ```text
/// for i, (x, _) in enumerate(loader):
///     if i > 0: score((x + last_batch) / 2)
///     last_batch = x
/// ```
///
/// Output `k` is the mean of images `pairs[k].0` (in the current batch) and `pairs[k].1`
/// (at the same position of the previous batch); the first batch gives no output, so there
/// are `order.len() - batch` pairs (none when `order.len() <= batch`).
///
/// A last partial batch (`order.len()` not a multiple of `batch`, where the reference's
/// tensors would not broadcast) pairs its positions with the first positions of the
/// previous batch, i.e. position `p` of `order` always pairs with position `p - batch`.
///
/// A `batch` of 0 is an error (there are no batches to pair).
///
/// ```
/// use jem_data::derived::interp_pairs;
/// let pairs = interp_pairs(&[4, 2, 0, 1, 3], 2).unwrap();
/// assert_eq!(pairs, vec![(0, 4), (1, 2), (3, 0)]);
/// ```
pub fn interp_pairs(order: &[usize], batch: usize) -> Result<Vec<(usize, usize)>> {
    if batch == 0 {
        return Err(DataError::Invalid(
            "interpolation pairs: the batch size must be at least 1".into(),
        ));
    }
    // `order[k + batch]` sits at the same position of the batch after `order[k]`'s.
    Ok(order
        .iter()
        .skip(batch)
        .zip(order)
        .map(|(&cur, &prev)| (cur, prev))
        .collect())
}

/// [`interp_pairs`] over a seeded shuffle of `0..n` (the reference's `shuffle=True`), the
/// same shuffle for the same `n` and `seed`.
pub fn seeded_interp_pairs(n: usize, batch: usize, seed: u64) -> Result<Vec<(usize, usize)>> {
    interp_pairs(&permutation(n, derive_seed(&[seed, 0x1a7e])), batch)
}

/// The images of CIFAR10-interp: output `k` is the pixel-wise mean of images `pairs[k].0`
/// and `pairs[k].1` of `source` in [-1, 1] space (pairs from [`interp_pairs`] or
/// [`seeded_interp_pairs`]; from 10,000 test images in batches of [`INTERP_BATCH`] this gives
/// 9,900). Labels are all 0 (the set is unlabelled). An index past `source` is an error.
pub fn interpolated(source: &dyn ImageSource, pairs: &[(usize, usize)]) -> Result<FloatImageSet> {
    let shape = source.shape();
    let d: usize = shape.iter().product();
    let n = source.len();
    if let Some(&(a, b)) = pairs.iter().find(|(a, b)| *a >= n || *b >= n) {
        return Err(DataError::Invalid(format!(
            "interpolation pair ({a}, {b}) is out of range for a set of {n} images"
        )));
    }
    let mut data = vec![0.0f32; pairs.len() * d];
    let (mut x, mut y) = (vec![0.0f32; d], vec![0.0f32; d]);
    // `max(1)`: chunks of 0 would panic; with `d == 0` there is no data to fill anyway
    for (out, &(a, b)) in data.chunks_exact_mut(d.max(1)).zip(pairs) {
        source.read_unit(a, &mut x);
        source.read_unit(b, &mut y);
        for ((o, x), y) in out.iter_mut().zip(&x).zip(&y) {
            *o = (x + y) / 2.0;
        }
    }
    Ok(FloatImageSet {
        data,
        labels: vec![0; pairs.len()],
        shape,
        num_classes: 1,
    })
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

    /// `n` images of shape 1x2x2, image `i` filled with `8 i`.
    fn ramp(n: usize) -> ImageSet {
        let images: Vec<u8> = (0..n * 4).map(|i| (i / 4 * 8) as u8).collect();
        ImageSet::new(images, vec![0; n], [1, 2, 2], 1, "t").unwrap()
    }

    #[test]
    fn pairs_same_position_of_previous_batch() {
        let order: Vec<usize> = (0..30).rev().collect();
        let pairs = interp_pairs(&order, 10).unwrap();
        assert_eq!(pairs.len(), 20);
        for (k, &(cur, prev)) in pairs.iter().enumerate() {
            let (batch, pos) = (k / 10 + 1, k % 10);
            assert_eq!(cur, order[batch * 10 + pos]);
            assert_eq!(prev, order[(batch - 1) * 10 + pos]);
        }
    }

    #[test]
    fn partial_last_batch_pairs_with_first_positions() {
        // batches [0..10], [10..20], [20..25]: the last 5 pair with positions 0..5 of batch 1
        let order: Vec<usize> = (0..25).collect();
        let pairs = interp_pairs(&order, 10).unwrap();
        assert_eq!(pairs.len(), 15);
        assert_eq!(
            &pairs[10..],
            &[(20, 10), (21, 11), (22, 12), (23, 13), (24, 14)]
        );
        // one batch or less: nothing to pair
        assert!(interp_pairs(&order[..10], 10).unwrap().is_empty());
        assert!(interp_pairs(&order[..3], 10).unwrap().is_empty());
    }

    #[test]
    fn zero_batch_and_bad_pairs_are_errors() {
        assert!(interp_pairs(&[0, 1, 2], 0).is_err());
        assert!(seeded_interp_pairs(3, 0, 1).is_err());
        assert!(interpolated(&ramp(3), &[(0, 3)]).is_err());
    }

    #[test]
    fn interpolated_means_the_pairs() {
        let n = 30;
        let set = ramp(n);
        let pairs = seeded_interp_pairs(n, 10, 3).unwrap();
        let out = interpolated(&set, &pairs).unwrap();
        assert_eq!(out.len(), 20);
        let unit = |i: usize| ((i as f32 * 8.0 / 255.0) - 0.5) / 0.5;
        for (k, &(a, b)) in pairs.iter().enumerate() {
            let want = (unit(a) + unit(b)) / 2.0;
            assert!(out.image(k).iter().all(|v| (v - want).abs() < 1e-6));
        }
    }

    #[test]
    fn seeded_pairs_are_deterministic() {
        let pairs = seeded_interp_pairs(30, 10, 3).unwrap();
        assert_eq!(
            pairs,
            interp_pairs(&permutation(30, derive_seed(&[3, 0x1a7e])), 10).unwrap()
        );
        // same seed, same pairs; another seed, another shuffle
        assert_eq!(pairs, seeded_interp_pairs(30, 10, 3).unwrap());
        assert_ne!(pairs, seeded_interp_pairs(30, 10, 4).unwrap());
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
