//! Update rules against scalar f64 implementations of PyTorch's formulas, and bit-exact
//! resume from saved state.

use candle_core::{Device, Tensor, Var};
use jem_optim::{Adam, AdamConfig, OptimState, Optimizer, Sam, Sgd, SgdConfig};

/// A quadratic loss sum(c * w^2) with gradient 2 c w.
fn grads_of(w: &Var, c: &[f32]) -> candle_core::backprop::GradStore {
    let c = Tensor::new(c, &Device::Cpu).unwrap();
    (w.as_tensor().sqr().unwrap() * c)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
}

const C: [f32; 4] = [0.5, -1.0, 2.0, 0.25];
const W0: [f32; 4] = [1.0, -2.0, 0.5, 3.0];

fn reference_sgd(cfg: &SgdConfig, steps: usize) -> Vec<f64> {
    let mut w: Vec<f64> = W0.iter().map(|&v| v as f64).collect();
    let mut buf: Option<Vec<f64>> = None;
    for _ in 0..steps {
        let d: Vec<f64> = w
            .iter()
            .zip(C)
            .map(|(w, c)| 2.0 * c as f64 * w + cfg.weight_decay * w)
            .collect();
        let step = if cfg.momentum != 0.0 {
            let b: Vec<f64> = match &buf {
                None => d.clone(),
                Some(b) => b
                    .iter()
                    .zip(&d)
                    .map(|(b, d)| cfg.momentum * b + (1.0 - cfg.dampening) * d)
                    .collect(),
            };
            let s = if cfg.nesterov {
                d.iter()
                    .zip(&b)
                    .map(|(d, b)| d + cfg.momentum * b)
                    .collect()
            } else {
                b.clone()
            };
            buf = Some(b);
            s
        } else {
            d
        };
        w = w.iter().zip(&step).map(|(w, s)| w - cfg.lr * s).collect();
    }
    w
}

fn run(opt: &mut dyn Optimizer, steps: usize) -> Vec<f32> {
    let w = Var::new(&W0, &Device::Cpu).unwrap();
    for _ in 0..steps {
        let g = grads_of(&w, &C);
        opt.step(&[("w", &w)], &g).unwrap();
    }
    w.to_vec1::<f32>().unwrap()
}

fn close(a: &[f32], b: &[f64], tol: f64) {
    for (x, y) in a.iter().zip(b) {
        assert!(
            (*x as f64 - y).abs() <= tol * y.abs().max(1e-3),
            "{a:?} vs {b:?}"
        );
    }
}

#[test]
fn sgd_variants_follow_pytorch_formulas() {
    for cfg in [
        SgdConfig {
            lr: 0.1,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.3,
            ..SgdConfig::default()
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.8,
            nesterov: true,
            weight_decay: 1e-2,
            ..SgdConfig::default()
        },
    ] {
        let got = run(&mut Sgd::new(cfg.clone()), 5);
        close(&got, &reference_sgd(&cfg, 5), 1e-5);
    }
    assert!(
        Sgd::new(SgdConfig {
            nesterov: true,
            ..SgdConfig::default()
        })
        .validate()
        .is_err()
    );
}

#[test]
fn adam_follows_pytorch_formulas() {
    let cfg = AdamConfig {
        lr: 0.01,
        weight_decay: 1e-3,
        ..AdamConfig::default()
    };
    let got = run(&mut Adam::new(cfg.clone()), 4);
    let mut w: Vec<f64> = W0.iter().map(|&v| v as f64).collect();
    let (mut m, mut v) = (vec![0.0; 4], vec![0.0; 4]);
    for t in 1..=4 {
        for i in 0..4 {
            let g = 2.0 * C[i] as f64 * w[i] + cfg.weight_decay * w[i];
            m[i] = cfg.beta1 * m[i] + (1.0 - cfg.beta1) * g;
            v[i] = cfg.beta2 * v[i] + (1.0 - cfg.beta2) * g * g;
            let mh = m[i] / (1.0 - cfg.beta1.powi(t));
            let vh = v[i] / (1.0 - cfg.beta2.powi(t));
            w[i] -= cfg.lr * mh / (vh.sqrt() + cfg.eps);
        }
    }
    close(&got, &w, 1e-5);
}

#[test]
fn sam_and_asam_perturb_as_davda54() {
    for adaptive in [false, true] {
        let rho = 0.3;
        let w = Var::new(&W0, &Device::Cpu).unwrap();
        let g = grads_of(&w, &C);
        let mut sam = Sam::new(rho, adaptive).unwrap();
        let norm = sam.first_step(&[("w", &w)], &g).unwrap();
        let gs: Vec<f64> = W0
            .iter()
            .zip(C)
            .map(|(w, c)| 2.0 * c as f64 * *w as f64)
            .collect();
        let scaled: Vec<f64> = gs
            .iter()
            .zip(W0)
            .map(|(g, w)| if adaptive { g * (w as f64).abs() } else { *g })
            .collect();
        let n = scaled.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - n).abs() < 1e-5 * n);
        let want: Vec<f64> = W0
            .iter()
            .zip(&gs)
            .map(|(w, g)| {
                *w as f64 + if adaptive { (*w as f64).powi(2) } else { 1.0 } * g * rho / n
            })
            .collect();
        close(&w.to_vec1::<f32>().unwrap(), &want, 1e-6);
        // second step: back to W0, then the base step with the new gradients
        let g2 = grads_of(&w, &C);
        let perturbed: Vec<f64> = w
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        sam.second_step(
            &[("w", &w)],
            &g2,
            &mut Sgd::new(SgdConfig {
                lr: 0.1,
                ..SgdConfig::default()
            }),
        )
        .unwrap();
        let want: Vec<f64> = W0
            .iter()
            .zip(C)
            .zip(&perturbed)
            .map(|((w0, c), p)| *w0 as f64 - 0.1 * 2.0 * c as f64 * p)
            .collect();
        close(&w.to_vec1::<f32>().unwrap(), &want, 1e-6);
    }
    assert!(Sam::new(f64::NAN, false).is_err());
}

#[test]
fn saved_state_resumes_bit_exactly() {
    for make in [
        (|| {
            Box::new(Sgd::new(SgdConfig {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 5e-4,
                ..SgdConfig::default()
            })) as Box<dyn Optimizer>
        }) as fn() -> Box<dyn Optimizer>,
        || Box::new(Adam::new(AdamConfig::default())),
    ] {
        let straight = run(make().as_mut(), 6);
        let w = Var::new(&W0, &Device::Cpu).unwrap();
        let mut opt = make();
        for _ in 0..3 {
            let g = grads_of(&w, &C);
            opt.step(&[("w", &w)], &g).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optim.safetensors");
        std::fs::write(&path, opt.state().unwrap().to_bytes().unwrap()).unwrap();
        let mut resumed = make();
        resumed
            .load_state(&OptimState::load(&path, &Device::Cpu).unwrap())
            .unwrap();
        for _ in 0..3 {
            let g = grads_of(&w, &C);
            resumed.step(&[("w", &w)], &g).unwrap();
        }
        assert_eq!(
            w.to_vec1::<f32>().unwrap(),
            straight,
            "bit-identical after resume"
        );
    }
    let mut sgd = Sgd::new(SgdConfig::default());
    let adam_state = Adam::new(AdamConfig::default()).state().unwrap();
    assert!(
        sgd.load_state(&adam_state)
            .unwrap_err()
            .to_string()
            .contains("adam")
    );
}
