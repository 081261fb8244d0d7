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
//!
//! Gradients of a network with (leaky) ReLUs are discontinuous where a pre-activation
//! crosses zero, so two implementations whose forward passes agree to 1e-6 still disagree on
//! the few units that rounding moved across a kink, and the gradients of the layers below
//! carry that on: on the CPU, the f32 kernels against candle's own operations (the path a
//! GPU takes) differ by 2e-2 of the largest element in WRN-16-4's gradients, and the kernels
//! against themselves, with the images moved by 1e-6, by 1e-2. So each check also runs the
//! reference on images perturbed by [`FLOOR_PERTURBATION`] ([`FLOOR_PERTURBATION_TF32`] for
//! TF32; the **floor**: how far rounding alone moves the result), and a group passes when
//! its worst relative error is at most the tolerance, or when its relative L2 error
//! (`||a - r|| / ||r||`, floored as above) is at most [`FLOOR_FACTOR`] times the floor's.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use jem_data::rng::rng_for;
use jem_models::{BnMode, WideResNet, jem};
use jem_sampler::{InitKind, ReplayBuffer, Sgld};
use serde::{Deserialize, Serialize};

use super::{BenchConfig, LOSS, labels, sam_sgd, uniform_images};
use crate::Result;
use crate::step::{StepBatch, finish, first_pass};

/// Size of the perturbation of the images (in [-1, 1]) in the floor run for f32: chosen so
/// that the floor's logits move about as far as two f32 implementations' differ (relative L2
/// 3.5e-6 against 2.6e-6 for the H200 and the CPU on WRN-16-4).
pub const FLOOR_PERTURBATION: f64 = 1e-6;

/// The same for TF32 products (10-bit mantissas), chosen from how far the H200's TF32
/// logits differ from the CPU's (`BENCHMARKS.md`, the first GPU numbers).
pub const FLOOR_PERTURBATION_TF32: f64 = 2e-4;

/// A group whose relative L2 error is at most this many times the floor's passes.
pub const FLOOR_FACTOR: f64 = 5.0;

/// Sizes and tolerance of a parity check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParityConfig {
    /// Model and batch sizes (`iters` and `warmup` are not used).
    pub sizes: BenchConfig,
    /// Largest relative error that passes (see the module documentation).
    pub tol: f64,
    /// The checked side runs with [`jem_kernels::set_portable`] on: candle's own operations
    /// instead of the CPU kernels, as on a GPU (with `--device cpu`, the GPU's computation
    /// checked on the CPU).
    #[serde(default)]
    pub portable: bool,
    /// Size of the floor run's perturbation ([`FLOOR_PERTURBATION`] for f32).
    #[serde(default = "default_floor")]
    pub floor: f64,
}

fn default_floor() -> f64 {
    FLOOR_PERTURBATION
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
    /// Largest relative difference in the L2 norm over the group's tensors,
    /// `||a - r|| / max(||r||, 1e-3 * S2)` (`S2` the largest `||r||` of the group).
    #[serde(default)]
    pub rel_l2: f64,
    /// Elements whose difference exceeds the tolerance times their tensor's scale, over the
    /// group (a few, with a small `rel_l2`: rounding that flipped activations near a kink).
    #[serde(default)]
    pub outliers: usize,
    /// Elements compared.
    #[serde(default)]
    pub elements: usize,
    /// `rel_l2` of the reference against itself on perturbed images (see the module docs).
    #[serde(default)]
    pub floor_l2: f64,
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
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let group_norm = pairs.iter().fold(0.0f64, |m, (_, _, r)| m.max(norm(r)));
    let mut out = Comparison {
        check: check.to_string(),
        tensors: pairs.len(),
        max_abs: 0.0,
        max_rel: 0.0,
        worst: String::new(),
        rel_l2: 0.0,
        outliers: 0,
        elements: 0,
        floor_l2: 0.0,
        tol,
        pass: true,
    };
    for (name, t, r) in &pairs {
        let diff: Vec<f64> = t.iter().zip(r).map(|(a, b)| a - b).collect();
        // a NaN on either side must fail, not vanish in `max`
        let abs = diff.iter().fold(0.0f64, |m, d| {
            if d.is_nan() {
                f64::INFINITY
            } else {
                m.max(d.abs())
            }
        });
        let scale = max_abs(r).max(1e-3 * group_scale);
        let rel = if scale > 0.0 { abs / scale } else { abs };
        let l2_scale = norm(r).max(1e-3 * group_norm);
        let l2 = norm(&diff);
        out.rel_l2 = out
            .rel_l2
            .max(if l2_scale > 0.0 { l2 / l2_scale } else { l2 });
        // NaN counts as an outlier
        out.outliers += diff
            .iter()
            .filter(|d| d.is_nan() || d.abs() > tol * scale)
            .count();
        out.elements += diff.len();
        out.max_abs = out.max_abs.max(abs);
        if rel > out.max_rel || out.worst.is_empty() {
            out.max_rel = out.max_rel.max(rel);
            out.worst = name.to_string();
        }
    }
    out.pass = out.max_rel.is_finite() && out.max_rel <= tol;
    Ok(out)
}

/// `x + eps * u` with `u` uniform in [-1, 1] drawn from `rng` (`x` itself for `eps = 0`).
fn perturbed(x: Tensor, eps: f64, rng: &mut jem_data::rng::ChaCha8Rng) -> Result<Tensor> {
    if eps == 0.0 {
        return Ok(x);
    }
    let u = uniform_images(x.dim(0)?, rng, x.device())?.reshape(x.shape())?;
    Ok((&x + (u * eps)?)?)
}

fn one(name: &str, t: Tensor) -> BTreeMap<String, Tensor> {
    BTreeMap::from([(name.to_string(), t)])
}

/// Logits, parameter gradients and input gradient of `CE(f(x), y) + mean LSE(f(x))` in
/// train mode.
fn forward_backward(
    cfg: &BenchConfig,
    device: &Device,
    eps: f64,
) -> Result<[BTreeMap<String, Tensor>; 3]> {
    let model = WideResNet::new(cfg.model(), cfg.seed, device)?;
    let mut rng = rng_for(&[cfg.seed, 0xfb]);
    let x = uniform_images(cfg.batch_lab, &mut rng, device)?;
    let x = Var::from_tensor(&perturbed(x, eps, &mut rng_for(&[cfg.seed, 0xf1]))?)?;
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
fn iteration(
    cfg: &BenchConfig,
    device: &Device,
    eps: f64,
) -> Result<[BTreeMap<String, Tensor>; 3]> {
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
    let mut noise = rng_for(&[cfg.seed, 0xf2]);
    let batch = StepBatch {
        x_pos: Some(perturbed(x_pos, eps, &mut noise)?),
        x_start: Some(perturbed(start, eps, &mut noise)?),
        x_lab: perturbed(x_lab, eps, &mut noise)?,
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

/// A group passes when its worst relative error is within the tolerance, or its relative L2
/// error within [`FLOOR_FACTOR`] times the floor's (see the module docs); never with a NaN.
fn verdict(c: &Comparison) -> bool {
    c.max_rel.is_finite()
        && c.rel_l2.is_finite()
        && (c.max_rel <= c.tol || c.rel_l2 <= FLOOR_FACTOR * c.floor_l2)
}

/// Runs the computations on `reference` and on `device` and compares them.
pub fn parity(cfg: &ParityConfig, reference: &Device, device: &Device) -> Result<ParityReport> {
    let sizes = &cfg.sizes;
    let fb_ref = forward_backward(sizes, reference, 0.0)?;
    let it_ref = iteration(sizes, reference, 0.0)?;
    let fb_floor = forward_backward(sizes, reference, cfg.floor)?;
    let it_floor = iteration(sizes, reference, cfg.floor)?;
    let was = jem_kernels::portable();
    jem_kernels::set_portable(cfg.portable);
    let checked = forward_backward(sizes, device, 0.0)
        .and_then(|fb| Ok((fb, iteration(sizes, device, 0.0)?)));
    jem_kernels::set_portable(was);
    let (fb, it) = checked?;
    let names = [
        "fwd_bwd.logits",
        "fwd_bwd.param_grads",
        "fwd_bwd.input_grad",
        "iteration.loss",
        "iteration.x_neg",
        "iteration.updates",
    ];
    let mut checks = Vec::new();
    let references = fb_ref.iter().chain(&it_ref);
    let floors = fb_floor.iter().chain(&it_floor);
    for (i, ((t, r), f)) in fb.iter().chain(&it).zip(references).zip(floors).enumerate() {
        let mut c = compare(names[i], t, r, cfg.tol)?;
        c.floor_l2 = compare(names[i], f, r, cfg.tol)?.rel_l2;
        c.pass = verdict(&c);
        checks.push(c);
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
            portable: false,
            floor: FLOOR_PERTURBATION,
        };
        let rep = parity(&cfg, &Device::Cpu, &Device::Cpu).unwrap();
        assert_eq!(rep.checks.len(), 6);
        assert!(rep.pass, "{rep:?}");
        for c in &rep.checks {
            assert_eq!((c.max_rel, c.rel_l2, c.outliers), (0.0, 0.0, 0), "{c:?}");
            assert!(c.floor_l2 > 0.0 || c.check == "iteration.loss", "{c:?}");
        }
    }

    #[test]
    fn the_floor_passes_rounding_flips_only() {
        let c = |max_rel: f64, rel_l2: f64, floor_l2: f64| Comparison {
            check: "g".into(),
            tensors: 1,
            max_abs: max_rel,
            max_rel,
            worst: "w".into(),
            rel_l2,
            outliers: 0,
            elements: 1,
            floor_l2,
            tol: 1e-3,
            pass: false,
        };
        // within the tolerance
        assert!(verdict(&c(1e-3, 1e-3, 0.0)));
        // beyond it, but no further than rounding moves the reference itself
        assert!(verdict(&c(2e-2, 2e-3, 6e-3)));
        assert!(verdict(&c(2e-2, 5e-3, 1e-3)));
        // further than that: a real difference
        assert!(!verdict(&c(2e-2, 5.1e-3, 1e-3)));
        assert!(!verdict(&c(0.3, 0.25, 0.0)));
        assert!(!verdict(&c(f64::NAN, 0.0, 1.0)));
        assert!(!verdict(&c(0.0, f64::INFINITY, 1.0)));
    }
}
