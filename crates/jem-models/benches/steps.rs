//! Speed of the building blocks, in images per second, on the configurations of the
//! PyTorch reference benchmark (`../shared/bench/torch_baseline.py`):
//!
//! - (a) WRN-16-4, batch 32: classifier step (train-mode forward, cross-entropy, backward);
//! - (b) WRN-16-4, batch 32: one SGLD step (eval-mode forward, gradient of sum LSE with
//!   respect to the input, `x + grad`);
//! - (c) WRN-28-10, batch 8: classifier step.
//!
//! `cargo bench -p jem-models --bench steps` (set `RAYON_NUM_THREADS` to match PyTorch's
//! thread count). Inputs are uniform in [-1, 1].

use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jem_models::{BnMode, WideResNet, WrnConfig, jem};
use rand::Rng;

fn inputs(n: usize) -> (Tensor, Tensor) {
    let mut rng = jem_rng::rng_for(&[7]);
    let x: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let y: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    (
        Tensor::from_vec(x, (n, 3, 32, 32), &Device::Cpu).expect("x"),
        Tensor::from_vec(y, n, &Device::Cpu).expect("y"),
    )
}

fn clf_step(c: &mut Criterion, id: &str, depth: usize, width: usize, batch: usize) {
    let model =
        WideResNet::new(WrnConfig::reference(depth, width, 10), 1, &Device::Cpu).expect("model");
    let (x, y) = inputs(batch);
    let mut g = c.benchmark_group(id);
    g.throughput(Throughput::Elements(batch as u64));
    g.sample_size(10);
    g.bench_function("classifier step", |b| {
        b.iter(|| {
            let loss =
                jem::cross_entropy(&model.logits(&x, BnMode::Train).expect("fwd"), &y).expect("ce");
            std::hint::black_box(loss.backward().expect("bwd"));
        })
    });
    g.finish();
}

fn sgld_step(c: &mut Criterion) {
    let model = WideResNet::new(WrnConfig::reference(16, 4, 10), 1, &Device::Cpu).expect("model");
    let (x, _) = inputs(32);
    let mut g = c.benchmark_group("(b) WRN-16-4 b32");
    g.throughput(Throughput::Elements(32));
    g.sample_size(10);
    g.bench_function("SGLD step", |b| {
        b.iter(|| {
            let (grad, _) = jem::input_gradient(&model, &x, BnMode::Eval).expect("grad");
            std::hint::black_box((&x + grad).expect("step"));
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    jem_models::alloc::tune_allocator();
    jem_models::alloc::tune_threads();
    clf_step(c, "(a) WRN-16-4 b32", 16, 4, 32);
    sgld_step(c);
    clf_step(c, "(c) WRN-28-10 b8", 28, 10, 8);
}

criterion_group!(steps, benches);
criterion_main!(steps);
