//! The fused BatchNorm + leaky ReLU kernel of `jem-kernels` against the composed candle
//! operations that `jem_models::layers::BatchNorm2d` runs on other devices.

use candle_core::{DType, Device, Tensor, Var};

use jem_models::ParamStore;
use jem_models::layers::{BatchNorm2d, BatchNormConfig, BnMode, Layer, Params, Pass, leaky_relu};

fn values(n: usize, seed: f64) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f64 * 0.613 + seed).sin() * 1.7 + 0.3) as f32)
        .collect()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(candle_core::DType::F64).unwrap();
    let b = b.to_dtype(candle_core::DType::F64).unwrap();
    let d = (&a - &b).unwrap().abs().unwrap().max_all().unwrap();
    let m = b.abs().unwrap().max_all().unwrap();
    d.to_scalar::<f64>().unwrap() / m.to_scalar::<f64>().unwrap().max(1e-12)
}

/// The composed f64 reference: BatchNorm in `mode` (eval: with the layer's running
/// statistics), then the leaky ReLU.
fn composed(bn: &BatchNorm2d, x64: &Tensor, mode: BnMode, slope: Option<f64>) -> Tensor {
    let f64t = |v: &Var| v.as_tensor().to_dtype(DType::F64).unwrap();
    let y = if mode == BnMode::Eval {
        let c = x64.dim(1).unwrap();
        let r = |t: Tensor| t.reshape((1, c, 1, 1)).unwrap();
        let inv = r(((f64t(&bn.running_var) + bn.eps).unwrap().sqrt().unwrap())
            .recip()
            .unwrap());
        x64.broadcast_sub(&r(f64t(&bn.running_mean)))
            .unwrap()
            .broadcast_mul(&inv)
            .unwrap()
            .broadcast_mul(&r(f64t(&bn.weight)))
            .unwrap()
            .broadcast_add(&r(f64t(&bn.bias)))
            .unwrap()
    } else {
        bn.forward_pass(x64, pass(mode)).unwrap()
    };
    match slope {
        Some(s) => leaky_relu(&y, s).unwrap(),
        None => y,
    }
}

fn pass(mode: BnMode) -> Pass {
    Pass {
        mode,
        params: Params::Tracked,
    }
}

/// The fused f32 kernel against the composed f64 operations (the path other devices
/// take): output and the gradients of input, scale and shift, in the batch-statistics
/// and running-statistics modes, with and without the leaky ReLU, on odd sizes and
/// batch 1.

#[test]
fn fused_kernel_matches_the_composed_operations() {
    let shapes = [(3, 5, 4, 7), (1, 2, 3, 3), (8, 4, 1, 1)];
    let variants = [
        (BnMode::TrainFrozen, None),
        (BnMode::TrainFrozen, Some(0.2)),
        (BnMode::Eval, None),
        (BnMode::Eval, Some(0.2)),
    ];
    for &(n, c, h, w) in &shapes {
        for &(mode, slope) in &variants {
            let id = format!("{n}x{c}x{h}x{w} {mode:?} {slope:?}");
            let dev = Device::Cpu;
            let mut store = ParamStore::new(&dev);
            let bn = BatchNorm2d::new(
                &mut store,
                "bn",
                c,
                BatchNormConfig {
                    eps: 1e-5,
                    momentum: 0.9,
                },
            )
            .unwrap();
            let set =
                |v: &Var, vals: Vec<f32>| v.set(&Tensor::from_vec(vals, c, &dev).unwrap()).unwrap();
            set(&bn.weight, values(c, 1.0));
            set(&bn.bias, values(c, 2.0));
            set(&bn.running_mean, values(c, 4.0));
            set(
                &bn.running_var,
                values(c, 5.0).iter().map(|v| v.abs() + 0.5).collect(),
            );
            let x = Var::from_vec(values(n * c * h * w, 0.5), (n, c, h, w), &dev).unwrap();
            let x64 = Var::from_tensor(&x.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
            let up = Tensor::from_vec(values(n * c * h * w, 3.0), (n, c, h, w), &dev).unwrap();
            let fused = bn.forward_fused(x.as_tensor(), pass(mode), slope).unwrap();
            let reference = composed(&bn, x64.as_tensor(), mode, slope);
            assert!(max_rel(&fused, &reference) < 1e-6, "{id}: output");
            let g1 = (&fused * &up)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let up64 = up.to_dtype(DType::F64).unwrap();
            let g2 = (&reference * &up64)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gx = (
                g1.get(x.as_tensor()).unwrap(),
                g2.get(x64.as_tensor()).unwrap(),
            );
            assert!(max_rel(gx.0, gx.1) < 1e-5, "{id}: input gradient");
            for p in [&bn.weight, &bn.bias] {
                let a = g1.get(p.as_tensor()).unwrap();
                let b = g2.get(p.as_tensor()).unwrap();
                assert!(max_rel(a, b) < 1e-5, "{id}: parameter gradient");
            }
        }
    }
}
