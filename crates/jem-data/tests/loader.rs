//! Loader properties: determinism, epochs without loss or repetition, prefetch = sync.

use std::collections::HashSet;
use std::sync::Arc;

use candle_core::Device;
use jem_data::{ImageSet, Loader, LoaderConfig, Position, Transform};

fn toy(n: usize) -> Arc<ImageSet> {
    // image i holds the value i % 256 everywhere, plus its index in the first two pixels
    let mut images = Vec::with_capacity(n * 28 * 28);
    for i in 0..n {
        let mut img = vec![(i % 256) as u8; 28 * 28];
        img[0] = (i / 256) as u8;
        img[1] = (i % 256) as u8;
        images.extend(img);
    }
    Arc::new(
        ImageSet::new(
            images,
            (0..n as u32).map(|i| i % 10).collect(),
            [1, 28, 28],
            10,
            "toy",
        )
        .unwrap(),
    )
}

fn fmnist_like_transform() -> Transform {
    Transform {
        pad_to: Some([32, 32]),
        crop_pad: 4,
        hflip: true,
        ..Transform::default()
    }
}

fn loader(n: usize, workers: usize, drop_last: bool, t: Transform) -> Loader {
    let cfg = LoaderConfig {
        batch_size: 16,
        drop_last,
        seed: 42,
        workers,
        prefetch: 2,
        ..LoaderConfig::default()
    };
    Loader::new(toy(n), t, cfg, Device::Cpu).unwrap()
}

#[test]
fn epoch_visits_every_image_once() {
    let l = loader(100, 2, false, Transform::default());
    assert_eq!(l.batches_per_epoch(), 7);
    let mut seen = Vec::new();
    for b in l.epoch(0) {
        let b = b.unwrap();
        let imgs = b.images.to_vec3::<f32>().ok();
        assert!(imgs.is_none()); // 4-d
        let flat = b.images.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        for (row, &i) in flat.iter().zip(&b.indices) {
            // pixel 1 holds i % 256 scaled to [-1, 1]
            let v = ((row[1] + 1.0) / 2.0 * 255.0).round() as usize;
            assert_eq!(v, i % 256);
        }
        assert_eq!(
            b.labels.to_vec1::<u32>().unwrap(),
            b.indices
                .iter()
                .map(|&i| (i % 10) as u32)
                .collect::<Vec<_>>()
        );
        seen.extend(b.indices);
    }
    assert_eq!(seen.len(), 100, "drop_last off keeps the last 4");
    let set: HashSet<_> = seen.iter().collect();
    assert_eq!(set.len(), 100);

    let l = loader(100, 2, true, Transform::default());
    let seen: Vec<usize> = l.epoch(3).flat_map(|b| b.unwrap().indices).collect();
    assert_eq!(seen.len(), 96);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 96);
}

#[test]
fn seeded_and_reshuffled_per_epoch() {
    let a = loader(200, 0, true, Transform::default());
    let b = loader(200, 2, true, Transform::default());
    assert_eq!(a.epoch_order(0), b.epoch_order(0));
    assert_ne!(a.epoch_order(0), a.epoch_order(1));
    let cfg = LoaderConfig {
        seed: 43,
        ..a.config().clone()
    };
    let c = Loader::new(toy(200), Transform::default(), cfg, Device::Cpu).unwrap();
    assert_ne!(a.epoch_order(0), c.epoch_order(0));
}

#[test]
fn prefetching_workers_give_the_synchronous_batches() {
    let sync = loader(300, 0, true, fmnist_like_transform());
    for workers in [1, 2, 3] {
        let pre = loader(300, workers, true, fmnist_like_transform());
        let start = Position { epoch: 2, batch: 5 };
        let mut it = pre.cycle_from(start);
        for k in 0..40 {
            let b = it.next().unwrap().unwrap();
            let pos = b.position;
            let want = sync.batch_at(pos).unwrap();
            assert_eq!(b.indices, want.indices, "workers {workers}, batch {k}");
            let diff = (b.images - want.images)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        }
        // 40 batches from (2, 5) with 18 per epoch end at (4, 9)
        assert_eq!(it.position(), Position { epoch: 4, batch: 9 });
    }
}

#[test]
fn cycling_crosses_epochs_and_finite_stops() {
    let l = loader(64, 2, true, Transform::default());
    assert_eq!(l.epoch(0).count(), 4);
    let positions: Vec<Position> = l
        .cycle_from(Position { epoch: 0, batch: 2 })
        .take(5)
        .map(|b| b.unwrap().position)
        .collect();
    assert_eq!(
        positions,
        vec![
            Position { epoch: 0, batch: 2 },
            Position { epoch: 0, batch: 3 },
            Position { epoch: 1, batch: 0 },
            Position { epoch: 1, batch: 1 },
            Position { epoch: 1, batch: 2 },
        ]
    );
    // dropping a stream part-way stops its workers (the test would hang otherwise)
    let mut it = l.cycle_from(Position::default());
    it.next();
    drop(it);
}

#[test]
fn augmented_batches_have_the_right_shape_and_range() {
    let l = loader(64, 2, true, fmnist_like_transform());
    assert_eq!(l.output_shape(), [1, 32, 32]);
    let b = l.batch_at(Position { epoch: 0, batch: 1 }).unwrap();
    assert_eq!(b.images.dims(), &[16, 1, 32, 32]);
    let v = b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
    // the same position twice gives the same augmentation
    let again = l.batch_at(Position { epoch: 0, batch: 1 }).unwrap();
    assert_eq!(
        v,
        again
            .images
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    );
}

#[test]
fn bad_configs_are_errors() {
    let cfg = LoaderConfig {
        batch_size: 0,
        ..LoaderConfig::default()
    };
    assert!(
        Loader::new(toy(10), Transform::default(), cfg, Device::Cpu)
            .unwrap_err()
            .to_string()
            .contains("batch_size")
    );
    let cfg = LoaderConfig {
        batch_size: 11,
        ..LoaderConfig::default()
    };
    assert!(Loader::new(toy(10), Transform::default(), cfg, Device::Cpu).is_err());
    let l = loader(64, 0, true, Transform::default());
    assert!(l.batch_at(Position { epoch: 0, batch: 4 }).is_err());
}

#[test]
fn two_loaders_feed_one_loop() {
    // the training loop pulls an augmented and a plain batch each iteration
    let aug = loader(500, 2, true, fmnist_like_transform());
    let plain = loader(
        500,
        2,
        true,
        Transform {
            pad_to: Some([32, 32]),
            ..Transform::default()
        },
    );
    let (mut a, mut p) = (
        aug.cycle_from(Position::default()),
        plain.cycle_from(Position::default()),
    );
    for _ in 0..100 {
        let (x, y) = (a.next().unwrap().unwrap(), p.next().unwrap().unwrap());
        assert_eq!(x.images.dims(), y.images.dims());
    }
    assert_eq!(a.position(), Position { epoch: 3, batch: 7 });
}
