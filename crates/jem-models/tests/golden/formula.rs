//! The formulas of `make_golden.py`: weights, inputs and labels both sides compute, and a
//! loader of the golden file. Shared by the parity tests of jem-models and jem-optim.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use jem_models::{BnMode, ParamStore, WideResNet, jem};

/// Images per golden batch.
pub const B: usize = 4;

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../jem-models/tests/golden")
}

pub fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(golden_dir().join("golden.safetensors"), &Device::Cpu)
        .expect("golden file")
}

/// The formula value of every tensor named in `names` (sorted here), with its shape.
pub fn formula_state(shapes: &[(String, Vec<usize>)]) -> HashMap<String, Tensor> {
    let mut sorted: Vec<&(String, Vec<usize>)> = shapes.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = HashMap::new();
    for (k, (name, shape)) in sorted.into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let is_bn = name.contains(".bn");
        let fan_in: usize = shape.iter().skip(1).product();
        let v: Vec<f32> = (0..n)
            .map(|i| {
                let t = (0.37 * i as f64 + 1.3 * k as f64 + 0.5).sin();
                let v = if name.ends_with("running_var") {
                    1.0 + 0.5 * t * t
                } else if name.ends_with("running_mean") {
                    0.1 * t
                } else if is_bn && name.ends_with("weight") {
                    1.0 + 0.2 * t
                } else if name.ends_with("bias") {
                    0.1 * t
                } else {
                    t / (fan_in as f64).sqrt()
                };
                v as f32
            })
            .collect();
        out.insert(
            name.clone(),
            Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap(),
        );
    }
    out
}

/// Sets every parameter and buffer of `store` to its formula value.
pub fn apply_formula(store: &ParamStore) {
    let shapes: Vec<(String, Vec<usize>)> = store
        .params()
        .chain(store.buffers())
        .map(|(n, v)| (n.to_string(), v.dims().to_vec()))
        .collect();
    let extra = store
        .load_tensors(&formula_state(&shapes), "formula")
        .unwrap();
    assert!(extra.is_empty());
}

/// The input phase chosen by the script (see its docstring).
pub fn phase() -> f64 {
    static PHASE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *PHASE.get_or_init(|| golden()["meta/phase"].to_vec1::<f64>().unwrap()[0])
}

/// Golden batch `b` (0: labelled, 1: x+, 2: x-).
pub fn batch(b: usize) -> Tensor {
    batch_with_phase(b, phase())
}

/// Batch `b` of the formula with an explicit phase.
pub fn batch_with_phase(b: usize, phase: f64) -> Tensor {
    let v: Vec<f32> = (0..B * 3 * 32 * 32)
        .map(|j| (0.9 * (0.013 * j as f64 + 2.1 * b as f64 + phase).sin()) as f32)
        .collect();
    Tensor::from_vec(v, (B, 3, 32, 32), &Device::Cpu).unwrap()
}

/// Golden labels.
#[allow(dead_code)]
pub fn labels() -> Tensor {
    Tensor::from_vec(
        (0..B as u32)
            .map(|n| (3 * n + 1) % 10)
            .collect::<Vec<u32>>(),
        B,
        &Device::Cpu,
    )
    .unwrap()
}

/// Asserts `max |a - b| <= tol * max |b|`, naming the tensor.
#[allow(dead_code)]
pub fn assert_close(name: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_close_scaled(name, a, b, tol, 0.0)
}

/// Largest magnitude of a tensor.
#[allow(dead_code)]
pub fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// The values of `t` as a flat `f64` vector.
fn flat_f64(t: &Tensor) -> Vec<f64> {
    t.to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// Asserts `max |a - b| <= tol * max(max |b|, floor)`: `floor` is the scale of a family of
/// tensors (such as all gradients of a model), for members that are zero up to rounding.
pub fn assert_close_scaled(name: &str, a: &Tensor, b: &Tensor, tol: f64, floor: f64) {
    assert_eq!(a.dims(), b.dims(), "{name}: shapes");
    let (a, b) = (flat_f64(a), flat_f64(b));
    let scale = b
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(floor)
        .max(1e-30);
    let err = a
        .iter()
        .zip(&b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= tol * scale,
        "{name}: max |diff| {err:.3e} > {tol:.0e} x max |ref| {scale:.3e}"
    );
}

/// The JEM loss in the reference's order: `f(x+)`, `f(x-)`, then the labelled batch;
/// `-(mean LSE(x+) - mean LSE(x-)) + CE`.
#[allow(dead_code)]
pub fn jem_loss(m: &WideResNet, mode: BnMode) -> Tensor {
    let mean_lse = |b: usize| {
        jem::log_density(&m.logits(&batch(b), mode).unwrap())
            .unwrap()
            .mean_all()
            .unwrap()
    };
    let (fp, fq) = (mean_lse(1), mean_lse(2));
    let ce = jem::cross_entropy(&m.logits(&batch(0), mode).unwrap(), &labels()).unwrap();
    ((fq - fp).unwrap() + ce).unwrap()
}
