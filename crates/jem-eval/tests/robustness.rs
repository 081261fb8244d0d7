//! PGD against linear models, where the worst case is known in closed form, plus the
//! invariants of the attack, the accounting, determinism and the figure.

use candle_core::{DType, Device, Tensor};
use jem_eval::robustness::*;
use jem_models::BnMode;
use jem_models::jem::Classifier;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// `logits = x_flat W + b`.
struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Classifier for Linear {
    fn logits(&self, x: &Tensor, _mode: BnMode) -> jem_models::Result<Tensor> {
        Ok(x.flatten_from(1)?.matmul(&self.w)?.broadcast_add(&self.b)?)
    }
}

const SHAPE: [usize; 3] = [3, 2, 2];
const D: usize = 12;

fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n)
        .map(|_| lo + (hi - lo) * rng.random::<f64>())
        .collect()
}

/// A random linear model with `classes` classes (f64), its weights as rows `w[c][d]`.
fn linear(classes: usize, seed: u64) -> (Linear, Vec<Vec<f64>>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let wt: Vec<Vec<f64>> = (0..classes)
        .map(|_| uniform(&mut rng, D, -1.0, 1.0))
        .collect();
    let b = uniform(&mut rng, classes, -0.3, 0.3);
    let flat: Vec<f64> = (0..D)
        .flat_map(|d| wt.iter().map(move |row| row[d]))
        .collect();
    let model = Linear {
        w: Tensor::from_vec(flat, (D, classes), &Device::Cpu).unwrap(),
        b: Tensor::from_vec(b.clone(), classes, &Device::Cpu).unwrap(),
    };
    (model, wt, b)
}

/// `n` images with entries in `[lo, hi]` and random labels below `classes`.
fn data(n: usize, classes: usize, lo: f64, hi: f64, seed: u64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = uniform(&mut rng, n * D, lo, hi);
    let y: Vec<u32> = (0..n)
        .map(|_| rng.random_range(0..classes as u32))
        .collect();
    (
        Tensor::from_vec(x, (n, SHAPE[0], SHAPE[1], SHAPE[2]), &Device::Cpu).unwrap(),
        Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
    )
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.flatten_from(1).unwrap().to_vec2::<f64>().unwrap()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Binary margins `(w_y - w_j) x + b_y - b_j` and the difference vectors `w_y - w_j`.
fn margins(x: &[Vec<f64>], y: &[u32], w: &[Vec<f64>], b: &[f64]) -> Vec<(f64, Vec<f64>)> {
    x.iter()
        .zip(y)
        .map(|(xi, &yi)| {
            let (a, o) = (yi as usize, 1 - yi as usize);
            let dw: Vec<f64> = w[a].iter().zip(&w[o]).map(|(p, q)| p - q).collect();
            (dot(&dw, xi) + b[a] - b[o], dw)
        })
        .collect()
}

fn config(
    norm: AttackNorm,
    eps: f64,
    step_size: f64,
    steps: usize,
    random_start: bool,
) -> PgdConfig {
    PgdConfig {
        norm,
        eps,
        step_size,
        steps,
        random_start,
        pixel_scale: 2.0,
        clip: None,
        bpda_eot: None,
    }
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// PGD reaches the closed-form minimum margin `m - eps * ||w_y - w_j||_q` of a binary
/// linear model (q = 1 for L-inf, 2 for L2), and robust accuracy counts exactly the images
/// whose clean margin exceeds the bound.
fn closed_form_case(norm: AttackNorm, random_start: bool, step_size: f64, steps: usize) {
    let (model, w, b) = linear(2, 11);
    let (x, y) = data(200, 2, -0.5, 0.5, 12);
    let xs = rows(&x);
    let ys = y.to_vec1::<u32>().unwrap();
    let m = margins(&xs, &ys, &w, &b);
    let bound = |dw: &[f64], eps_model: f64| match norm {
        AttackNorm::Linf => eps_model * dw.iter().map(|v| v.abs()).sum::<f64>(),
        AttackNorm::L2 => eps_model * dot(dw, dw).sqrt(),
    };

    let cfg = config(norm, 0.05, step_size, steps, random_start);
    let adv = pgd_attack(&model, &x, &y, &cfg, &mut rng(5)).unwrap();
    let advs = rows(&adv);
    for (i, (mi, dw)) in m.iter().enumerate() {
        let reached = dot(dw, &advs[i]) + (mi - dot(dw, &xs[i]));
        let optimum = mi - bound(dw, 0.1);
        assert!(
            (reached - optimum).abs() < 1e-9,
            "{norm} image {i}: margin {reached}, closed form {optimum}"
        );
    }

    let eps_list = [0.0, 0.01, 0.03, 0.05, 0.1];
    let r = robust_accuracy(&model, [(x.clone(), y.clone())], &cfg, &eps_list, 3).unwrap();
    for p in &r.points {
        let expected = m
            .iter()
            .filter(|(mi, dw)| mi - bound(dw, 2.0 * p.eps) > 0.0)
            .count();
        let clean = m.iter().filter(|(mi, _)| *mi > 0.0).count();
        assert_eq!(p.n, 200);
        assert_eq!(p.clean_correct, clean, "{norm} eps {}", p.eps);
        assert_eq!(p.last_iterate_correct, expected, "{norm} eps {}", p.eps);
        assert_eq!(p.robust_correct, expected, "{norm} eps {}", p.eps);
        assert!((p.robust_accuracy - expected as f64 / 200.0).abs() < 1e-12);
    }
    // the radii actually separate the images
    assert!(r.points[0].robust_correct > r.points[4].robust_correct);
}

#[test]
fn linf_reaches_the_closed_form_margin() {
    closed_form_case(AttackNorm::Linf, false, 0.02, 10);
    closed_form_case(AttackNorm::Linf, true, 0.02, 20);
}

#[test]
fn l2_reaches_the_closed_form_margin() {
    closed_form_case(AttackNorm::L2, false, 0.06, 5);
    // from a random start the projected steps converge geometrically to the optimum
    closed_form_case(AttackNorm::L2, true, 0.1, 80);
}

#[test]
fn iterates_stay_in_the_ball_and_the_box() {
    let (model, _, _) = linear(4, 21);
    let (x, y) = data(64, 4, -1.0, 1.0, 22);
    let xs = rows(&x);
    for norm in [AttackNorm::Linf, AttackNorm::L2] {
        for steps in [0, 1, 7] {
            let mut cfg = config(norm, 0.1, 0.04, steps, true);
            cfg.clip = Some((-1.0, 1.0));
            let adv = rows(&pgd_attack(&model, &x, &y, &cfg, &mut rng(1)).unwrap());
            for (a, x0) in adv.iter().zip(&xs) {
                let d: Vec<f64> = a.iter().zip(x0).map(|(a, b)| a - b).collect();
                let linf = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let l2 = dot(&d, &d).sqrt();
                match norm {
                    AttackNorm::Linf => assert!(linf <= 0.2 + 1e-12, "{linf}"),
                    AttackNorm::L2 => assert!(l2 <= 0.2 * (1.0 + 1e-12), "{l2}"),
                }
                assert!(
                    a.iter().all(|v| (-1.0..=1.0).contains(v)),
                    "{norm}: outside the box"
                );
                assert!(linf > 0.0, "{norm}, {steps} steps: the image did not move");
            }
        }
    }
}

#[test]
fn accounting_and_zero_radius() {
    let (model, _, _) = linear(4, 31);
    let (x, y) = data(96, 4, -1.0, 1.0, 32);
    let logits = model.logits(&x, BnMode::Eval).unwrap();
    let pred = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
    let clean = pred
        .iter()
        .zip(y.to_vec1::<u32>().unwrap())
        .filter(|(p, y)| **p == *y)
        .count();
    let mut cfg = PgdConfig::reference(AttackNorm::Linf);
    cfg.steps = 6;
    for norm in [AttackNorm::Linf, AttackNorm::L2] {
        cfg.norm = norm;
        let batches = vec![
            (x.narrow(0, 0, 40).unwrap(), y.narrow(0, 0, 40).unwrap()),
            (x.narrow(0, 40, 56).unwrap(), y.narrow(0, 40, 56).unwrap()),
        ];
        let r =
            robust_accuracy(&model, batches, &cfg, &[0.0, 4.0 / 255.0, 30.0 / 255.0], 9).unwrap();
        assert_eq!(r.n, 96);
        let zero = &r.points[0];
        assert_eq!(zero.clean_correct, clean);
        assert_eq!(zero.last_iterate_correct, clean, "{norm}: eps 0");
        assert_eq!(zero.robust_correct, clean, "{norm}: eps 0");
        for p in &r.points {
            assert_eq!(p.clean_correct, clean);
            assert!(p.robust_correct <= p.last_iterate_correct);
            assert!(p.last_iterate_correct <= p.clean_correct.max(p.last_iterate_correct));
            assert!(p.robust_correct <= p.clean_correct);
            assert_eq!(p.per_step_accuracy.len(), cfg.steps + 2);
            assert_eq!(p.per_step_accuracy[0], p.clean_accuracy);
            assert_eq!(*p.per_step_accuracy.last().unwrap(), p.robust_accuracy);
            assert!(p.per_step_accuracy.windows(2).all(|w| w[1] <= w[0]));
        }
        assert!(
            r.points[2].robust_correct < clean,
            "{norm}: 30/255 broke nothing"
        );
    }
}

#[test]
fn every_step_accounting_is_stricter_than_the_last_iterate() {
    // no gradient step: the random start is the last iterate, so an image misclassified
    // clean but correct at the start counts for the last iterate but not as robust
    let (model, _, _) = linear(3, 35);
    let (x, y) = data(128, 3, -0.5, 0.5, 36);
    let cfg = config(AttackNorm::Linf, 0.4, 0.0, 0, true);
    let t = pgd_trace(&model, &x, &y, &cfg, &mut rng(2)).unwrap();
    assert_eq!(t.robust_per_step.len(), 2);
    for i in 0..128 {
        assert_eq!(
            t.robust[i],
            t.clean_correct[i] && t.last_correct[i],
            "image {i}"
        );
    }
    let count = |v: &[bool]| v.iter().filter(|&&b| b).count();
    assert_eq!(
        t.robust_per_step,
        [count(&t.clean_correct), count(&t.robust)]
    );
    assert!(count(&t.robust) < count(&t.last_correct));
}

#[test]
fn deterministic_for_a_seed() {
    let (model, _, _) = linear(3, 41);
    let (x, y) = data(32, 3, -0.9, 0.9, 42);
    let mut cfg = PgdConfig::reference(AttackNorm::L2);
    cfg.steps = 3;
    cfg.eps = 0.5;
    let a = pgd_attack(&model, &x, &y, &cfg, &mut rng(7)).unwrap();
    let b = pgd_attack(&model, &x, &y, &cfg, &mut rng(7)).unwrap();
    let c = pgd_attack(&model, &x, &y, &cfg, &mut rng(8)).unwrap();
    let diff = |p: &Tensor, q: &Tensor| (p - q).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(diff(&a, &b).to_scalar::<f64>().unwrap(), 0.0);
    assert!(diff(&a, &c).to_scalar::<f64>().unwrap() > 0.0);

    let eps = [2.0 / 255.0, 8.0 / 255.0];
    let run = |list: &[f64], seed| {
        robust_accuracy(&model, [(x.clone(), y.clone())], &cfg, list, seed).unwrap()
    };
    assert_eq!(run(&eps, 1), run(&eps, 1));
    // a radius's numbers do not depend on the rest of the list
    assert_eq!(run(&eps, 1).points[1], run(&[0.0, eps[1]], 1).points[1]);
}

#[test]
fn inert_bpda_eot_is_plain_pgd_and_active_one_is_consistent() {
    let (model, _, _) = linear(3, 51);
    let (x, y) = data(24, 3, -1.0, 1.0, 52);
    let mut cfg = PgdConfig::reference(AttackNorm::Linf);
    cfg.steps = 5;
    let eps = [4.0 / 255.0, 16.0 / 255.0];
    let plain = robust_accuracy(&model, [(x.clone(), y.clone())], &cfg, &eps, 4).unwrap();

    // the reference's configuration: 0 Langevin steps, the defence does nothing
    cfg.bpda_eot = Some(BpdaEot::reference());
    let inert = robust_accuracy(&model, [(x.clone(), y.clone())], &cfg, &eps, 4).unwrap();
    assert_eq!(plain.points, inert.points);

    // an identity purification (no step, no noise) averaged over 3 copies: the same attack
    cfg.bpda_eot = Some(BpdaEot {
        langevin_steps: 2,
        langevin_step_size: 0.0,
        langevin_noise: 0.0,
        attack_reps: 3,
        defense_reps: 4,
    });
    let identity = robust_accuracy(&model, [(x.clone(), y.clone())], &cfg, &eps, 4).unwrap();
    for (p, q) in plain.points.iter().zip(&identity.points) {
        assert_eq!(p.robust_correct, q.robust_correct);
        assert_eq!(p.last_iterate_correct, q.last_iterate_correct);
    }

    // a real stochastic defence: reproducible, and the accounting holds
    cfg.bpda_eot = Some(BpdaEot {
        langevin_steps: 3,
        langevin_step_size: 0.05,
        langevin_noise: 0.05,
        attack_reps: 4,
        defense_reps: 16,
    });
    let a = robust_accuracy(&model, [(x.clone(), y.clone())], &cfg, &eps, 4).unwrap();
    let b = robust_accuracy(&model, [(x.clone(), y.clone())], &cfg, &eps, 4).unwrap();
    assert_eq!(a, b);
    for p in &a.points {
        assert!(p.robust_correct <= p.last_iterate_correct);
        assert!(p.robust_correct <= p.clean_correct);
        assert!(p.per_step_accuracy.windows(2).all(|w| w[1] <= w[0]));
    }
}

#[test]
fn runs_on_a_wide_resnet_in_f32() {
    let cfg = jem_models::WrnConfig::reference(10, 1, 5);
    let model = jem_models::WideResNet::new(cfg, 3, &Device::Cpu).unwrap();
    let mut r = rng(61);
    let x = Tensor::from_vec(
        uniform(&mut r, 6 * 3 * 32 * 32, -1.0, 1.0),
        (6, 3, 32, 32),
        &Device::Cpu,
    )
    .unwrap()
    .to_dtype(DType::F32)
    .unwrap();
    let y = Tensor::from_vec(vec![0u32, 1, 2, 3, 4, 0], 6, &Device::Cpu).unwrap();
    let mut pgd = PgdConfig::reference(AttackNorm::Linf);
    pgd.steps = 2;
    let adv = pgd_attack(&model, &x, &y, &pgd, &mut rng(1)).unwrap();
    assert_eq!(adv.dims(), x.dims());
    assert_eq!(adv.dtype(), DType::F32);
    let d = (&adv - &x)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d <= 16.0 / 255.0 + 1e-6 && d > 0.0, "{d}");
    let res = robust_accuracy(&model, [(x, y)], &pgd, &[0.0, 8.0 / 255.0], 1).unwrap();
    let zero = &res.points[0];
    assert_eq!(zero.robust_correct, zero.clean_correct);
    assert_eq!(zero.last_iterate_correct, zero.clean_correct);
}

#[test]
fn bad_arguments_are_named() {
    let (model, _, _) = linear(2, 71);
    let (x, y) = data(8, 2, -1.0, 1.0, 72);
    let err = |cfg: &PgdConfig, x: &Tensor, y: &Tensor| {
        pgd_attack(&model, x, y, cfg, &mut rng(0))
            .unwrap_err()
            .to_string()
    };
    let good = PgdConfig::reference(AttackNorm::Linf);
    assert!(err(&good.with_eps(-1.0), &x, &y).contains("eps"));
    assert!(
        err(
            &PgdConfig {
                step_size: f64::NAN,
                ..good
            },
            &x,
            &y
        )
        .contains("step_size")
    );
    assert!(
        err(
            &PgdConfig {
                pixel_scale: 0.0,
                ..good
            },
            &x,
            &y
        )
        .contains("pixel_scale")
    );
    assert!(
        err(
            &PgdConfig {
                clip: Some((1.0, -1.0)),
                ..good
            },
            &x,
            &y
        )
        .contains("clip")
    );
    assert!(err(&good, &x, &y.narrow(0, 0, 7).unwrap()).contains("`y`"));
    assert!(err(&good, &(&x * 3.0).unwrap(), &y).contains("clip"));
    let y9 = Tensor::from_vec(vec![9u32; 8], 8, &Device::Cpu).unwrap();
    assert!(err(&good, &x, &y9).contains("label 9"));
    let e = robust_accuracy(&model, [(x.clone(), y.clone())], &good, &[], 0).unwrap_err();
    assert!(e.to_string().contains("eps_list"));
    let e = robust_accuracy(&model, Vec::new(), &good, &[0.1], 0).unwrap_err();
    assert!(e.to_string().contains("batches"));
    assert!("l_2".parse::<AttackNorm>().unwrap() == AttackNorm::L2);
    assert!("linf".parse::<AttackNorm>().unwrap() == AttackNorm::Linf);
    assert!("l3".parse::<AttackNorm>().is_err());
}

#[test]
fn result_serializes_and_curve_is_a_png() {
    let (model, _, _) = linear(2, 81);
    let (x, y) = data(16, 2, -1.0, 1.0, 82);
    let mut cfg = PgdConfig::reference(AttackNorm::Linf);
    cfg.steps = 2;
    let linf = robust_accuracy(
        &model,
        [(x.clone(), y.clone())],
        &cfg,
        &reference_eps_list(),
        1,
    )
    .unwrap();
    cfg.norm = AttackNorm::L2;
    let l2 = robust_accuracy(&model, [(x, y)], &cfg, &[0.0, 0.1, 0.5], 1).unwrap();

    let json = serde_json::to_string(&linf).unwrap();
    assert!(json.contains("\"l_inf\""));
    let back: RobustnessResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back.points.len(), 8);
    assert_eq!(back.n, 16);
    assert_eq!(back.points[3].robust_correct, linf.points[3].robust_correct);
    assert!((back.points[3].eps - 8.0 / 255.0).abs() < 1e-15);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("figs").join("robustness.png");
    save_robustness_curve(&path, &[("linear L-inf", &linf), ("linear L2", &l2)]).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (800, 500));
    assert!(save_robustness_curve(&path, &[]).is_err());
}
