//! Per-class Gaussians of the data for the informative initialization of SGLD chains.
//!
//! For each class `k`: the mean `mu_k` and the biased covariance
//! `S_k = (X_k - mu_k)^T (X_k - mu_k) / N_k` of the images in model space (after the
//! deterministic part of the input transform, e.g. 28->32 padding), and the lower Cholesky
//! factor `L_k` of `S_k + jitter * I` (jitter 1e-4, as the reference's
//! `MultivariateNormal(mean, cov + 1e-4 I)`). A draw is `mu_k + L_k eps`, `eps ~ N(0, I)`.
//! Computed once and cached in a safetensors file named by data set and content hash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_distr::StandardNormal;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};

use crate::error::{DataError, IoContext, Result};
use crate::fsutil::write_atomic;
use crate::transform::{ImageSource, Transform};

const FORMAT: &str = "sadajem-class-gaussians-v1";

/// Per-class means and Cholesky factors.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassGaussians {
    /// `[C, H, W]` of one sample.
    pub shape: [usize; 3],
    /// Images per class.
    pub counts: Vec<usize>,
    /// Means, `[K, d]` row-major.
    pub means: Vec<f32>,
    /// Lower Cholesky factors of `S_k + jitter I`, `[K, d, d]` row-major.
    pub chol: Vec<f32>,
    /// Diagonal jitter added before factorization.
    pub jitter: f64,
}

/// Mean and biased covariance (`d x d`, row-major, f64) of the rows of `x` (`n x d`).
pub fn mean_and_covariance(x: &[f64], n: usize, d: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut mean = vec![0.0f64; d];
    for row in x.chunks_exact(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let centered: Vec<f64> = x
        .chunks_exact(d)
        .flat_map(|row| row.iter().zip(&mean).map(|(v, m)| v - m))
        .collect();
    let t = Tensor::from_vec(centered, (n, d), &Device::Cpu)?;
    let cov = (t.t()?.matmul(&t)? / n as f64)?;
    Ok((mean, cov.flatten_all()?.to_vec1::<f64>()?))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// In-place lower Cholesky factor of the symmetric positive-definite `a` (`d x d`,
/// row-major); the strict upper triangle is zeroed. Fails on a non-positive pivot.
pub fn cholesky_in_place(a: &mut [f64], d: usize) -> std::result::Result<(), String> {
    for j in 0..d {
        let (done, rest) = a.split_at_mut(j * d);
        let row_j = &mut rest[..d];
        for k in 0..j {
            let row_k = &done[k * d..k * d + k + 1];
            row_j[k] = (row_j[k] - dot(&row_j[..k], &row_k[..k])) / row_k[k];
        }
        let s = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if !(s > 0.0 && s.is_finite()) {
            return Err(format!(
                "matrix is not positive definite (pivot {j} is {s})"
            ));
        }
        row_j[j] = s.sqrt();
        row_j[j + 1..].fill(0.0);
    }
    Ok(())
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The most memory the per-class covariance factors may take (one `d x d` matrix per class,
/// `d` the image's values): 8 GiB, already 250 classes of CIFAR's 3x32x32.
pub const MAX_COVARIANCE_BYTES: u64 = 8 << 30;

fn check_covariance_size(shape: [usize; 3], classes: usize) -> Result<()> {
    let d = shape.iter().map(|&s| s as u64).product::<u64>();
    let bytes = d
        .checked_mul(d)
        .and_then(|v| v.checked_mul(classes as u64 * 4));
    match bytes {
        Some(b) if b <= MAX_COVARIANCE_BYTES => Ok(()),
        _ => Err(DataError::Invalid(format!(
            "class Gaussians of {shape:?} images ({d} values, {classes} classes) need {:.0} GiB \
             of covariance factors, over the limit of {} GiB: lower transform.pad_to (or \
             --pad-to) or use smaller images",
            (d as f64).powi(2) * classes as f64 * 4.0 / (1u64 << 30) as f64,
            MAX_COVARIANCE_BYTES >> 30
        ))),
    }
}

impl ClassGaussians {
    /// The reference's jitter.
    pub const DEFAULT_JITTER: f64 = 1e-4;

    /// Dimension `C * H * W` of one sample.
    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.counts.len()
    }

    /// Computes the statistics of `source` seen through `transform` (whose random parts are
    /// ignored). Every class needs at least one image.
    pub fn compute(source: &dyn ImageSource, transform: &Transform, jitter: f64) -> Result<Self> {
        let t = transform.deterministic();
        let shape = t.output_shape(source.shape())?;
        let d: usize = shape.iter().product();
        let k = source.num_classes();
        check_covariance_size(shape, k)?;
        let mut by_class = vec![Vec::new(); k];
        for i in 0..source.len() {
            by_class[source.label(i) as usize].push(i);
        }
        let mut rng = crate::rng::rng_for(&[0]);
        let (mut src, mut out) = (
            vec![0.0f32; source.shape().iter().product()],
            vec![0.0f32; d],
        );
        let mut means = Vec::with_capacity(k * d);
        let mut chol = Vec::with_capacity(k * d * d);
        for (c, idx) in by_class.iter().enumerate() {
            if idx.is_empty() {
                return Err(DataError::Invalid(format!(
                    "class {c} has no image: cannot fit its Gaussian"
                )));
            }
            let mut x = Vec::with_capacity(idx.len() * d);
            for &i in idx {
                source.read_unit(i, &mut src);
                t.apply(&src, source.shape(), &mut rng, &mut out);
                x.extend(out.iter().map(|&v| v as f64));
            }
            let (mean, mut cov) = mean_and_covariance(&x, idx.len(), d)?;
            for i in 0..d {
                cov[i * d + i] += jitter;
            }
            cholesky_in_place(&mut cov, d)
                .map_err(|m| DataError::Invalid(format!("class {c} covariance: {m}")))?;
            means.extend(mean.iter().map(|&v| v as f32));
            chol.extend(cov.iter().map(|&v| v as f32));
        }
        Ok(Self {
            shape,
            counts: by_class.iter().map(Vec::len).collect(),
            means,
            chol,
            jitter,
        })
    }

    /// A hash of what the statistics depend on: the model-space data, labels, transform
    /// and jitter.
    pub fn content_hash(source: &dyn ImageSource, transform: &Transform, jitter: f64) -> String {
        let t = transform.deterministic();
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&t).unwrap_or_default());
        h.update(jitter.to_le_bytes());
        let mut buf = vec![0.0f32; source.shape().iter().product()];
        for i in 0..source.len() {
            source.read_unit(i, &mut buf);
            h.update(f32_bytes(&buf));
            h.update(source.label(i).to_le_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Loads the cached statistics for `key` (e.g. `fashion-mnist-train`) from `cache_dir`,
    /// or computes and caches them (also when the cache file is unreadable). Returns them
    /// with the cache file's path.
    pub fn load_or_compute(
        cache_dir: &Path,
        key: &str,
        source: &dyn ImageSource,
        transform: &Transform,
        jitter: f64,
    ) -> Result<(Self, PathBuf)> {
        let hash = Self::content_hash(source, transform, jitter);
        let path = cache_dir.join(format!("class-gaussians-{key}-{}.safetensors", &hash[..16]));
        if path.exists() {
            match Self::load(&path) {
                Ok(stats) => return Ok((stats, path)),
                // a cache is derived data: an unreadable one is rebuilt, not fatal
                Err(e) => eprintln!("warning: ignoring the unreadable cache ({e}); recomputing"),
            }
        }
        let stats = Self::compute(source, transform, jitter)?;
        stats.save(&path)?;
        Ok((stats, path))
    }

    /// Saves to a safetensors file, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let (k, d) = (self.num_classes(), self.dim());
        let counts: Vec<u8> = self
            .counts
            .iter()
            .flat_map(|&c| (c as i64).to_le_bytes())
            .collect();
        let (mb, cb) = (f32_bytes(&self.means), f32_bytes(&self.chol));
        let view = |dt, shape: Vec<usize>, data| {
            TensorView::new(dt, shape, data).map_err(|e| DataError::Invalid(e.to_string()))
        };
        let tensors = vec![
            ("chol", view(Dtype::F32, vec![k, d, d], &cb[..])?),
            ("counts", view(Dtype::I64, vec![k], &counts[..])?),
            ("means", view(Dtype::F32, vec![k, d], &mb[..])?),
        ];
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            (
                "shape".to_string(),
                serde_json::to_string(&self.shape).unwrap_or_default(),
            ),
            ("jitter".to_string(), self.jitter.to_string()),
        ]);
        let bytes = safetensors::serialize(tensors, Some(meta))
            .map_err(|e| DataError::Invalid(format!("{}: {e}", path.display())))?;
        write_atomic(path, &bytes)
    }

    /// Loads statistics saved by [`ClassGaussians::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).at(path)?;
        let bad = |m: String| DataError::format(path, m);
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!(
                "not a class-statistics file (format is not {FORMAT})"
            )));
        }
        let shape: [usize; 3] = meta
            .get("shape")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| bad("bad `shape` metadata".into()))?;
        let jitter: f64 = meta
            .get("jitter")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad `jitter` metadata".into()))?;
        let get = |name: &str, dt: Dtype| {
            let t = st
                .tensor(name)
                .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
            if t.dtype() != dt {
                return Err(bad(format!("tensor `{name}` has dtype {:?}", t.dtype())));
            }
            Ok((t.shape().to_vec(), t.data().to_vec()))
        };
        let (cs, cb) = get("counts", Dtype::I64)?;
        let (ms, mb) = get("means", Dtype::F32)?;
        let (ls, lb) = get("chol", Dtype::F32)?;
        let d = jem_io::checked_product(&shape)
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        let k = cs.first().copied().unwrap_or(0);
        if ms != [k, d] || ls != [k, d, d] {
            return Err(bad(format!(
                "inconsistent shapes {cs:?} {ms:?} {ls:?} for samples of {shape:?}"
            )));
        }
        Ok(Self {
            shape,
            counts: cb
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as usize)
                .collect(),
            means: bytes_f32(&mb),
            chol: bytes_f32(&lb),
            jitter,
        })
    }

    /// Draws one sample of class `class` into `out` (length `d`), unclamped.
    pub fn sample_into<R: Rng>(&self, class: usize, rng: &mut R, out: &mut [f32]) {
        let d = self.dim();
        let eps: Vec<f32> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
        let l = &self.chol[class * d * d..(class + 1) * d * d];
        let mu = &self.means[class * d..(class + 1) * d];
        for i in 0..d {
            let row = &l[i * d..i * d + i + 1];
            out[i] = mu[i] + row.iter().zip(&eps).map(|(a, b)| a * b).sum::<f32>();
        }
    }

    /// The means `[K, d]` and factors `[K, d, d]` as tensors on `device`.
    pub fn to_tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let (k, d) = (self.num_classes(), self.dim());
        Ok((
            Tensor::from_slice(&self.means, (k, d), device)?,
            Tensor::from_slice(&self.chol, (k, d, d), device)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_set::ImageSet;

    #[test]
    fn cholesky_reconstructs() {
        let d = 13;
        let mut r = crate::rng::rng_for(&[4]);
        let b: Vec<f64> = (0..d * d).map(|_| r.random_range(-1.0..1.0)).collect();
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d).map(|k| b[i * d + k] * b[j * d + k]).sum::<f64>()
                    + if i == j { 0.5 } else { 0.0 };
            }
        }
        let mut l = a.clone();
        cholesky_in_place(&mut l, d).unwrap();
        for i in 0..d {
            for j in 0..d {
                let v: f64 = (0..d).map(|k| l[i * d + k] * l[j * d + k]).sum();
                assert!((v - a[i * d + j]).abs() < 1e-12);
            }
        }
        let mut bad = vec![1.0, 2.0, 2.0, 1.0];
        assert!(cholesky_in_place(&mut bad, 2).is_err());
    }

    fn toy() -> ImageSet {
        let mut r = crate::rng::rng_for(&[9]);
        let n = 60;
        let images = (0..n * 6).map(|_| r.random_range(0..=255u8)).collect();
        ImageSet::new(
            images,
            (0..n as u32).map(|i| i % 3).collect(),
            [1, 2, 3],
            3,
            "toy",
        )
        .unwrap()
    }

    #[test]
    fn stats_match_a_direct_computation() {
        let set = toy();
        let t = Transform::default();
        let g = ClassGaussians::compute(&set, &t, 1e-4).unwrap();
        assert_eq!(g.counts, vec![20, 20, 20]);
        let d = 6;
        let unit = crate::transform::byte_to_unit_table();
        for c in 0..3 {
            let rows: Vec<Vec<f64>> = (0..set.len())
                .filter(|&i| set.labels[i] == c as u32)
                .map(|i| {
                    set.image(i)
                        .iter()
                        .map(|&b| unit[b as usize] as f64)
                        .collect()
                })
                .collect();
            let n = rows.len() as f64;
            let mu: Vec<f64> = (0..d)
                .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
                .collect();
            for (got, want) in g.means[c * d..(c + 1) * d].iter().zip(&mu) {
                assert!((*got as f64 - want).abs() < 1e-6);
            }
            let l = &g.chol[c * d * d..(c + 1) * d * d];
            for i in 0..d {
                for j in 0..d {
                    let cov = rows
                        .iter()
                        .map(|r| (r[i] - mu[i]) * (r[j] - mu[j]))
                        .sum::<f64>()
                        / n
                        + if i == j { 1e-4 } else { 0.0 };
                    let llt: f64 = (0..d)
                        .map(|k| l[i * d + k] as f64 * l[j * d + k] as f64)
                        .sum();
                    assert!(
                        (llt - cov).abs() < 1e-5,
                        "class {c} ({i},{j}): {llt} vs {cov}"
                    );
                }
            }
        }
    }

    #[test]
    fn cache_roundtrip_and_samples() {
        let dir = tempfile::tempdir().unwrap();
        let set = toy();
        let t = Transform::default();
        let (g, path) = ClassGaussians::load_or_compute(dir.path(), "toy", &set, &t, 1e-4).unwrap();
        assert!(path.exists());
        let (g2, path2) =
            ClassGaussians::load_or_compute(dir.path(), "toy", &set, &t, 1e-4).unwrap();
        assert_eq!((g, &path), (g2.clone(), &path2));
        // another transform, another file
        let t2 = Transform {
            pad_to: Some([4, 4]),
            ..Default::default()
        };
        let (g3, p3) = ClassGaussians::load_or_compute(dir.path(), "toy", &set, &t2, 1e-4).unwrap();
        assert_ne!(p3, path);
        assert_eq!(g3.shape, [1, 4, 4]);
        // samples have the class mean
        let mut r = crate::rng::rng_for(&[1]);
        let mut acc = vec![0.0f64; 6];
        let mut out = vec![0.0f32; 6];
        for _ in 0..4000 {
            g2.sample_into(1, &mut r, &mut out);
            acc.iter_mut()
                .zip(&out)
                .for_each(|(a, o)| *a += *o as f64 / 4000.0);
        }
        for j in 0..6 {
            assert!((acc[j] - g2.means[6 + j] as f64).abs() < 0.05, "{acc:?}");
        }
        std::fs::write(&path, b"garbage").unwrap();
        assert!(
            ClassGaussians::load(&path)
                .unwrap_err()
                .to_string()
                .contains("safetensors")
        );
    }
}
