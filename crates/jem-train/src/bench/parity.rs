//! Parity of two devices (say the CPU and a GPU) on the same computations: a WRN forward /
//! backward and one full SADA-JEM iteration, from the same initial weights, batches and
//! replay buffer.
//!
//! Errors are measured per tensor as the largest absolute difference `max |a - r|` and that
//! difference relative to the reference tensor's scale, `max |a - r| / s` with
//! `s = max(max |r|, 1e-3 * S)`, where `S` is the largest `max |r|` of the group (the
//! parameter gradients, say). The floor keeps tensors that are zero up to rounding (the
//! gradient of a convolution bias that a train-mode BatchNorm follows) from dividing noise
//! by noise. A group passes when its worst relative error is at most the tolerance. After an
//! iteration the **updates** `w_after - w_before` are compared, not the weights, which would
//! hide the update's error behind the weight's size.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use jem_data::rng::rng_for;
use jem_models::{BnMode, WideResNet, jem};
use jem_sampler::{InitKind, ReplayBuffer, Sgld};
use serde::{Deserialize, Serialize};

use super::{BenchConfig, LOSS, labels, sam_sgd, uniform_images};
use crate::Result;
use crate::step::{StepBatch, finish, first_pass};

/// Sizes and tolerance of a parity check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParityConfig {
    /// Model and batch sizes (`iters` and `warmup` are not used).
    pub sizes: BenchConfig,
    /// Largest relative error that passes (see the module documentation).
    pub tol: f64,
}

/// The errors of one group of tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// What was compared (`fwd_bwd.logits`, `iteration.param_updates`, ...).
    pub check: String,
    /// Number of tensors in the group.
    pub tensors: usize,
    /// Largest absolute difference over the group.
    pub max_abs: f64,
    /// Largest relative difference over the group.
    pub max_rel: f64,
    /// The tensor with the largest relative difference.
    pub worst: String,
    /// The tolerance on `max_rel`.
    pub tol: f64,
    /// `max_rel <= tol` (and every value finite).
    pub pass: bool,
}

/// All comparisons of a parity check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParityReport {
    /// The reference device (`cpu`).
    pub reference: String,
    /// The device checked against it.
    pub device: String,
    /// The sizes and tolerance.
    pub config: ParityConfig,
    /// One entry per group.
    pub checks: Vec<Comparison>,
    /// Every group passed.
    pub pass: bool,
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Compares tensors by name: `test[name]` against `reference[name]`.
fn compare(
    check: &str,
    test: &BTreeMap<String, Tensor>,
    reference: &BTreeMap<String, Tensor>,
    tol: f64,
) -> Result<Comparison> {
    let mut pairs = Vec::new();
    for (name, r) in reference {
        let t = test.get(name).ok_or_else(|| {
            crate::TrainError::Config(format!("parity {check}: `{name}` missing on one side"))
        })?;
        pairs.push((name.as_str(), host(t)?, host(r)?));
    }
    let group_scale = pairs.iter().fold(0.0f64, |m, (_, _, r)| m.max(max_abs(r)));
    let mut out = Comparison {
        check: check.to_string(),
        tensors: pairs.len(),
        max_abs: 0.0,
        max_rel: 0.0,
        worst: String::new(),
        tol,
        pass: true,
    };
    for (name, t, r) in &pairs {
        let mut abs = 0.0f64;
        for (a, b) in t.iter().zip(r) {
            let d = (a - b).abs();
            // a NaN on either side must fail, not vanish in `max`
            abs = if d.is_nan() {
                f64::INFINITY
            } else {
                abs.max(d)
            };
        }
        let scale = max_abs(r).max(1e-3 * group_scale);
        let rel = if scale > 0.0 { abs / scale } else { abs };
        out.max_abs = out.max_abs.max(abs);
        if rel > out.max_rel || out.worst.is_empty() {
            out.max_rel = out.max_rel.max(rel);
            out.worst = name.to_string();
        }
    }
    out.pass = out.max_rel.is_finite() && out.max_rel <= tol;
    Ok(out)
}

fn one(name: &str, t: Tensor) -> BTreeMap<String, Tensor> {
    BTreeMap::from([(name.to_string(), t)])
}

/// Logits, parameter gradients and input gradient of `CE(f(x), y) + mean LSE(f(x))` in
/// train mode.
fn forward_backward(cfg: &BenchConfig, device: &Device) -> Result<[BTreeMap<String, Tensor>; 3]> {
    let model = WideResNet::new(cfg.model(), cfg.seed, device)?;
    let mut rng = rng_for(&[cfg.seed, 0xfb]);
    let x = Var::from_tensor(&uniform_images(cfg.batch_lab, &mut rng, device)?)?;
    let y = labels(cfg.batch_lab, cfg.classes, device)?;
    let logits = model.logits(x.as_tensor(), BnMode::Train)?;
    let loss = (jem::cross_entropy(&logits, &y)? + jem::log_density(&logits)?.mean_all()?)?;
    let grads = loss.backward()?;
    let missing = |n: &str| crate::TrainError::Config(format!("parity: no gradient for `{n}`"));
    let mut param_grads = BTreeMap::new();
    for (name, v) in model.store.params() {
        let g = grads.get(v.as_tensor()).ok_or_else(|| missing(name))?;
        param_grads.insert(name.to_string(), g.clone());
    }
    let gx = grads.get(x.as_tensor()).ok_or_else(|| missing("input"))?;
    Ok([
        one("logits", logits.detach()),
        param_grads,
        one("input", gx.clone()),
    ])
}

/// One SADA-JEM iteration: the losses of both passes, the negatives, and the change of every
/// parameter and BatchNorm buffer.
fn iteration(cfg: &BenchConfig, device: &Device) -> Result<[BTreeMap<String, Tensor>; 3]> {
    let model = WideResNet::new(cfg.model(), cfg.seed, device)?;
    let before = model.store.snapshot()?;
    // the buffer and the batches are drawn on the CPU from the same seeds on both sides
    let mut rng = rng_for(&[cfg.seed, 0x17e4]);
    let cpu = super::uniform_buffer(cfg, &mut rng, &Device::Cpu)?;
    let buffer = ReplayBuffer::from_tensor(cpu.data().to_device(device)?, InitKind::Uniform, 0.05)?;
    let x_pos = uniform_images(cfg.batch_px, &mut rng, device)?;
    let x_lab = uniform_images(cfg.batch_lab, &mut rng, device)?;
    let y_lab = labels(cfg.batch_lab, cfg.classes, device)?;
    let (_, start) = buffer.sample(cfg.batch_px, None, &mut rng)?;
    let batch = StepBatch {
        x_pos: Some(x_pos),
        x_start: Some(start),
        x_lab,
        y_lab,
    };
    let sgld = Sgld::reference(cfg.sgld_steps);
    let mut opt = sam_sgd(cfg.rho)?;
    let first = first_pass(&model, &batch, Some(&sgld), &mut rng, &LOSS)?;
    let second = finish(&model, &first, &batch, &LOSS, &mut opt)?;
    let scalar = |v: f64| Tensor::new(&[v], device);
    let mut losses = one("first_pass", scalar(first.stats.loss)?);
    if let Some(s) = second {
        losses.insert("second_pass".into(), scalar(s.loss)?);
    }
    let x_neg = first
        .x_neg
        .ok_or_else(|| crate::TrainError::Config("parity: no negatives".into()))?;
    let after = model.store.snapshot()?;
    let mut updates = BTreeMap::new();
    for (name, b) in &before {
        updates.insert(name.clone(), (&after[name] - b)?);
    }
    Ok([losses, one("x_neg", x_neg), updates])
}

/// Runs the computations on `reference` and on `device` and compares them.
pub fn parity(cfg: &ParityConfig, reference: &Device, device: &Device) -> Result<ParityReport> {
    let sizes = &cfg.sizes;
    let fb_ref = forward_backward(sizes, reference)?;
    let fb = forward_backward(sizes, device)?;
    let it_ref = iteration(sizes, reference)?;
    let it = iteration(sizes, device)?;
    let names = [
        "fwd_bwd.logits",
        "fwd_bwd.param_grads",
        "fwd_bwd.input_grad",
        "iteration.loss",
        "iteration.x_neg",
        "iteration.updates",
    ];
    let mut checks = Vec::new();
    for (i, (t, r)) in fb
        .iter()
        .chain(&it)
        .zip(fb_ref.iter().chain(&it_ref))
        .enumerate()
    {
        checks.push(compare(names[i], t, r, cfg.tol)?);
    }
    let pass = checks.iter().all(|c| c.pass);
    Ok(ParityReport {
        reference: format!("{reference:?}"),
        device: format!("{device:?}"),
        config: cfg.clone(),
        checks,
        pass,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_uses_the_group_floor() {
        let r = BTreeMap::from([
            (
                "big".to_string(),
                Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap(),
            ),
            (
                "tiny".to_string(),
                Tensor::new(&[1e-9f32, 0.0], &Device::Cpu).unwrap(),
            ),
        ]);
        let t = BTreeMap::from([
            (
                "big".to_string(),
                Tensor::new(&[1.0f32, -2.002], &Device::Cpu).unwrap(),
            ),
            (
                "tiny".to_string(),
                Tensor::new(&[2e-9f32, 0.0], &Device::Cpu).unwrap(),
            ),
        ]);
        let c = compare("g", &t, &r, 2e-3).unwrap();
        assert_eq!(c.worst, "big");
        assert!((c.max_rel - 1e-3).abs() < 1e-6, "{c:?}");
        assert!(c.pass);
        let nan = BTreeMap::from([
            (
                "big".to_string(),
                Tensor::new(&[f32::NAN, -2.0], &Device::Cpu).unwrap(),
            ),
            (
                "tiny".to_string(),
                Tensor::new(&[0f32, 0.0], &Device::Cpu).unwrap(),
            ),
        ]);
        assert!(!compare("g", &nan, &r, 1.0).unwrap().pass);
    }

    #[test]
    fn cpu_against_cpu_is_exact() {
        let cfg = ParityConfig {
            sizes: BenchConfig {
                depth: 10,
                width: 1,
                batch_px: 2,
                batch_lab: 4,
                sgld_steps: 1,
                buffer_size: 8,
                ..BenchConfig::default()
            },
            tol: 0.0,
        };
        let rep = parity(&cfg, &Device::Cpu, &Device::Cpu).unwrap();
        assert_eq!(rep.checks.len(), 6);
        assert!(rep.pass, "{rep:?}");
    }
}
