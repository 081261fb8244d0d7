//! FID and KID of two feature files (`.npy`, `N x D`, float32 or float64), as pytorch-fid's
//! and torch-fidelity's numbers for the same features.
//!
//! ```sh
//! cargo run --release -p jem-metrics --example fid_npy -- real.npy fake.npy
//! ```
//! Without arguments, two Gaussian feature sets are written to temporary files first.

use std::path::PathBuf;

use jem_metrics::fid::{GaussianStats, frechet_distance};
use jem_metrics::kid::{KidOptions, kid};
use jem_metrics::npy::{read_npy, write_npy};

fn demo_files() -> Result<(PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir();
    let (n, d) = (500, 16);
    // deterministic pseudo-random features; the second set shifted by 0.3
    let value = |i: usize| ((i as f64 * 12.9898).sin() * 43758.5453).fract() * 2.0 - 1.0;
    let real: Vec<f64> = (0..n * d).map(value).collect();
    let fake: Vec<f64> = (0..n * d).map(|i| value(i + 7_777) + 0.3).collect();
    let (a, b) = (dir.join("jem-fid-real.npy"), dir.join("jem-fid-fake.npy"));
    write_npy(&a, &[n, d], &real)?;
    write_npy(&b, &[n, d], &fake)?;
    Ok((a, b))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (a, b) = match &args[..] {
        [a, b] => (PathBuf::from(a), PathBuf::from(b)),
        [] => demo_files()?,
        _ => return Err("give two .npy files (real, generated) or none".into()),
    };
    let real = read_npy(&a)?;
    let fake = read_npy(&b)?;
    let (n1, d) = (real.shape[0], real.shape[1]);
    let n2 = fake.shape[0];
    let (real, fake) = (real.to_f64(), fake.to_f64());
    let fid = frechet_distance(
        &GaussianStats::from_features(&real, n1, d)?,
        &GaussianStats::from_features(&fake, n2, d)?,
    )?;
    println!("{}: {n1} x {d}; {}: {n2} x {d}", a.display(), b.display());
    println!("FID {:.6}", fid.fid);
    let opts = KidOptions {
        // torch-fidelity's 1000, or half the smaller set so that the subsets differ
        subset_size: (n1.min(n2) / 2).clamp(2, 1000),
        ..KidOptions::default()
    };
    let k = kid(&real, &fake, d, &opts)?;
    println!(
        "KID {:.6} +- {:.6} ({} subsets of {})",
        k.mean, k.std, opts.subsets, opts.subset_size
    );
    Ok(())
}
