//! Generation on a tiny untrained WRN-10-1 (1 channel, 32x32, 3 classes) with synthetic
//! per-class Gaussians.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use jem_eval::generate::*;
use jem_metrics::npy::{NpyData, read_npy};
use jem_models::{BnMode, WideResNet};

mod common;
use common::{K, gaussians, model, sampler};

fn small() -> GenerateOptions {
    GenerateOptions {
        n_chains: 4,
        n_steps: 3,
        per_class: 2,
        cond_steps: 2,
        batch: 4,
        snapshots: vec![0, 1, 50],
        grid_images: 3,
        per_row: 2,
        seed: 5,
        ..GenerateOptions::default()
    }
}

fn values(x: &Tensor) -> Vec<f32> {
    x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Width and height from a PNG's IHDR, checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    (be(&b[16..20]), be(&b[20..24]))
}

/// Grid size of `n` 32x32 cells in rows of `per_row` (2-pixel padding, as jem-plot).
fn grid_size(n: usize, per_row: usize) -> (u32, u32) {
    let cols = per_row.min(n);
    let rows = n.div_ceil(cols);
    ((cols * 34 + 2) as u32, (rows * 34 + 2) as u32)
}

#[test]
fn writes_grids_npy_and_json() {
    let (m, g, dev) = (model(), gaussians(), Device::Cpu);
    let s = sampler(&m, Some(&g), &dev);
    let buffer = Tensor::rand(-1f32, 1f32, (5, 1, 32, 32), &dev).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen");
    let opts = GenerateOptions {
        progress: true,
        progress_every: 2,
        ..small()
    };
    let r = generate_with(&s, Some(&buffer), "ck.safetensors", 7, &opts, &out).unwrap();

    let b = r.buffer.as_ref().unwrap();
    assert_eq!((b.shown, b.buffer_size), (3, 5));
    assert_eq!(png_size(&out.join("buffer.png")), grid_size(3, 2));
    assert!(r.notes.is_empty(), "{:?}", r.notes);

    let u = r.unconditional.as_ref().unwrap();
    assert_eq!((u.chains, u.steps, u.init), (4, 3, ChainInit::Informative));
    let steps: Vec<usize> = u.trace.iter().map(|t| t.step).collect();
    assert_eq!(steps, [0, 1, 3], "snapshot 50 is past the chain's end");
    assert_eq!(png_size(&out.join("chains.png")), grid_size(3, 2));
    assert_eq!(png_size(&out.join("chains-step0.png")), grid_size(3, 2));
    assert!(out.join("chains-step1.png").exists());
    let a = read_npy(&out.join("chains.npy")).unwrap();
    assert_eq!(a.shape, [4, 1, 32, 32]);
    let NpyData::F32(v) = &a.data else {
        panic!("f32 expected")
    };
    assert!(v.iter().all(|p| (0.0..=1.0).contains(p)));
    assert!(u.trace.iter().all(|t| t.mean_log_px.is_finite()));

    // one row per class, per_class cells per row
    let c = r.conditional.as_ref().unwrap();
    assert_eq!((c.chains, c.steps), (K * 2, 2));
    assert_eq!(png_size(&out.join("conditional.png")), grid_size(K * 2, 2));
    assert_eq!(
        png_size(&out.join("conditional.png")).1,
        (K * 34 + 2) as u32
    );
    let a = read_npy(&out.join("conditional.npy")).unwrap();
    assert_eq!(a.shape, [6, 1, 32, 32]);
    assert!(a.to_f64().iter().all(|p| (0.0..=1.0).contains(p)));
    let l = read_npy(&out.join("conditional-labels.npy")).unwrap();
    assert_eq!(l.to_labels("labels", K).unwrap(), [0, 0, 1, 1, 2, 2]);
    let last = c.trace.last().unwrap();
    assert!(last.target_accuracy.is_some() && last.mean_target_logit.is_some());

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("generate.json")).unwrap()).unwrap();
    assert_eq!(json["iteration"], 7);
    assert_eq!(json["options"]["bn"], "reference");
    assert_eq!(json["conditional"]["labels_npy"], "conditional-labels.npy");
}

#[test]
fn no_buffer_is_a_note_not_a_failure() {
    let (m, dev) = (model(), Device::Cpu);
    let s = sampler(&m, None, &dev);
    let dir = tempfile::tempdir().unwrap();
    let opts = GenerateOptions {
        per_class: 0,
        ..small()
    };
    let r = generate_with(&s, None, "ck", 0, &opts, dir.path()).unwrap();
    assert!(r.buffer.is_none() && r.conditional.is_none());
    assert!(!dir.path().join("buffer.png").exists());
    assert!(
        r.notes.iter().any(|n| n.contains("no replay buffer")),
        "{:?}",
        r.notes
    );
    // no class statistics: uniform noise
    assert_eq!(r.unconditional.unwrap().init, ChainInit::Uniform);
    assert!(dir.path().join("chains.npy").exists());

    let e = buffer_grid(None, 10, 10, &dir.path().join("b.png")).unwrap_err();
    assert!(e.to_string().contains("no replay buffer"), "{e}");
    let opts = GenerateOptions {
        init: ChainInit::Informative,
        ..small()
    };
    let e = s.unconditional(&opts).unwrap_err();
    assert!(e.to_string().contains("informative"), "{e}");
}

#[test]
fn deterministic_by_seed_and_clamped() {
    let (m, g, dev) = (model(), gaussians(), Device::Cpu);
    let s = sampler(&m, Some(&g), &dev);
    let opts = small();
    let a = s.unconditional(&opts).unwrap();
    let b = s.unconditional(&opts).unwrap();
    assert_eq!(values(&a.samples), values(&b.samples));
    assert_eq!(a.samples.dims(), [4, 1, 32, 32]);
    assert!(values(&a.samples).iter().all(|v| (-1.0..=1.0).contains(v)));
    let c = s
        .unconditional(&GenerateOptions { seed: 6, ..small() })
        .unwrap();
    assert_ne!(values(&a.samples), values(&c.samples));
    // conditional chains too, with noise (drawn from the seeded generator)
    let noisy = GenerateOptions {
        noise: 0.01,
        ..small()
    };
    let x = s.conditional(&noisy).unwrap();
    let y = s.conditional(&noisy).unwrap();
    assert_eq!(values(&x.samples), values(&y.samples));
    assert!(values(&x.samples).iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn conditional_chains_start_from_their_class_and_climb_f_y() {
    let (m, g, dev) = (model(), gaussians(), Device::Cpu);
    let s = sampler(&m, Some(&g), &dev);
    let opts = GenerateOptions {
        per_class: 2,
        cond_steps: 3,
        step_size: 0.02,
        bn: SamplerBn::Eval,
        snapshots: vec![0],
        ..small()
    };
    let ch = s.conditional(&opts).unwrap();
    let labels = ch.labels.clone().unwrap();
    let (step0, x0) = &ch.snapshots[0];
    assert_eq!(*step0, 0);
    // the initial draws sit at their class's mean (-0.5, 0, 0.5; std 0.1)
    for (i, &c) in labels.iter().enumerate() {
        let mean: f32 = values(&x0.get(i).unwrap()).iter().sum::<f32>() / 1024.0;
        assert!(
            (mean - (-0.5 + 0.5 * c as f32)).abs() < 0.02,
            "chain {i}: {mean}"
        );
    }
    let before = s.summarize(x0, Some(&labels), 8).unwrap().1.unwrap();
    let after = s
        .summarize(&ch.samples, Some(&labels), 8)
        .unwrap()
        .1
        .unwrap();
    assert!(after > before, "mean f(x)[y] {before} -> {after}");

    let u = s
        .unconditional(&GenerateOptions {
            step_size: 0.02,
            bn: SamplerBn::Eval,
            ..small()
        })
        .unwrap();
    let before = s.summarize(&u.snapshots[0].1, None, 8).unwrap().0;
    let after = s.summarize(&u.samples, None, 8).unwrap().0;
    assert!(after > before, "mean log p(x) {before} -> {after}");
}

#[test]
fn sampling_leaves_the_model_alone_and_batching_is_exact_in_eval_mode() {
    let (m, g, dev) = (model(), gaussians(), Device::Cpu);
    let bits = |m: &WideResNet| -> BTreeMap<String, Vec<u32>> {
        m.store
            .snapshot()
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, values(&t).into_iter().map(f32::to_bits).collect()))
            .collect()
    };
    let before = bits(&m);
    let s = sampler(&m, Some(&g), &dev);
    s.unconditional(&GenerateOptions {
        bn: SamplerBn::Batch,
        ..small()
    })
    .unwrap();
    assert_eq!(before, bits(&m), "running statistics must not move");

    let eval = GenerateOptions {
        bn: SamplerBn::Eval,
        ..small()
    };
    let one = s.unconditional(&eval).unwrap();
    let split = s
        .unconditional(&GenerateOptions { batch: 3, ..eval })
        .unwrap();
    let (a, b) = (values(&one.samples), values(&split.samples));
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "eval-mode chains depend on the batch: {diff}");
}

#[test]
fn reference_bn_switches_after_the_first_call_and_options_are_checked() {
    assert_eq!(SamplerBn::Reference.mode_at(0), BnMode::Eval);
    assert_eq!(SamplerBn::Reference.mode_at(9), BnMode::Eval);
    assert_eq!(SamplerBn::Reference.mode_at(10), BnMode::TrainFrozen);
    assert_eq!(SamplerBn::Batch.mode_at(0), BnMode::TrainFrozen);
    assert_eq!(SamplerBn::Eval.mode_at(500), BnMode::Eval);
    let d = GenerateOptions::default();
    assert_eq!(
        (d.n_chains, d.n_steps, d.step_size, d.noise),
        (100, 1000, 1.0, 0.0)
    );
    for (opts, name) in [
        (
            GenerateOptions {
                batch: 0,
                ..small()
            },
            "batch",
        ),
        (
            GenerateOptions {
                step_size: -1.0,
                ..small()
            },
            "step_size",
        ),
        (
            GenerateOptions {
                noise: f64::NAN,
                ..small()
            },
            "noise",
        ),
        (
            GenerateOptions {
                per_row: 0,
                ..small()
            },
            "per_row",
        ),
    ] {
        let e = opts.validate().unwrap_err().to_string();
        assert!(e.contains(name), "{e}");
    }
    // class statistics of another shape are refused
    let (m, mut g, dev) = (model(), gaussians(), Device::Cpu);
    g.shape = [1, 16, 64];
    let e = sampler(&m, Some(&g), &dev)
        .unconditional(&small())
        .unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
}
