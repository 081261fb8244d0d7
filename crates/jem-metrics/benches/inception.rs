//! Speed of FID Inception feature extraction on the CPU, in images per second: a batch of
//! 16 CIFAR-sized (3x32x32) images, resized to 299x299 as pytorch-fid does, through the
//! whole network (pool features and logits), with deterministic formula weights (speed does
//! not depend on the values).
//!
//! `cargo bench -p jem-metrics --bench inception` (set `RAYON_NUM_THREADS` to compare with
//! PyTorch at a given thread count).

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jem_metrics::inception::FidInception;

const BATCH: usize = 16;

fn weights() -> HashMap<String, Tensor> {
    FidInception::parameter_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
            let k = if name.ends_with("running_var") || name.ends_with("bn.weight") {
                0.0
            } else {
                (2.0 / fan_in as f64).sqrt()
            };
            let base = if k == 0.0 { 1.0 } else { 0.0 };
            let v: Vec<f32> = (0..n)
                .map(|i| {
                    let q = 0.7548776662466927 * (i as f64 * i as f64);
                    (base + k * (std::f64::consts::TAU * (q - q.floor())).sin()) as f32
                })
                .collect();
            (
                name,
                Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor"),
            )
        })
        .collect()
}

fn extraction(c: &mut Criterion) {
    let net = FidInception::from_tensors(&weights(), &Device::Cpu).expect("network");
    let images = Tensor::rand(0f32, 1f32, (BATCH, 3, 32, 32), &Device::Cpu).expect("images");
    let mut g = c.benchmark_group("fid-inception cpu");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(30));
    g.bench_function(format!("extract {BATCH} images 32x32"), |b| {
        b.iter(|| std::hint::black_box(net.extract(&images, BATCH, false).expect("extract")))
    });
    g.finish();
}

criterion_group!(benches, extraction);
criterion_main!(benches);
