//! Saving and loading FID statistics: our safetensors files (`mu`, `sigma` as f64, the sample
//! count in the metadata) and pytorch-fid's / TTUR's `.npz` files (`mu`, `sigma`).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::fid::GaussianStats;
use crate::npy::{parse_npy, write_atomic};
use crate::{MetricError, Result};

fn invalid(path: &Path, msg: impl std::fmt::Display) -> MetricError {
    MetricError::Invalid(format!("{}: {msg}", path.display()))
}

/// Writes `stats` to a safetensors file atomically; `metadata` (e.g. the data set and the
/// network weights they come from) is stored with them.
pub fn save_stats(path: &Path, stats: &GaussianStats, metadata: &[(&str, &str)]) -> Result<()> {
    stats.validate("statistics")?;
    let d = stats.dim();
    let bytes = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (mu, sigma) = (bytes(&stats.mu), bytes(&stats.sigma));
    let tensors = vec![
        (
            "mu",
            TensorView::new(Dtype::F64, vec![d], &mu).map_err(|e| invalid(path, e))?,
        ),
        (
            "sigma",
            TensorView::new(Dtype::F64, vec![d, d], &sigma).map_err(|e| invalid(path, e))?,
        ),
    ];
    let mut meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    meta.insert("n".into(), stats.n.to_string());
    let out = safetensors::serialize(tensors, Some(meta)).map_err(|e| invalid(path, e))?;
    write_atomic(path, &out)
}

/// Loads statistics from a safetensors file written by [`save_stats`] (f32 or f64 tensors
/// `mu` and `sigma`) or a pytorch-fid `.npz` file (told apart by their first bytes).
pub fn load_stats(path: &Path) -> Result<GaussianStats> {
    let bytes = std::fs::read(path).map_err(|e| MetricError::read(path, e))?;
    let stats = if bytes.starts_with(b"PK") {
        load_npz(path, &bytes)?
    } else {
        load_safetensors(path, &bytes)?
    };
    stats.validate(&path.display().to_string())?;
    Ok(stats)
}

/// The metadata of a statistics file written by [`save_stats`].
pub fn stats_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|e| MetricError::read(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| invalid(path, format!("not a safetensors file: {e}")))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

fn load_safetensors(path: &Path, bytes: &[u8]) -> Result<GaussianStats> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| invalid(path, format!("neither .npz nor safetensors: {e}")))?;
    let get = |name: &str| -> Result<(Vec<usize>, Vec<f64>)> {
        let t = st
            .tensor(name)
            .map_err(|_| invalid(path, format!("no tensor '{name}'")))?;
        let data = match t.dtype() {
            Dtype::F64 => t
                .data()
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
            Dtype::F32 => t
                .data()
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect(),
            other => return Err(invalid(path, format!("'{name}' is {other:?}, not f32/f64"))),
        };
        Ok((t.shape().to_vec(), data))
    };
    let (mu_shape, mu) = get("mu")?;
    let (sigma_shape, sigma) = get("sigma")?;
    check_shapes(path, &mu_shape, &sigma_shape)?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| invalid(path, format!("bad safetensors header: {e}")))?;
    let n = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(GaussianStats { mu, sigma, n })
}

fn load_npz(path: &Path, bytes: &[u8]) -> Result<GaussianStats> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| invalid(path, format!("not a readable .npz (zip) file: {e}")))?;
    let mut get = |name: &str| -> Result<(Vec<usize>, Vec<f64>)> {
        let mut entry = zip
            .by_name(&format!("{name}.npy"))
            .map_err(|_| invalid(path, format!("no array '{name}' in the .npz")))?;
        // the entry's declared size, if deflate can produce it from the entry's bytes
        let limit = entry
            .size()
            .min(jem_io::max_inflated_len(entry.compressed_size() as usize));
        let mut buf = Vec::new();
        jem_io::read_to_end_bounded(&mut entry, limit, &mut buf)
            .map_err(|e| invalid(path, format!("cannot read '{name}': {e}")))?;
        let a = parse_npy(&buf).map_err(|e| invalid(path, format!("'{name}': {e}")))?;
        Ok((a.shape.clone(), a.to_f64()))
    };
    let (mu_shape, mu) = get("mu")?;
    let (sigma_shape, sigma) = get("sigma")?;
    check_shapes(path, &mu_shape, &sigma_shape)?;
    Ok(GaussianStats { mu, sigma, n: 0 })
}

fn check_shapes(path: &Path, mu: &[usize], sigma: &[usize]) -> Result<()> {
    match (mu, sigma) {
        ([d], [a, b]) if a == d && b == d => Ok(()),
        _ => Err(invalid(
            path,
            format!("mu {mu:?} and sigma {sigma:?} are not [d] and [d, d]"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::npy::npy_bytes;

    fn example() -> GaussianStats {
        GaussianStats {
            mu: vec![1.0, -2.0],
            sigma: vec![2.0, 0.5, 0.5, 1.0],
            n: 7,
        }
    }

    #[test]
    fn safetensors_round_trip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.safetensors");
        save_stats(&p, &example(), &[("dataset", "cifar10-train")]).unwrap();
        assert_eq!(load_stats(&p).unwrap(), example());
        assert_eq!(stats_metadata(&p).unwrap()["dataset"], "cifar10-train");
    }

    #[test]
    fn reads_pytorch_fid_npz() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.npz");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("mu.npy", opts).unwrap();
        z.write_all(&npy_bytes(&[2], &[1.0f64, -2.0]).unwrap())
            .unwrap();
        z.start_file("sigma.npy", opts).unwrap();
        z.write_all(&npy_bytes(&[2, 2], &[2.0f32, 0.5, 0.5, 1.0]).unwrap())
            .unwrap();
        z.finish().unwrap();
        let s = load_stats(&p).unwrap();
        assert_eq!((s.mu, s.sigma), (example().mu, example().sigma));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.safetensors");
        std::fs::write(&p, b"not stats").unwrap();
        let e = load_stats(&p).unwrap_err().to_string();
        assert!(e.contains("junk.safetensors"), "{e}");
        let bad = GaussianStats {
            mu: vec![1.0],
            sigma: vec![f64::NAN],
            n: 2,
        };
        assert!(save_stats(&p, &bad, &[]).is_err());
    }
}
