//! FID of two 10,000 x 2048 feature sets: ours against pytorch-fid's route (`np.cov` +
//! `calculate_frechet_distance`, i.e. `scipy.linalg.sqrtm`) on the same files, in one run.
//! Two ratios: end to end from the features, and the distance alone from the statistics
//! (pytorch-fid's function against [`frechet_distance`]).
//!
//! `cargo bench -p jem-metrics --bench fid` (set `JEM_BENCH_PYTHON` to a Python with numpy,
//! scipy and pytorch-fid; without one only our timings are printed). `JEM_BENCH_FID_N` and
//! `JEM_BENCH_FID_D` change the sizes.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use jem_metrics::fid::{GaussianStats, frechet_distance};
use jem_metrics::npy::write_npy;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Features with the decaying spectrum of real pool features: a 64-d latent mixed into `d`
/// dimensions, plus small independent noise (full rank), made non-negative like ReLU outputs.
fn features(n: usize, d: usize, seed: u64, shift: f64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = 64;
    let mix: Vec<f64> = (0..k * d)
        .map(|_| rng.sample::<f64, _>(StandardNormal) / (k as f64).sqrt())
        .collect();
    let mut out = vec![0.0; n * d];
    for row in out.chunks_exact_mut(d) {
        let z: Vec<f64> = (0..k).map(|_| rng.sample(StandardNormal)).collect();
        for (j, v) in row.iter_mut().enumerate() {
            let mut s = shift;
            for (t, zt) in z.iter().enumerate() {
                s += zt * mix[t * d + j];
            }
            *v = (s + 0.1 * rng.sample::<f64, _>(StandardNormal)).abs();
        }
    }
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = |k: &str, default: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (n, d) = (env("JEM_BENCH_FID_N", 10_000), env("JEM_BENCH_FID_D", 2048));
    let a = features(n, d, 1, 0.0);
    let b = features(n, d, 2, 0.05);
    let dir = tempfile::tempdir().expect("temp dir");
    let (pa, pb) = (dir.path().join("a.npy"), dir.path().join("b.npy"));
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    write_npy(&pa, &[n, d], &f32s(&a)).expect("write a");
    write_npy(&pb, &[n, d], &f32s(&b)).expect("write b");
    // both sides start from the same float32 features
    let a: Vec<f64> = f32s(&a).into_iter().map(f64::from).collect();
    let b: Vec<f64> = f32s(&b).into_iter().map(f64::from).collect();

    let python = std::env::var("JEM_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fid_scipy.py");
    let rounds = env("JEM_BENCH_FID_ROUNDS", 3);
    // rounds alternate ours and scipy's, so that load on the machine hits both alike
    let mut ratios = Vec::new();
    let mut distance_ratios = Vec::new();
    for round in 1..=rounds {
        let t0 = Instant::now();
        let sa = GaussianStats::from_features(&a, n, d).expect("stats a");
        let sb = GaussianStats::from_features(&b, n, d).expect("stats b");
        let t1 = Instant::now();
        let r = frechet_distance(&sa, &sb).expect("fid");
        let t2 = Instant::now();
        let (stats_s, dist_s) = ((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64());
        let ours = stats_s + dist_s;
        println!(
            "round {round} ours:  FID {:.6}  stats {stats_s:.2} s + distance {dist_s:.2} s = \
             {ours:.2} s  ({n} x {d})",
            r.fid
        );
        match Command::new(&python)
            .arg(&script)
            .arg(&pa)
            .arg(&pb)
            .output()
        {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                print!("round {round} scipy: {text}");
                let total: Option<f64> = text
                    .split_whitespace()
                    .skip_while(|w| *w != "=")
                    .nth(1)
                    .and_then(|w| w.parse().ok());
                if let Some(t) = total {
                    ratios.push(t / ours);
                }
                // "distance X s": calculate_frechet_distance alone, from (mu, sigma)
                let distance: Option<f64> = text
                    .split_whitespace()
                    .skip_while(|w| *w != "distance")
                    .nth(1)
                    .and_then(|w| w.parse().ok());
                if let Some(t) = distance {
                    distance_ratios.push(t / dist_s);
                }
            }
            Ok(out) => {
                println!(
                    "scipy: {python} failed (needs numpy, scipy, pytorch-fid): {}",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                );
                break;
            }
            Err(e) => {
                println!("scipy: cannot run {python}: {e}");
                break;
            }
        }
    }
    report(
        "features -> FID (np.cov + calculate_frechet_distance)",
        &mut ratios,
    );
    report(
        "statistics -> FID (calculate_frechet_distance alone)",
        &mut distance_ratios,
    );
}

fn report(what: &str, ratios: &mut [f64]) {
    if ratios.is_empty() {
        return;
    }
    ratios.sort_by(f64::total_cmp);
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.1}")).collect();
    println!(
        "{what}: ours is {:.1}x faster than pytorch-fid's (median; rounds: {})",
        ratios[ratios.len() / 2],
        shown.join(", ")
    );
}
