//! SGD, SAM and ASAM steps of a WRN-10-1 against PyTorch (golden file made by
//! `crates/jem-models/tests/golden/make_golden.py`).

#[path = "../../jem-models/tests/golden/formula.rs"]
mod formula;

use candle_core::{Device, Tensor, Var};
use formula::{apply_formula, assert_close, assert_close_scaled, golden, jem_loss, max_abs};
use jem_models::{BnMode, WideResNet, WrnConfig};
use jem_optim::{Decay, Optimizer, Sam, Schedule, Sgd, SgdConfig};

fn model() -> WideResNet {
    let m = WideResNet::new(WrnConfig::reference(10, 1, 10), 0, &Device::Cpu).unwrap();
    apply_formula(&m.store);
    m
}

fn sgd() -> Sgd {
    Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        ..SgdConfig::default()
    })
}

/// One SADA-JEM optimizer iteration: pass 1 with running-stat updates, SAM first step,
/// pass 2 on the same batches with frozen running statistics, SAM second step.
fn sam_iteration(m: &WideResNet, sam: &mut Sam, base: &mut Sgd) {
    let params: Vec<(&str, &Var)> = m.store.params().collect();
    let g1 = jem_loss(m, BnMode::Train).backward().unwrap();
    sam.first_step(&params, &g1).unwrap();
    let g2 = jem_loss(m, BnMode::TrainFrozen).backward().unwrap();
    sam.second_step(&params, &g2, base).unwrap();
}

/// Compares every parameter and buffer with the golden `tag/...` values to 1e-5. The
/// updates (after - before) are compared too, so that a small update cannot hide in a large
/// weight: to 1e-4 (they are differences of rounded f32 weights) relative to the larger of
/// their own size and 10 % of the largest update of the model (an update made of weight decay
/// alone, where the gradient is zero up to rounding, has no meaningful relative error).
fn check(m: &WideResNet, tag: &str, before: &std::collections::BTreeMap<String, Tensor>) {
    let g = golden();
    let want_delta = |name: &str| (&g[&format!("{tag}/{name}")] - &before[name]).unwrap();
    let scale_of = |names: Vec<&str>| {
        names
            .iter()
            .map(|n| max_abs(&want_delta(n)))
            .fold(0.0, f64::max)
    };
    let param_scale = scale_of(m.store.params().map(|(n, _)| n).collect());
    let buffer_scale = scale_of(m.store.buffers().map(|(n, _)| n).collect());
    for (name, v) in m.store.params().chain(m.store.buffers()) {
        let scale = if name.contains("running_") {
            buffer_scale
        } else {
            param_scale
        };
        let want = &g[&format!("{tag}/{name}")];
        assert_close(&format!("{tag} {name}"), v.as_tensor(), want, 1e-5);
        let delta = (v.as_tensor() - &before[name]).unwrap();
        assert_close_scaled(
            &format!("{tag} update of {name}"),
            &delta,
            &want_delta(name),
            1e-4,
            0.1 * scale,
        );
    }
}

#[test]
fn sgd_step_matches_pytorch() {
    let m = model();
    let before = m.store.snapshot().unwrap();
    let params: Vec<(&str, &Var)> = m.store.params().collect();
    let grads = jem_loss(&m, BnMode::Train).backward().unwrap();
    sgd().step(&params, &grads).unwrap();
    check(&m, "sgd1", &before);
}

#[test]
fn sam_and_asam_iterations_match_pytorch() {
    for (tag, rho, adaptive) in [("sam1", 0.2, false), ("asam1", 2.0, true)] {
        let m = model();
        let before = m.store.snapshot().unwrap();
        sam_iteration(&m, &mut Sam::new(rho, adaptive).unwrap(), &mut sgd());
        check(&m, tag, &before);
    }
}

#[test]
fn three_sam_iterations_with_warmup_match_pytorch() {
    let m = model();
    let before = m.store.snapshot().unwrap();
    let schedule = Schedule {
        base_lr: 0.1,
        warmup_iters: 2,
        decay: Decay::Constant,
    };
    let mut base = sgd();
    let mut sam = Sam::new(0.2, false).unwrap();
    for it in 0..3 {
        base.set_lr(schedule.lr(it, 0, 100));
        sam_iteration(&m, &mut sam, &mut base);
    }
    check(&m, "sam3_warmup", &before);
}
