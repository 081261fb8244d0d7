//! BatchNorm semantics, initialization, parameter files, model shapes.

use candle_core::{DType, Device, Tensor};
use jem_models::layers::{BatchNorm2d, BatchNormConfig, Layer, Params, Pass};
use jem_models::{BnMode, Norm, ParamStore, WideResNet, WrnConfig, jem};

fn x() -> Tensor {
    // 2 images, 2 channels, 2x2: channel 0 holds 1..8, channel 1 holds 10 x that
    let v: Vec<f32> = (0..16)
        .map(|i| {
            let c = (i / 4) % 2;
            let k = (i / 8) * 4 + i % 4 + 1;
            k as f32 * if c == 0 { 1.0 } else { 10.0 }
        })
        .collect();
    Tensor::from_vec(v, (2, 2, 2, 2), &Device::Cpu).unwrap()
}

fn pass(mode: BnMode) -> Pass {
    Pass {
        mode,
        params: Params::Tracked,
    }
}

#[test]
fn batchnorm_train_eval_and_frozen() {
    let mut store = ParamStore::new(&Device::Cpu);
    let bn = BatchNorm2d::new(
        &mut store,
        "bn",
        2,
        BatchNormConfig {
            eps: 1e-5,
            momentum: 0.9,
        },
    )
    .unwrap();
    let y = bn.forward_pass(&x(), pass(BnMode::Train)).unwrap();
    // channel 0 values 1..8: mean 4.5, biased var 5.25, unbiased 6
    let y0: Vec<f32> = y
        .narrow(1, 0, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let want0: Vec<f32> = [1., 2., 3., 4., 5., 6., 7., 8.]
        .iter()
        .map(|v: &f32| (v - 4.5) / (5.25f32 + 1e-5).sqrt())
        .collect();
    let got_sorted = {
        let mut g = y0.clone();
        g.sort_by(f32::total_cmp);
        g
    };
    for (a, b) in got_sorted.iter().zip(&want0) {
        assert!((a - b).abs() < 1e-5);
    }
    let rm = bn.running_mean.to_vec1::<f32>().unwrap();
    let rv = bn.running_var.to_vec1::<f32>().unwrap();
    assert!(
        (rm[0] - 0.9 * 4.5).abs() < 1e-5 && (rm[1] - 0.9 * 45.0).abs() < 1e-3,
        "{rm:?}"
    );
    assert!(
        (rv[0] - (0.1 + 0.9 * 6.0)).abs() < 1e-5 && (rv[1] - (0.1 + 0.9 * 600.0)).abs() < 1e-2,
        "{rv:?}"
    );
    // frozen: batch statistics, running statistics untouched
    let yf = bn.forward_pass(&x(), pass(BnMode::TrainFrozen)).unwrap();
    assert_eq!(
        yf.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    assert_eq!(bn.running_mean.to_vec1::<f32>().unwrap(), rm);
    // eval: running statistics
    let ye = bn.forward_pass(&x(), pass(BnMode::Eval)).unwrap();
    let first = ye.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
    assert!((first - (1.0 - rm[0]) / (rv[0] + 1e-5).sqrt()).abs() < 1e-5);
    assert_eq!(bn.running_var.to_vec1::<f32>().unwrap(), rv);
    // running statistics are buffers, not parameters
    assert_eq!(store.params().count(), 2);
    assert_eq!(store.buffers().count(), 2);
}

#[test]
fn init_is_seeded_and_bounded() {
    let cfg = WrnConfig::reference(10, 1, 10);
    let a = WideResNet::new(cfg.clone(), 3, &Device::Cpu).unwrap();
    let b = WideResNet::new(cfg.clone(), 3, &Device::Cpu).unwrap();
    let c = WideResNet::new(cfg, 4, &Device::Cpu).unwrap();
    let w = |m: &WideResNet| {
        m.store
            .get("f.layer2.0.conv1.weight")
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(w(&a), w(&b));
    assert_ne!(w(&a), w(&c));
    let bound = 1.0 / ((16 * 9) as f32).sqrt();
    assert!(w(&a).iter().all(|v| v.abs() <= bound));
    let spread = w(&a).iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(spread > 0.9 * bound, "uniform over the whole range");
    assert_eq!(
        a.store
            .get("f.bn1.weight")
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        vec![1.0; 64]
    );
}

#[test]
fn parameter_files_roundtrip_and_reject_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let a = WideResNet::new(WrnConfig::reference(10, 1, 10), 1, &Device::Cpu).unwrap();
    a.logits(
        &Tensor::ones((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap(),
        BnMode::Train,
    )
    .unwrap();
    a.store.save(&path).unwrap();
    let b = WideResNet::new(WrnConfig::reference(10, 1, 10), 2, &Device::Cpu).unwrap();
    assert!(b.store.load(&path).unwrap().is_empty());
    for (name, v) in a.store.params().chain(a.store.buffers()) {
        let other = b.store.get(name).unwrap();
        assert_eq!(
            v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            other.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{name}"
        );
    }
    let wide = WideResNet::new(WrnConfig::reference(10, 2, 10), 2, &Device::Cpu).unwrap();
    let e = wide.store.load(&path).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("shape"),
        "{e}"
    );
    std::fs::write(&path, b"not safetensors").unwrap();
    assert!(
        b.store
            .load(&path)
            .unwrap_err()
            .to_string()
            .contains("model.safetensors")
    );
}

#[test]
fn shapes_configs_and_jem_view() {
    let mut cfg = WrnConfig::reference(16, 1, 7);
    cfg.in_channels = 1;
    cfg.norm = Norm::None;
    let m = WideResNet::new(cfg, 1, &Device::Cpu).unwrap();
    assert!(m.store.buffers().next().is_none());
    let x = Tensor::zeros((3, 1, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let logits = m.logits(&x, BnMode::Train).unwrap();
    assert_eq!(logits.dims(), &[3, 7]);
    let e = jem::energy(&logits).unwrap();
    let lse = jem::log_density(&logits).unwrap();
    assert_eq!(
        e.neg().unwrap().to_vec1::<f32>().unwrap(),
        lse.to_vec1::<f32>().unwrap()
    );
    let y = Tensor::new(&[0u32, 6, 3], &Device::Cpu).unwrap();
    let fy = jem::class_logit(&logits, &y)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let rows = logits.to_vec2::<f32>().unwrap();
    assert_eq!(fy, vec![rows[0][0], rows[1][6], rows[2][3]]);
    // bad depth, bad input size
    assert!(
        WideResNet::new(WrnConfig::reference(12, 1, 10), 1, &Device::Cpu)
            .unwrap_err()
            .to_string()
            .contains("6n + 4")
    );
    let small = Tensor::zeros((1, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
    assert!(
        m.logits(&small, BnMode::Eval)
            .unwrap_err()
            .to_string()
            .contains("28")
    );
}

#[test]
fn input_gradient_matches_finite_differences() {
    // a self-check beside the PyTorch parity test: central differences of sum LSE along a
    // direction u must equal <grad, u> (directional, so that the f32 signal is large)
    let m = WideResNet::new(WrnConfig::reference(10, 1, 10), 1, &Device::Cpu).unwrap();
    let v: Vec<f32> = (0..2 * 3072)
        .map(|i| ((i as f32) * 0.01).sin() * 0.5)
        .collect();
    let x = Tensor::from_vec(v.clone(), (2, 3, 32, 32), &Device::Cpu).unwrap();
    for mode in [BnMode::Eval, BnMode::TrainFrozen] {
        let (g, _) = jem::input_gradient(&m, &x, mode).unwrap();
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let norm = g.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        let along: Vec<f64> = g.iter().map(|a| *a as f64 / norm).collect();
        let other: Vec<f64> = (0..g.len())
            .map(|i| ((i as f64) * 0.7).cos() / (g.len() as f64 / 2.0).sqrt())
            .collect();
        for u in [along, other] {
            let f = |h: f64| {
                let w: Vec<f32> = v
                    .iter()
                    .zip(&u)
                    .map(|(a, b)| (*a as f64 + h * b) as f32)
                    .collect();
                let xi = Tensor::from_vec(w, (2, 3, 32, 32), &Device::Cpu).unwrap();
                let lse = jem::log_density(&m.logits(&xi, mode).unwrap()).unwrap();
                lse.to_dtype(DType::F64)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let h = 0.005;
            let fd = (f(h) - f(-h)) / (2.0 * h);
            let dot: f64 = g.iter().zip(&u).map(|(a, b)| *a as f64 * b).sum();
            assert!(
                (fd - dot).abs() < 0.02 * norm,
                "{mode:?}: fd {fd} vs <g, u> {dot} (|g| {norm})"
            );
        }
    }
}

#[test]
fn swish_and_relu_variants_build_and_differ() {
    use jem_models::Activation;
    let x = Tensor::from_vec(
        (0..2 * 3072)
            .map(|i| ((i as f32) * 0.003).sin())
            .collect::<Vec<f32>>(),
        (2, 3, 32, 32),
        &Device::Cpu,
    )
    .unwrap();
    let mut outs = Vec::new();
    for act in [
        Activation::LeakyRelu { slope: 0.2 },
        Activation::LeakyRelu { slope: 0.0 },
        Activation::Swish,
    ] {
        let mut cfg = WrnConfig::reference(10, 1, 10);
        cfg.activation = act;
        let m = WideResNet::new(cfg, 1, &Device::Cpu).unwrap();
        outs.push(
            m.logits(&x, BnMode::Eval)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        );
    }
    assert_ne!(outs[0], outs[1]);
    assert_ne!(outs[0], outs[2]);
    let mut bad = WrnConfig::reference(10, 1, 10);
    bad.activation = Activation::LeakyRelu { slope: 1.5 };
    assert!(
        WideResNet::new(bad, 1, &Device::Cpu)
            .unwrap_err()
            .to_string()
            .contains("slope")
    );
}
