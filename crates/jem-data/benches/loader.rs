//! Throughput of the augmented training loader on Fashion-MNIST, in images per second.
//!
//! `cargo bench -p jem-data --bench loader`. Uses the real 60,000-image training set from
//! `../shared/data` when present (or `$JEM_DATA_DIR`), else the embedded 10,000-image subset.
//! The pipeline is the one of the Fashion-MNIST presets: bytes -> [-1, 1], zero-pad 28->32,
//! reflect-pad 4 + random crop + horizontal flip, batches of 64 as CPU tensors, prepared by
//! background workers (0 = on the calling thread, for comparison).

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jem_data::{DatasetName, LoadOptions, Loader, LoaderConfig, Position, Transform};

fn train_set() -> (jem_data::ImageSet, &'static str) {
    let dirs = [
        std::env::var_os("JEM_DATA_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")),
    ];
    for d in dirs.into_iter().flatten() {
        if let Ok(s) = DatasetName::FashionMnist.load("train", &d, &LoadOptions::default()) {
            return (s, "fashion-mnist (60k)");
        }
    }
    let s = DatasetName::FashionMnistQuick
        .load("train", &PathBuf::new(), &LoadOptions::default())
        .expect("embedded set");
    (s, "fashion-mnist-quick (10k)")
}

fn bench(c: &mut Criterion) {
    let (set, name) = train_set();
    let set = Arc::new(set);
    let transform = Transform {
        pad_to: Some([32, 32]),
        crop_pad: 4,
        hflip: true,
        ..Transform::default()
    };
    let batches = 50;
    let mut group = c.benchmark_group(format!("augmented loader, {name}"));
    group.throughput(Throughput::Elements((64 * batches) as u64));
    group.sample_size(20);
    for workers in [0usize, 1, 2] {
        let cfg = LoaderConfig {
            batch_size: 64,
            workers,
            prefetch: 4,
            ..LoaderConfig::default()
        };
        let loader = Loader::new(set.clone(), transform.clone(), cfg, Device::Cpu).expect("loader");
        let mut epoch = 0u64;
        group.bench_function(format!("workers={workers}, {batches} batches of 64"), |b| {
            b.iter(|| {
                epoch += 1;
                let mut it = loader.stream(Position { epoch, batch: 0 }, Some(batches));
                for batch in &mut it {
                    std::hint::black_box(batch.expect("batch"));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
