//! Kernel Inception Distance (Bińkowski et al. 2018) in torch-fidelity's convention.
//!
//! KID is the unbiased estimate of the squared maximum mean discrepancy between two feature
//! sets under the polynomial kernel `k(x, y) = (gamma x.y + coef0)^degree` (by default
//! `gamma = 1 / d`, `coef0 = 1`, `degree = 3`), averaged over random subsets: `subsets`
//! draws of `subset_size` rows from each set, without replacement within a draw. The
//! subsets are drawn exactly as torch-fidelity draws them (`numpy.random.RandomState(seed)`,
//! `choice(n, size, replace=False)` for set 1 then set 2, per subset), so the same seed and
//! features give torch-fidelity's subsets, and its `kernel_inception_distance_mean` and
//! `_std` (population standard deviation over the subsets) to float64 rounding.
//!
//! torch-fidelity computes the kernels in the features' precision (float32 for Inception
//! features); this module always works in float64.
//!
//! ```
//! use jem_metrics::kid::{KidOptions, kid};
//! // 40 rows of 3 features each, a shifted copy as the second set
//! let a: Vec<f64> = (0..120).map(|i| ((i * 7) % 11) as f64 / 11.0).collect();
//! let b: Vec<f64> = a.iter().map(|v| v + 0.5).collect();
//! let opts = KidOptions { subsets: 5, subset_size: 20, ..KidOptions::default() };
//! let same = kid(&a, &a, 3, &opts)?;
//! let shifted = kid(&a, &b, 3, &opts)?;
//! assert!(shifted.mean > same.mean.abs() * 10.0);
//! # Ok::<(), jem_metrics::MetricError>(())
//! ```

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

use crate::{MetricError, Result, check_finite};

/// How KID is computed; the defaults are torch-fidelity's.
#[derive(Clone, Debug, PartialEq)]
pub struct KidOptions {
    /// Number of random subsets (torch-fidelity's `kid_subsets`, 100).
    pub subsets: usize,
    /// Rows per subset from each set (`kid_subset_size`, 1000).
    pub subset_size: usize,
    /// Polynomial degree (`kid_kernel_poly_degree`, 3).
    pub degree: i32,
    /// Kernel scale; `None` for `1 / d` (`kid_kernel_poly_gamma`).
    pub gamma: Option<f64>,
    /// Kernel offset (`kid_kernel_poly_coef0`, 1).
    pub coef0: f64,
    /// Seed of the subset draws (`rng_seed`, 2020).
    pub seed: u32,
}

impl Default for KidOptions {
    fn default() -> Self {
        Self {
            subsets: 100,
            subset_size: 1000,
            degree: 3,
            gamma: None,
            coef0: 1.0,
            seed: 2020,
        }
    }
}

/// KID over the subsets: their mean, population standard deviation and each value.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KidReport {
    /// Mean of the subsets' MMD² estimates (torch-fidelity's `kernel_inception_distance_mean`).
    pub mean: f64,
    /// Their standard deviation, `ddof = 0` (`kernel_inception_distance_std`).
    pub std: f64,
    /// One unbiased MMD² estimate per subset.
    pub per_subset: Vec<f64>,
}

/// KID between `features_1` and `features_2` (row-major, `d` features per row).
pub fn kid(
    features_1: &[f64],
    features_2: &[f64],
    d: usize,
    opts: &KidOptions,
) -> Result<KidReport> {
    let n1 = rows("features_1", features_1, d)?;
    let n2 = rows("features_2", features_2, d)?;
    let m = opts.subset_size;
    if m < 2 || opts.subsets == 0 {
        return Err(MetricError::Invalid(format!(
            "KID needs a subset size of at least 2 and at least one subset, got {m} and {}",
            opts.subsets
        )));
    }
    if n1 < m || n2 < m {
        return Err(MetricError::Invalid(format!(
            "KID subset size {m} is larger than a feature set ({n1} and {n2} rows): lower \
             the subset size or give more samples"
        )));
    }
    check_finite("features_1", features_1)?;
    check_finite("features_2", features_2)?;
    let gamma = opts.gamma.unwrap_or(1.0 / d as f64);
    let mut rng = NumpyRandomState::new(opts.seed);
    let mut per_subset = Vec::with_capacity(opts.subsets);
    for _ in 0..opts.subsets {
        let x = gather(features_1, d, &rng.permutation(n1)[..m]);
        let y = gather(features_2, d, &rng.permutation(n2)[..m]);
        per_subset.push(polynomial_mmd2(&x, &y, d, opts.degree, gamma, opts.coef0)?);
    }
    let s = per_subset.len() as f64;
    let mean = per_subset.iter().sum::<f64>() / s;
    let var = per_subset.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / s;
    Ok(KidReport {
        mean,
        std: var.sqrt(),
        per_subset,
    })
}

/// The unbiased MMD² estimate between the rows of `x` and `y` (both `m x d`, row-major)
/// under the kernel `(gamma x.y + coef0)^degree`: the off-diagonal means of `K_xx` and
/// `K_yy` minus twice the full mean of `K_xy` (torch-fidelity's `mmd2`, `unbiased`).
pub fn polynomial_mmd2(
    x: &[f64],
    y: &[f64],
    d: usize,
    degree: i32,
    gamma: f64,
    coef0: f64,
) -> Result<f64> {
    let m = rows("x", x, d)?;
    if rows("y", y, d)? != m || m < 2 {
        return Err(MetricError::Invalid(format!(
            "MMD² needs two sets of the same number (at least 2) of rows, got {m} and {}",
            y.len() / d.max(1)
        )));
    }
    let kernel_sum = |a: &[f64], b: &[f64], skip_diagonal: bool| {
        let a = MatRef::from_row_major_slice(a, m, d);
        let b = MatRef::from_row_major_slice(b, m, d);
        let mut k = Mat::<f64>::zeros(m, m);
        matmul(
            k.as_mut(),
            Accum::Replace,
            a,
            b.transpose(),
            1.0,
            Par::rayon(0),
        );
        let mut sum = 0.0;
        for j in 0..m {
            let col = k.col(j);
            for i in 0..m {
                if !(skip_diagonal && i == j) {
                    sum += (col[i] * gamma + coef0).powi(degree);
                }
            }
        }
        sum
    };
    let mf = m as f64;
    let xx = kernel_sum(x, x, true);
    let yy = kernel_sum(y, y, true);
    let xy = kernel_sum(x, y, false);
    Ok((xx + yy) / (mf * (mf - 1.0)) - 2.0 * xy / (mf * mf))
}

fn rows(name: &str, v: &[f64], d: usize) -> Result<usize> {
    if d == 0 || v.is_empty() || !v.len().is_multiple_of(d) {
        return Err(MetricError::Invalid(format!(
            "{name}: {} values are not rows of {d} features",
            v.len()
        )));
    }
    Ok(v.len() / d)
}

fn gather(features: &[f64], d: usize, idx: &[usize]) -> Vec<f64> {
    idx.iter()
        .flat_map(|&i| &features[i * d..(i + 1) * d])
        .copied()
        .collect()
}

/// NumPy's legacy `RandomState` (MT19937) as far as KID needs it: integer seeding and
/// `permutation`, bit for bit, so that subsets match torch-fidelity's.
///
/// ```
/// use jem_metrics::kid::NumpyRandomState;
/// // numpy.random.RandomState(2020).permutation(10)
/// assert_eq!(NumpyRandomState::new(2020).permutation(10), [2, 4, 9, 1, 5, 7, 6, 3, 8, 0]);
/// ```
#[derive(Clone)]
pub struct NumpyRandomState {
    mt: [u32; 624],
    index: usize,
}

impl NumpyRandomState {
    /// `numpy.random.RandomState(seed)` for an integer seed (MT19937's `init_genrand`).
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Self { mt, index: 624 }
    }

    /// The next 32 random bits (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.mt[i] = v;
        }
        self.index = 0;
    }

    /// A uniform integer in `0..=max` by masked rejection (NumPy's `random_interval`).
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = u64::MAX >> max.leading_zeros();
        loop {
            let v = if max <= u64::from(u32::MAX) {
                u64::from(self.next_u32()) & mask
            } else {
                ((u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())) & mask
            };
            if v <= max {
                return v;
            }
        }
    }

    /// `permutation(n)`: NumPy's legacy Fisher-Yates shuffle of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u64) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_output() {
        // the first outputs of init_genrand(5489), the reference implementation's default
        let mut r = NumpyRandomState::new(5489);
        assert_eq!(r.next_u32(), 3_499_211_612);
        assert_eq!(r.next_u32(), 581_869_302);
        let mut r = NumpyRandomState::new(5489);
        let v = (0..10_000).map(|_| r.next_u32()).last();
        assert_eq!(v, Some(4_123_659_995), "the 10000th output");
    }

    #[test]
    fn identical_sets_give_a_small_kid_and_bad_input_errors() {
        let a: Vec<f64> = (0..200).map(|i| (i as f64 * 0.37).sin()).collect();
        let opts = KidOptions {
            subsets: 3,
            subset_size: 50,
            ..KidOptions::default()
        };
        let r = kid(&a, &a, 2, &opts).unwrap();
        assert_eq!(r.per_subset.len(), 3);
        assert!(r.mean.abs() < 0.05, "{r:?}");
        assert!(kid(&a, &a[..20], 2, &opts).is_err(), "too few rows");
        assert!(
            kid(&a, &a, 3, &opts).is_err(),
            "200 values are not rows of 3"
        );
        let mut bad = a.clone();
        bad[7] = f64::NAN;
        let e = kid(&bad, &a, 2, &opts).unwrap_err().to_string();
        assert!(e.contains("features_1[7]"), "{e}");
    }
}
