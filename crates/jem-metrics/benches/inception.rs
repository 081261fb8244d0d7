//! Speed of FID Inception feature extraction on the CPU, in images per second: a batch of
//! 16 CIFAR-sized (3x32x32) images, resized to 299x299 as pytorch-fid does, through the
//! whole network (pool features and logits), with the deterministic formula weights of
//! `inception::synthetic` (speed does not depend on the values).
//!
//! `cargo bench -p jem-metrics --bench inception` (set `RAYON_NUM_THREADS` to compare with
//! PyTorch at a given thread count).

use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jem_metrics::inception::FidInception;

const BATCH: usize = 16;

fn extraction(c: &mut Criterion) {
    let net = FidInception::from_tensors(
        &jem_metrics::inception::synthetic::formula_weights().expect("weights"),
        &Device::Cpu,
    )
    .expect("network");
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
