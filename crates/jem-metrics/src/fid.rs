//! Fréchet distance between Gaussians fitted to feature sets (FID when the features are
//! Inception-v3 pool features).
//!
//! `FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`.
//!
//! pytorch-fid takes the trace term from `scipy.linalg.sqrtm(S1 @ S2)`, a Schur decomposition
//! of a non-symmetric matrix. Here it comes from the eigenvalues of a symmetric positive
//! semi-definite matrix similar to `S1 S2` (faer), which is faster and exact also for
//! singular covariances: the trace of the square root is the sum of their square roots.
//! - `S1` positive definite: `S1 = L L^T` (Cholesky) and the matrix is `L^T S2 L`;
//! - otherwise: `S1 = U diag(s) U^T` and the matrix is `diag(sqrt s) U^T S2 U diag(sqrt s)`.
//!
//! Eigenvalues within float64 rounding of zero (`d * eps * max |lambda|`) count as zero.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef, Par, Side};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{MetricError, Result, check_finite};

/// Mean and covariance of a feature set (`np.mean(axis=0)` and `np.cov(rowvar=False)`).
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianStats {
    /// Mean, `d` values.
    pub mu: Vec<f64>,
    /// Covariance, `d x d`, symmetric (one triangle is read).
    pub sigma: Vec<f64>,
    /// Number of samples the statistics come from (0 when unknown, e.g. loaded stats).
    pub n: usize,
}

impl GaussianStats {
    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.mu.len()
    }

    /// Statistics of `n` feature vectors of dimension `d` (`features` row-major, `n * d`
    /// values), with the unbiased covariance (divides by `n - 1`) as `np.cov`.
    ///
    /// ```
    /// use jem_metrics::fid::GaussianStats;
    /// let s = GaussianStats::from_features(&[0.0, 1.0, 2.0, 3.0], 2, 2)?;
    /// assert_eq!(s.mu, vec![1.0, 2.0]);
    /// assert_eq!(s.sigma, vec![2.0, 2.0, 2.0, 2.0]);
    /// # Ok::<(), jem_metrics::MetricError>(())
    /// ```
    pub fn from_features(features: &[f64], n: usize, d: usize) -> Result<Self> {
        Self::from_features_named("features", features, n, d)
    }

    /// As [`from_features`](Self::from_features), naming the input `name` in errors.
    pub fn from_features_named(name: &str, features: &[f64], n: usize, d: usize) -> Result<Self> {
        if d == 0 || features.len() != n * d {
            return Err(MetricError::Invalid(format!(
                "{name}: {} values do not make {n} rows of {d} features",
                features.len()
            )));
        }
        if n < 2 {
            return Err(MetricError::Invalid(format!(
                "{name}: a covariance needs at least 2 samples, got {n}"
            )));
        }
        let mut mu = vec![0.0f64; d];
        for row in features.chunks_exact(d) {
            for (m, v) in mu.iter_mut().zip(row) {
                *m += v;
            }
        }
        // a NaN or an infinity anywhere makes its column's sum non-finite
        if mu.iter().any(|m| !m.is_finite()) {
            check_finite(name, features)?;
            return Err(MetricError::Invalid(format!(
                "{name}: values too large, their column sums overflow float64"
            )));
        }
        mu.iter_mut().for_each(|m| *m /= n as f64);
        // the lower half of X^T X / (n - 1) for the centred samples X, accumulated over
        // chunks of rows; each chunk is centred into a reused column-major buffer (each
        // feature's values contiguous: the layout faer's rank-k update is fastest on)
        let mut cov = Mat::<f64>::zeros(d, d);
        let mut buf = vec![0.0f64; CHUNK_ROWS.min(n) * d];
        for (c, rows) in features.chunks(CHUNK_ROWS * d).enumerate() {
            let k = rows.len() / d;
            let chunk = &mut buf[..k * d];
            center_column_major(rows, &mu, k, d, chunk);
            let x = MatRef::from_column_major_slice(chunk, k, d);
            triangular::matmul(
                cov.as_mut(),
                BlockStructure::TriangularLower,
                if c == 0 { Accum::Replace } else { Accum::Add },
                x.transpose(),
                BlockStructure::Rectangular,
                x,
                BlockStructure::Rectangular,
                1.0 / (n as f64 - 1.0),
                Par::rayon(0),
            );
        }
        // exactly symmetric, as np.cov's result; in 32 x 32 tiles to stay in cache
        const TILE: usize = 32;
        let mut sigma = vec![0.0; d * d];
        for bj in (0..d).step_by(TILE) {
            for bi in (bj..d).step_by(TILE) {
                for j in bj..(bj + TILE).min(d) {
                    let col = cov.col(j);
                    for i in bi.max(j)..(bi + TILE).min(d) {
                        sigma[j * d + i] = col[i];
                        sigma[i * d + j] = col[i];
                    }
                }
            }
        }
        Ok(Self { mu, sigma, n })
    }

    /// Checks that the shapes agree and every value is finite; `name` labels the errors.
    pub fn validate(&self, name: &str) -> Result<()> {
        let d = self.mu.len();
        if d == 0 || self.sigma.len() != d * d {
            return Err(MetricError::Invalid(format!(
                "{name}: mu has {d} values, so sigma must have {d} x {d} = {} values, it has {}",
                d * d,
                self.sigma.len()
            )));
        }
        check_finite(&format!("{name} mu"), &self.mu)?;
        check_finite(&format!("{name} sigma"), &self.sigma)
    }
}

/// Rows per chunk of the covariance accumulation (a 2048-wide chunk is 32 MiB).
const CHUNK_ROWS: usize = 2048;

/// `rows` (row-major `k x d`) minus `mu`, written column-major into `out` (`k x d`), in
/// cache-sized tiles, features split over the rayon threads.
fn center_column_major(rows: &[f64], mu: &[f64], k: usize, d: usize, out: &mut [f64]) {
    const TILE: usize = 32;
    out.par_chunks_mut(TILE * k)
        .enumerate()
        .for_each(|(t, block)| {
            let j0 = t * TILE;
            let width = block.len() / k;
            for i0 in (0..k).step_by(TILE) {
                for i in i0..(i0 + TILE).min(k) {
                    let row = &rows[i * d + j0..i * d + j0 + width];
                    for (dj, (v, m)) in row.iter().zip(&mu[j0..j0 + width]).enumerate() {
                        block[dj * k + i] = v - m;
                    }
                }
            }
        });
}

/// How to compute the Fréchet distance.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FidOptions {
    /// Diagonal offset added to both covariances when the computation fails (pytorch-fid's
    /// `eps`, 1e-6), or always when `always_offset` is set.
    pub eps: f64,
    /// Add `eps` to both diagonals from the start (to reproduce a pytorch-fid value that
    /// took its fallback).
    pub always_offset: bool,
}

impl Default for FidOptions {
    fn default() -> Self {
        Self {
            eps: 1e-6,
            always_offset: false,
        }
    }
}

/// A Fréchet distance and how it was obtained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FidReport {
    /// The distance.
    pub fid: f64,
    /// `|mu1 - mu2|^2`.
    pub mean_term: f64,
    /// `tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`.
    pub covariance_term: f64,
    /// `tr((S1 S2)^(1/2))`.
    pub trace_sqrt_product: f64,
    /// Whether `eps` was added to the covariance diagonals.
    pub offset_applied: bool,
    /// What pytorch-fid would have warned about or raised (an imaginary component of the
    /// matrix square root, its eps fallback), as messages; empty when all went well.
    pub warnings: Vec<String>,
}

/// Fréchet distance between two Gaussians, as pytorch-fid's `calculate_frechet_distance`.
///
/// Two Gaussians with diagonal covariances `a` and `b` are `|mu1 - mu2|^2 +
/// sum (sqrt a_i - sqrt b_i)^2` apart:
/// ```
/// use jem_metrics::fid::{GaussianStats, frechet_distance};
/// let g1 = GaussianStats { mu: vec![0.0, 0.0], sigma: vec![4.0, 0.0, 0.0, 1.0], n: 0 };
/// let g2 = GaussianStats { mu: vec![1.0, 0.0], sigma: vec![1.0, 0.0, 0.0, 9.0], n: 0 };
/// let r = frechet_distance(&g1, &g2)?;
/// assert!((r.fid - (1.0 + 1.0 + 4.0)).abs() < 1e-12);
/// # Ok::<(), jem_metrics::MetricError>(())
/// ```
pub fn frechet_distance(a: &GaussianStats, b: &GaussianStats) -> Result<FidReport> {
    frechet_distance_with(a, b, &FidOptions::default())
}

/// [`frechet_distance`] with explicit [`FidOptions`].
pub fn frechet_distance_with(
    a: &GaussianStats,
    b: &GaussianStats,
    opts: &FidOptions,
) -> Result<FidReport> {
    a.validate("first statistics")?;
    b.validate("second statistics")?;
    if a.dim() != b.dim() {
        return Err(MetricError::Invalid(format!(
            "the statistics have different dimensions: {} and {}",
            a.dim(),
            b.dim()
        )));
    }
    if !(opts.eps.is_finite() && opts.eps >= 0.0) {
        return Err(MetricError::Invalid(format!(
            "eps must be finite and >= 0, got {}",
            opts.eps
        )));
    }
    let d = a.dim();
    let mean_term: f64 = a.mu.iter().zip(&b.mu).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let mut warnings = Vec::new();
    let mut offset = if opts.always_offset { opts.eps } else { 0.0 };
    loop {
        let attempt = trace_sqrt_product(&a.sigma, &b.sigma, d, offset);
        let retry = match &attempt {
            Ok((t, _)) => !t.is_finite(),
            Err(_) => true,
        };
        if retry && offset == 0.0 && opts.eps > 0.0 {
            warnings.push(format!(
                "fid calculation produces singular product; adding {} to diagonal of cov \
                 estimates",
                opts.eps
            ));
            offset = opts.eps;
            continue;
        }
        let (tr_sqrt, imag) = attempt?;
        if !tr_sqrt.is_finite() {
            return Err(MetricError::Invalid(
                "the trace of the covariance square root is not finite".into(),
            ));
        }
        if imag > 1e-3 {
            warnings.push(format!(
                "Imaginary component {imag:e}: the covariance product has negative eigenvalues \
                 (pytorch-fid raises here); their real part, 0, was used"
            ));
        }
        let covariance_term =
            trace(&a.sigma) + trace(&b.sigma) + 2.0 * d as f64 * offset - 2.0 * tr_sqrt;
        return Ok(FidReport {
            fid: mean_term + covariance_term,
            mean_term,
            covariance_term,
            trace_sqrt_product: tr_sqrt,
            offset_applied: offset > 0.0,
            warnings,
        });
    }
}

/// FID between two feature sets (`n1 x d` and `n2 x d`, row-major).
pub fn fid_from_features(
    features1: &[f64],
    n1: usize,
    features2: &[f64],
    n2: usize,
    d: usize,
) -> Result<FidReport> {
    let a = GaussianStats::from_features_named("first features", features1, n1, d)?;
    let b = GaussianStats::from_features_named("second features", features2, n2, d)?;
    frechet_distance(&a, &b)
}

/// `tr((S1 S2)^(1/2))` with `offset` on both diagonals, and the largest magnitude of an
/// imaginary eigenvalue of the square root (from numerically negative eigenvalues).
fn trace_sqrt_product(s1: &[f64], s2: &[f64], d: usize, offset: f64) -> Result<(f64, f64)> {
    // sigma is symmetric: reading it as column-major keeps the reads contiguous
    let with_offset = |s: &[f64]| {
        Mat::from_fn(d, d, |i, j| {
            s[j * d + i] + if i == j { offset } else { 0.0 }
        })
    };
    let m1 = with_offset(s1);
    let m2 = with_offset(s2);
    let eig = match m1.llt(Side::Lower) {
        // S1 = L L^T: the eigenvalues of S1 S2 are those of L^T S2 L
        Ok(llt) => {
            let l = llt.L();
            let mut t = Mat::<f64>::zeros(d, d);
            triangular::matmul(
                t.as_mut(),
                BlockStructure::Rectangular,
                Accum::Replace,
                m2.as_ref(),
                BlockStructure::Rectangular,
                l,
                BlockStructure::TriangularLower,
                1.0,
                Par::rayon(0),
            );
            let mut c = Mat::<f64>::zeros(d, d);
            triangular::matmul(
                c.as_mut(),
                BlockStructure::TriangularLower,
                Accum::Replace,
                l.transpose(),
                BlockStructure::TriangularUpper,
                t.as_ref(),
                BlockStructure::Rectangular,
                1.0,
                Par::rayon(0),
            );
            c.self_adjoint_eigenvalues(Side::Lower)
        }
        // S1 singular: S1 = U diag(s) U^T, and the eigenvalues of S1 S2 are those of
        // diag(sqrt s) U^T S2 U diag(sqrt s)
        Err(_) => eigen_route(&m1, &m2, d)?.self_adjoint_eigenvalues(Side::Lower),
    }
    .map_err(|e| MetricError::Invalid(format!("eigenvalues of the product failed: {e:?}")))?;
    let tol = noise_level(&eig, d);
    let mut tr = 0.0;
    let mut imag: f64 = 0.0;
    for l in eig {
        if l > tol {
            tr += l.sqrt();
        } else if l < -tol {
            imag = imag.max((-l).sqrt());
        }
    }
    Ok((tr, imag))
}

/// `diag(sqrt s) U^T S2 U diag(sqrt s)` for `S1 = U diag(s) U^T`.
fn eigen_route(m1: &Mat<f64>, m2: &Mat<f64>, d: usize) -> Result<Mat<f64>> {
    let evd = m1
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| MetricError::Invalid(format!("eigendecomposition of S1 failed: {e:?}")))?;
    let u = evd.U();
    let s: Vec<f64> = evd.S().column_vector().iter().copied().collect();
    // eigenvalues below the rounding level of the largest are zeros of a singular matrix:
    // their square roots (~1e-8 of the scale) would bias the trace
    let tol_s = noise_level(&s, d);
    let root: Vec<f64> = s
        .iter()
        .map(|&s| if s > tol_s { s.sqrt() } else { 0.0 })
        .collect();
    let mut t = Mat::<f64>::zeros(d, d);
    matmul(
        t.as_mut(),
        Accum::Replace,
        u.transpose(),
        m2.as_ref(),
        1.0,
        Par::rayon(0),
    );
    let mut c = Mat::<f64>::zeros(d, d);
    matmul(
        c.as_mut(),
        Accum::Replace,
        t.as_ref(),
        u,
        1.0,
        Par::rayon(0),
    );
    // symmetrise while scaling: only the lower half is read by the eigensolver
    Ok(Mat::from_fn(d, d, |i, j| {
        0.5 * (c[(i, j)] + c[(j, i)]) * root[i] * root[j]
    }))
}

/// The size below which an eigenvalue of a symmetric `d x d` matrix with eigenvalues
/// `eig` is indistinguishable from 0 in float64 (`d * eps * max |lambda|`, the rank
/// tolerance of `np.linalg.matrix_rank`).
fn noise_level(eig: &[f64], d: usize) -> f64 {
    let max = eig.iter().fold(0.0f64, |m, l| m.max(l.abs()));
    max * d as f64 * f64::EPSILON
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mu: Vec<f64>, sigma: Vec<f64>) -> GaussianStats {
        GaussianStats { mu, sigma, n: 0 }
    }

    #[test]
    fn identical_gaussians_are_zero_apart() {
        let g = stats(vec![1.0, 2.0], vec![2.0, 0.5, 0.5, 1.0]);
        let r = frechet_distance(&g, &g).unwrap();
        assert!(r.fid.abs() < 1e-12, "{r:?}");
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn commuting_covariances_match_the_closed_form() {
        // S1 = R diag(a) R^T, S2 = R diag(b) R^T with a rotation R: tr sqrt(S1 S2) = sum sqrt(a b)
        let (c, s) = (0.6f64, 0.8f64);
        let rot = |x: f64, y: f64| {
            vec![
                c * c * x + s * s * y,
                c * s * (x - y),
                c * s * (x - y),
                s * s * x + c * c * y,
            ]
        };
        let g1 = stats(vec![0.0, 0.0], rot(4.0, 0.25));
        let g2 = stats(vec![0.0, 3.0], rot(9.0, 1.0));
        let r = frechet_distance(&g1, &g2).unwrap();
        let expect = 9.0 + (2.0f64 - 3.0).powi(2) + (0.5f64 - 1.0).powi(2);
        assert!((r.fid - expect).abs() < 1e-12, "{} vs {expect}", r.fid);
    }

    #[test]
    fn singular_covariances_stay_exact() {
        // rank-1 covariances along the same axis: FID = (sqrt 4 - sqrt 1)^2
        let g1 = stats(
            vec![0.0; 3],
            vec![4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        );
        let g2 = stats(
            vec![0.0; 3],
            vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        );
        let r = frechet_distance(&g1, &g2).unwrap();
        assert!((r.fid - 1.0).abs() < 1e-12, "{r:?}");
        assert!(!r.offset_applied);
        // orthogonal rank-1 covariances: the product is 0
        let g3 = stats(
            vec![0.0; 3],
            vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        );
        let r = frechet_distance(&g1, &g3).unwrap();
        assert!((r.fid - 5.0).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn cholesky_and_eigen_routes_agree() {
        let d = 6;
        let f = |seed: f64| {
            let x: Vec<f64> = (0..40 * d).map(|i| (i as f64 * seed).sin()).collect();
            GaussianStats::from_features(&x, 40, d).unwrap().sigma
        };
        let (s1, s2) = (f(0.731), f(1.377));
        let (tr, _) = trace_sqrt_product(&s1, &s2, d, 0.0).unwrap();
        let m = |s: &[f64]| Mat::from_fn(d, d, |i, j| s[i * d + j]);
        let eig = eigen_route(&m(&s1), &m(&s2), d)
            .unwrap()
            .self_adjoint_eigenvalues(Side::Lower)
            .unwrap();
        let tr2: f64 = eig.iter().map(|l| l.max(0.0).sqrt()).sum();
        assert!((tr - tr2).abs() < 1e-12 * tr, "{tr} vs {tr2}");
    }

    #[test]
    fn an_indefinite_covariance_warns_of_an_imaginary_component() {
        // S2 has eigenvalue -0.25: sqrt(S1 S2) has an imaginary eigenvalue 0.5i, where
        // pytorch-fid raises; here its real part (0) is used and a warning says so
        let g1 = stats(vec![0.0, 0.0], vec![1.0, 0.0, 0.0, 1.0]);
        let g2 = stats(vec![0.0, 0.0], vec![1.0, 0.0, 0.0, -0.25]);
        let r = frechet_distance(&g1, &g2).unwrap();
        assert!((r.fid - 0.75).abs() < 1e-12, "{r:?}");
        assert_eq!(r.warnings.len(), 1);
        assert!(
            r.warnings[0].contains("Imaginary component 5e-1"),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn the_offset_adds_eps_to_both_diagonals() {
        let g1 = stats(vec![0.0], vec![4.0]);
        let g2 = stats(vec![0.0], vec![1.0]);
        let opts = FidOptions {
            eps: 0.5,
            always_offset: true,
        };
        let r = frechet_distance_with(&g1, &g2, &opts).unwrap();
        let expect = (4.5f64.sqrt() - 1.5f64.sqrt()).powi(2);
        assert!((r.fid - expect).abs() < 1e-12 && r.offset_applied);
    }

    #[test]
    fn stats_from_features_match_np_cov() {
        // np.cov([[1,2],[3,5],[0,-1]], rowvar=False)
        let f = [1.0, 2.0, 3.0, 5.0, 0.0, -1.0];
        let s = GaussianStats::from_features(&f, 3, 2).unwrap();
        let mu = [4.0 / 3.0, 2.0];
        assert!((s.mu[0] - mu[0]).abs() < 1e-15 && (s.mu[1] - mu[1]).abs() < 1e-15);
        let expect = [7.0 / 3.0, 4.5, 4.5, 9.0];
        for (a, b) in s.sigma.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12, "{:?}", s.sigma);
        }
    }

    #[test]
    fn rejects_bad_inputs_by_name() {
        let e = GaussianStats::from_features(&[1.0, 2.0], 1, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 2 samples"), "{e}");
        let e = GaussianStats::from_features(&[1.0, f64::NAN, 0.0, 0.0], 2, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("features[1]"), "{e}");
        let g1 = stats(vec![0.0], vec![1.0]);
        let g2 = stats(vec![0.0, 0.0], vec![1.0, 0.0, 0.0, 1.0]);
        assert!(frechet_distance(&g1, &g2).is_err());
        let bad = stats(vec![0.0, 0.0], vec![1.0, 0.0, 0.0]);
        let e = frechet_distance(&bad, &g2).unwrap_err().to_string();
        assert!(e.contains("first statistics"), "{e}");
    }
}
