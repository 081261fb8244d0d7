//! Energy landscapes along filter-normalized directions, on a tiny WRN-10-1.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use jem_eval::landscape::*;
use jem_models::{BnMode, WideResNet, WrnConfig};
use rand_distr::{Distribution, StandardNormal};

fn model(seed: u64) -> WideResNet {
    WideResNet::new(WrnConfig::reference(10, 1, 10), seed, &Device::Cpu).unwrap()
}

/// `n` Gaussian images `[n, 3, side, side]`, seeded.
fn images(n: usize, side: usize, seed: u64) -> Tensor {
    let mut rng = jem_data::rng::rng_for(&[seed]);
    let v: Vec<f32> = (0..n * 3 * side * side)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_vec(v, (n, 3, side, side), &Device::Cpu).unwrap()
}

/// Every parameter and buffer as raw f32 bits, by name.
fn bits(m: &WideResNet) -> BTreeMap<String, Vec<u32>> {
    m.store
        .snapshot()
        .unwrap()
        .into_iter()
        .map(|(k, t)| {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (k, v.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

fn dir(m: &WideResNet, seed: u64) -> Direction {
    Direction::filter_normalized(&m.store, seed, DirectionOptions::default()).unwrap()
}

/// The model's own mean energy, computed the ordinary way.
fn own_mean_energy(m: &WideResNet, x: &Tensor) -> f64 {
    let logits = m.logits(x, BnMode::Eval).unwrap();
    jem_models::jem::energy(&logits)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn the_origin_gives_the_models_own_mean_energy() {
    let m = model(1);
    let x = images(6, 32, 7);
    let own = own_mean_energy(&m, &x);
    let (d1, d2) = (dir(&m, 1), dir(&m, 2));
    let one = landscape_1d(&m, &x, &d1, &[-0.5, 0.0, 0.5]).unwrap();
    assert_eq!(one.samples, 6);
    assert!(
        (one.energies[1] - own).abs() <= 1e-6,
        "{} vs {own}",
        one.energies[1]
    );
    let two = landscape_2d(&m, &x, &d1, &d2, &[-0.5, 0.0], &[0.0, 0.5]).unwrap();
    assert!((two.energies[1][0] - own).abs() <= 1e-6);
    // beta = 0 reproduces the 1-D curve, alpha = 0 moves along d2 alone
    assert!((two.energies[0][0] - one.energies[0]).abs() <= 1e-6);
    let along_d2 = landscape_1d(&m, &x, &d2, &[0.5]).unwrap();
    assert!((two.energies[1][1] - along_d2.energies[0]).abs() <= 1e-6);
    // chunks of 4 and 2 images give the same mean
    let chunked = landscape_1d_with(
        &m,
        &x,
        &d1,
        &[-0.5, 0.0],
        &ScanOptions {
            chunk_size: 4,
            ..ScanOptions::default()
        },
    )
    .unwrap();
    assert!((chunked.energies[0] - one.energies[0]).abs() <= 1e-5);
    assert!((mean_energy(&m, &x, 2).unwrap() - own).abs() <= 1e-5);
}

#[test]
fn parameters_and_buffers_are_restored_bit_exactly_even_on_error() {
    let m = model(2);
    let x = images(4, 32, 8);
    let before = bits(&m);
    let all = DirectionOptions {
        include_biases_and_bn: true,
    };
    let d1 = Direction::filter_normalized(&m.store, 3, all).unwrap();
    let d2 = dir(&m, 4);
    landscape_1d(&m, &x, &d1, &[-0.7, 0.3, 1.0]).unwrap();
    assert!(bits(&m) == before, "parameters changed by a 1-D scan");
    landscape_2d(&m, &x, &d1, &d2, &[-0.3, 0.4], &[0.2, 0.9]).unwrap();
    assert!(bits(&m) == before, "parameters changed by a 2-D scan");
    // 16x16 images pass the argument checks but fail in the forward pass, after the
    // parameters were moved
    let err = landscape_1d(&m, &images(2, 16, 9), &d1, &[0.5]).unwrap_err();
    assert!(err.to_string().contains("16x16"), "{err}");
    assert!(bits(&m) == before, "parameters not restored after an error");
}

#[test]
fn directions_are_filter_normalized_and_leave_biases_and_bn_alone() {
    let m = model(3);
    let d = dir(&m, 5);
    let with_1d = Direction::filter_normalized(
        &m.store,
        5,
        DirectionOptions {
            include_biases_and_bn: true,
        },
    )
    .unwrap();
    let mut filters = 0;
    for (name, var) in m.store.params() {
        let w = var.as_tensor();
        if w.rank() <= 1 {
            assert!(d.get(name).is_none(), "`{name}` moves");
            let copy = with_1d.get(name).unwrap();
            let diff = (copy - w).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0, "`{name}`");
            continue;
        }
        let t = d.get(name).unwrap();
        assert_eq!(t.dims(), w.dims());
        // the 1-D option does not change the other tensors
        let same = with_1d.get(name).unwrap();
        assert_eq!(
            (t - same)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        for k in 0..w.dim(0).unwrap() {
            let norm = |x: &Tensor| {
                x.get(k)
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
                    .sqrt()
            };
            let (nd, nw) = (norm(t), norm(w));
            assert!(
                (nd - nw).abs() <= 1e-5 * nw.max(1e-6),
                "`{name}` filter {k}: {nd} vs {nw}"
            );
            filters += 1;
        }
    }
    assert!(filters > 100, "{filters} filters checked");
    // BatchNorm running statistics are buffers, never part of a direction
    for (name, _) in m.store.buffers() {
        assert!(
            d.get(name).is_none() && with_1d.get(name).is_none(),
            "`{name}`"
        );
    }
    assert_eq!(d.spec().unwrap().seed, 5);
    assert!(d.norm().unwrap() > 0.0);
}

#[test]
fn directions_are_deterministic_by_seed() {
    let m = model(4);
    let flat = |d: &Direction| -> Vec<u32> {
        d.iter()
            .flat_map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .map(f32::to_bits)
            .collect()
    };
    let a = flat(&dir(&m, 11));
    assert_eq!(a, flat(&dir(&m, 11)));
    assert_eq!(
        a,
        flat(&dir(&model(4), 11)),
        "same seed, same model, other instance"
    );
    assert_ne!(a, flat(&dir(&m, 12)));
}

#[test]
fn the_energy_changes_away_from_the_origin() {
    let m = model(5);
    let x = images(4, 32, 10);
    let alphas = linspace(-1.0, 1.0, 5);
    assert_eq!(alphas[2], 0.0);
    let l = landscape_1d(&m, &x, &dir(&m, 6), &alphas).unwrap();
    assert!(l.energies.iter().all(|e| e.is_finite()), "{:?}", l.energies);
    let lo = l.energies.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = l.energies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(hi - lo > 1e-3, "flat curve {:?}", l.energies);
    assert_ne!(l.energies[0], l.energies[4]);
}

#[test]
fn results_round_trip_through_json_with_non_finite_values_as_null() {
    let l = Landscape1d {
        alphas: vec![-1.0, 0.0, 1.0],
        energies: vec![-2.5, f64::NAN, f64::INFINITY],
        samples: 3,
        direction: Some(DirectionSpec {
            seed: 9,
            include_biases_and_bn: false,
        }),
    };
    let json = serde_json::to_string(&l).unwrap();
    assert!(json.contains("[-2.5,null,null]"), "{json}");
    let back: Landscape1d = serde_json::from_str(&json).unwrap();
    assert_eq!(back.energies[0], -2.5);
    assert!(back.energies[1].is_nan() && back.energies[2].is_nan());
    assert_eq!(back.direction, l.direction);
    let m = Landscape2d {
        alphas: vec![0.0, 1.0],
        betas: vec![0.0, 1.0],
        energies: vec![vec![1.0, f64::NAN], vec![2.0, 3.0]],
        samples: 1,
        direction1: None,
        direction2: None,
    };
    let back: Landscape2d = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back.energies[1], vec![2.0, 3.0]);
    assert!(back.energies[0][1].is_nan());
}

/// Width and height of a PNG file, checking its signature and IHDR chunk.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is no PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    (be(&b[16..20]), be(&b[20..24]))
}

#[test]
fn figures_are_written_as_pngs() {
    let (a, b) = (model(6), model(7));
    let x = images(3, 32, 11);
    let alphas = linspace(-1.0, 1.0, 5);
    let la = landscape_1d(&a, &x, &dir(&a, 1), &alphas).unwrap();
    let lb = landscape_1d(&b, &x, &dir(&b, 1), &alphas).unwrap();
    let grid = linspace(-0.5, 0.5, 3);
    let l2 = landscape_2d(&a, &x, &dir(&a, 1), &dir(&a, 2), &grid, &grid).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p1 = tmp.path().join("figs").join("landscape_1d.png");
    save_landscape_1d(&p1, &[("model a", &la), ("model b", &lb)]).unwrap();
    assert_eq!(png_size(&p1), (800, 500));
    let p2 = tmp.path().join("landscape_2d.png");
    save_landscape_2d(&p2, "model a", &l2).unwrap();
    let (w, h) = png_size(&p2);
    assert!(w >= 300 && h >= 200);
    let err = save_landscape_1d(&p1, &[]).unwrap_err().to_string();
    assert!(err.contains("curves"), "{err}");
    let mut thin = l2.clone();
    thin.betas.truncate(1);
    let err = save_landscape_2d(&p2, "m", &thin).unwrap_err().to_string();
    assert!(err.contains("betas"), "{err}");
}

#[test]
fn bad_arguments_are_named() {
    let m = model(8);
    let x = images(2, 32, 12);
    let d = dir(&m, 1);
    let msg = |r: jem_eval::Result<Landscape1d>| r.unwrap_err().to_string();
    assert!(msg(landscape_1d(&m, &x, &d, &[])).contains("alphas"));
    assert!(msg(landscape_1d(&m, &x, &d, &[0.5, 0.0])).contains("alphas"));
    assert!(msg(landscape_1d(&m, &x, &d, &[f64::NAN])).contains("alphas"));
    let e = msg(landscape_1d_with(
        &m,
        &x,
        &d,
        &[0.0],
        &ScanOptions {
            chunk_size: 0,
            ..ScanOptions::default()
        },
    ));
    assert!(e.contains("chunk_size"), "{e}");
    let flat = x.flatten_from(1).unwrap();
    assert!(msg(landscape_1d(&m, &flat, &d, &[0.0])).contains("batch"));
    // a direction of a wider model does not fit
    let wide = WideResNet::new(WrnConfig::reference(10, 2, 10), 1, &Device::Cpu).unwrap();
    let e = msg(landscape_1d(&m, &x, &dir(&wide, 1), &[0.0]));
    assert!(e.starts_with("direction:"), "{e}");
    let e = landscape_2d(&m, &x, &d, &dir(&wide, 1), &[0.0], &[0.0]).unwrap_err();
    assert!(e.to_string().contains("d2"), "{e}");
    let mut bad = BTreeMap::new();
    bad.insert(
        "f.bn1.running_mean".to_string(),
        Tensor::zeros(64, DType::F32, &Device::Cpu).unwrap(),
    );
    let e = Direction::from_tensors(&m.store, bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("running_mean"), "{e}");
}
