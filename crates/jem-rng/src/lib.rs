//! Seeded randomness that does not depend on candle's (unseedable) CPU generator.
//!
//! Every random choice of the workspace (data order, augmentation, buffer draws, SGLD noise,
//! weight initialization, dropout) comes from a [`ChaCha8Rng`] seeded by
//! [`derive_seed`] from the run seed and the position (epoch, batch, ...), so results do not
//! depend on thread count or timing, and a resumed run draws exactly what it would have drawn.

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

use rand::{Rng, SeedableRng};
pub use rand_chacha::ChaCha8Rng;

/// Mixes several integers into one 64-bit seed (SplitMix64 finalizer over the sequence).
///
/// ```
/// use jem_rng::derive_seed;
/// assert_eq!(derive_seed(&[1, 2]), derive_seed(&[1, 2]));
/// assert_ne!(derive_seed(&[1, 2]), derive_seed(&[2, 1]));
/// ```
pub fn derive_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        h = splitmix(h ^ splitmix(p.wrapping_add(0x632B_E59B_D9B4_E019)));
    }
    h
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A generator for the given seed parts.
///
/// ```
/// use rand::Rng;
/// let a: u32 = jem_rng::rng_for(&[7, 0]).random();
/// let b: u32 = jem_rng::rng_for(&[7, 0]).random();
/// assert_eq!(a, b);
/// ```
pub fn rng_for(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(parts))
}

/// A uniformly random permutation of `0..n` (Fisher-Yates) for `seed`.
///
/// ```
/// let p = jem_rng::permutation(5, 1);
/// let mut sorted = p.clone();
/// sorted.sort();
/// assert_eq!(sorted, [0, 1, 2, 3, 4]);
/// ```
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let p = permutation(1000, 7);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_eq!(p, permutation(1000, 7));
        assert_ne!(p, permutation(1000, 8));
    }
}
