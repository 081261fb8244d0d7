//! Speed of one whole SADA-JEM iteration, measure (d) of the PyTorch reference benchmark
//! (`../shared/bench/torch_baseline.py --measure sadajem_iter --depth 16 --width 4
//! --batch 32 --sgld-steps 5 --rho 0.2`): chains drawn from a 10,000-image uniform replay
//! buffer (5% restarts), K = 5 steps of the reference SGLD rule, the x+ / x- / labelled
//! passes, SAM (rho 0.2) with its frozen-BatchNorm second pass, SGD, and the chains written
//! back. Throughput counts labelled images, as the PyTorch script does.
//!
//! `cargo bench -p jem-train --bench iteration`.

use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jem_data::rng::rng_for;
use jem_models::{WideResNet, WrnConfig};
use jem_optim::{Sam, Sgd, SgdConfig};
use jem_sampler::{InitKind, ReplayBuffer, Sgld};
use jem_train::config::{L2Form, LossConfig, SecondPass};
use jem_train::step::{Optimizers, StepBatch, finish, first_pass};
use rand::Rng;

const BATCH: usize = 32;

fn uniform(n: usize, seed: u64) -> Tensor {
    let mut rng = rng_for(&[seed]);
    let x: Vec<f32> = (0..n * 3 * 32 * 32)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    Tensor::from_vec(x, (n, 3, 32, 32), &Device::Cpu).expect("batch")
}

fn sadajem_iteration(c: &mut Criterion) {
    jem_models::alloc::tune_allocator();
    jem_models::alloc::tune_threads();
    let dev = Device::Cpu;
    let model = WideResNet::new(WrnConfig::reference(16, 4, 10), 1, &dev).expect("model");
    let mut rng = rng_for(&[11]);
    let mut buffer = ReplayBuffer::new(
        10_000,
        [3, 32, 32],
        InitKind::Uniform,
        None,
        0.05,
        &mut rng,
        &dev,
    )
    .expect("buffer");
    let mut opt = Optimizers {
        base: Box::new(Sgd::new(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 5e-4,
            ..SgdConfig::default()
        })),
        sam: Some(Sam::new(0.2, false).expect("sam")),
    };
    let loss = LossConfig {
        px: 1.0,
        pyx: 1.0,
        l2: 0.0,
        l2_form: L2Form::MeanOfSquares,
        second_pass: SecondPass::Full,
    };
    let sgld = Sgld::reference(5);
    let (x_pos, x_lab) = (uniform(BATCH, 1), uniform(BATCH, 2));
    let y_lab =
        Tensor::from_vec((0..BATCH as u32).map(|i| i % 10).collect(), BATCH, &dev).expect("labels");
    let mut g = c.benchmark_group("(d) WRN-16-4 b32");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.bench_function("SADA-JEM iteration K=5", |b| {
        b.iter(|| {
            let (slots, start) = buffer.sample(BATCH, None, &mut rng).expect("draw");
            let batch = StepBatch {
                x_pos: Some(x_pos.clone()),
                x_start: Some(start),
                x_lab: x_lab.clone(),
                y_lab: y_lab.clone(),
            };
            let first = first_pass(&model, &batch, Some(&sgld), &mut rng, &loss).expect("pass");
            finish(&model, &first, &batch, &loss, &mut opt).expect("update");
            let x_neg = first.x_neg.expect("negatives");
            buffer.store(&slots, &x_neg).expect("store");
        })
    });
    g.finish();
}

criterion_group!(iteration, sadajem_iteration);
criterion_main!(iteration);
