//! OOD detection (reference 6.5): the test split is the positive class, each OOD set the
//! negative one; scores log p(x) = LSE(f(x)), max p(y|x) and the input-gradient norm
//! `-||d LSE(f(x)) / dx||`; AUROC (with AUPR and FPR at 95 % TPR) per set and score, as the
//! paper's Table 3, and histograms of log p(x) as its Table 4.

use std::path::Path;
use std::sync::Arc;

use candle_core::{D, DType};
use jem_data::derived::{INTERP_BATCH, seeded_interp_pairs};
use jem_data::{DatasetName, ImageSet, LoadOptions};
use jem_metrics::ood::{OodReport, ood_report};
use jem_models::BnMode;
use jem_models::jem::{input_gradient, log_density};
use jem_plot::save_histograms;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::output::{plot_err, write_json};
use crate::{EvalError, EvalSession, Result};

/// The OOD scores of one set of images (higher = more in-distribution).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// `LSE(f(x))`, the unnormalized log p(x).
    pub px: Vec<f64>,
    /// `max_y p(y|x)`.
    pub py: Vec<f64>,
    /// `-||grad_x LSE(f(x))||_2` per image (empty when not computed).
    pub pxgrad: Vec<f64>,
}

/// How to score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodOptions {
    /// Images per forward pass.
    pub batch: usize,
    /// Compute the input-gradient score (one backward pass per batch).
    pub pxgrad: bool,
    /// The reference's `pxgrad` bug: differentiate only the FIRST image's LSE of each batch
    /// (`f(x)[0]`), so the other images' gradients are 0 (kept only for comparison).
    pub pxgrad_reference_bug: bool,
    /// Seed of the synthetic sets (noise, constants, interpolations).
    pub seed: u64,
    /// At most this many images per OOD set (all when `None`).
    pub max_images: Option<usize>,
}

impl Default for OodOptions {
    fn default() -> Self {
        Self {
            batch: 100,
            pxgrad: true,
            pxgrad_reference_bug: false,
            seed: 1,
            max_images: None,
        }
    }
}

/// The detection numbers of one OOD set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodSetResult {
    /// Set name.
    pub name: String,
    /// Its images.
    pub n: usize,
    /// With score log p(x).
    pub px: OodReport,
    /// With score max p(y|x).
    pub py: OodReport,
    /// With the input-gradient score, when computed.
    pub pxgrad: Option<OodReport>,
}

/// `jem eval ood`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodResult {
    /// The checkpoint.
    pub checkpoint: String,
    /// In-distribution images (the test split).
    pub n_in: usize,
    /// One row per OOD set.
    pub sets: Vec<OodSetResult>,
    /// The options used.
    pub options: OodOptions,
}

/// The paper's OOD sets for a model trained on `dataset`.
pub fn default_ood_sets(dataset: DatasetName) -> Vec<String> {
    let v: &[&str] = match dataset {
        DatasetName::FashionMnist => &["mnist", "uniform", "constant"],
        DatasetName::FashionMnistQuick => &["mnist-quick", "uniform", "constant"],
        DatasetName::Mnist | DatasetName::MnistQuick => &["uniform", "constant"],
        DatasetName::Cifar10 => &["svhn", "cifar100", "celeba", "cifar10-interp"],
        DatasetName::Cifar100 => &["svhn", "cifar10", "celeba", "cifar100-interp"],
        DatasetName::Svhn | DatasetName::Celeba => &["uniform", "constant"],
    };
    v.iter().map(|s| s.to_string()).collect()
}

/// The images of an OOD set: `first`, or with `second` the pixel-wise mean of the pairs
/// `(first[i], second[i])`, taken in model space (after normalization, as the reference mixes
/// its normalized tensors, so no pixel is rounded).
pub struct OodImages {
    /// The images, or the first image of each pair.
    pub first: ImageSet,
    /// The second image of each pair.
    pub second: Option<ImageSet>,
}

impl OodImages {
    /// Images (or pairs) in the set.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// The first `max` images (or pairs).
    pub fn truncate(self, max: usize) -> Self {
        if max >= self.len() {
            return self;
        }
        let keep: Vec<usize> = (0..max).collect();
        Self {
            first: self.first.subset(&keep),
            second: self.second.map(|s| s.subset(&keep)),
        }
    }
}

/// The images of an OOD set by name: a data set's test split (`mnist`, `svhn`, ...), or a
/// synthetic set of the in-distribution test split's shape and size: `uniform` (uniform
/// pixel noise), `constant` (one random colour per image) or `<dataset>-interp` (the
/// reference's CIFAR10-interp over the test split, see [`interp_images`]).
pub fn ood_images(s: &EvalSession, name: &str, data_dir: &Path, seed: u64) -> Result<OodImages> {
    let test = &s.data.test;
    let shape = test.shape;
    let per = test.image_len();
    let n = test.len();
    let mut rng = jem_data::rng::rng_for(&[seed, 0x00d]);
    let one = |first| {
        Ok(OodImages {
            first,
            second: None,
        })
    };
    match name {
        "uniform" => {
            let px: Vec<u8> = (0..n * per).map(|_| rng.random::<u8>()).collect();
            one(ImageSet::new(px, vec![0; n], shape, 1, "uniform noise")?)
        }
        "constant" => {
            let hw = shape[1] * shape[2];
            let mut px = Vec::with_capacity(n * per);
            for _ in 0..n {
                for _ in 0..shape[0] {
                    let v: u8 = rng.random();
                    px.extend(std::iter::repeat_n(v, hw));
                }
            }
            one(ImageSet::new(px, vec![0; n], shape, 1, "constant images")?)
        }
        interp if interp.ends_with("-interp") => interp_images(test, seed),
        other => {
            let d: DatasetName = other.parse()?;
            let set = d.load("test", data_dir, &LoadOptions::default())?;
            if set.shape != shape {
                return Err(EvalError::Invalid(format!(
                    "OOD set {other}: images are {:?}, the model's test images {:?}",
                    set.shape, shape
                )));
            }
            one(set)
        }
    }
}

/// The reference's CIFAR10-interp over `test`: the pairs of
/// [`jem_data::derived::seeded_interp_pairs`] (the test split shuffled with `seed` in batches
/// of [`INTERP_BATCH`], each image of a batch paired with the image at the same position of
/// the previous batch, the first batch giving none), kept as pairs because u8 images cannot
/// hold their means; [`score_set`] averages them in model space.
pub fn interp_images(test: &ImageSet, seed: u64) -> Result<OodImages> {
    let pairs = seeded_interp_pairs(test.len(), INTERP_BATCH, seed)?;
    let (first, second): (Vec<usize>, Vec<usize>) = pairs.into_iter().unzip();
    Ok(OodImages {
        first: test.subset(&first),
        second: Some(test.subset(&second)),
    })
}

/// Scores every image of `set`.
pub fn score(s: &EvalSession, set: Arc<ImageSet>, opts: &OodOptions) -> Result<Scores> {
    score_set(
        s,
        OodImages {
            first: Arc::unwrap_or_clone(set),
            second: None,
        },
        opts,
    )
}

/// Scores every image (or mixed pair) of `set`.
pub fn score_set(s: &EvalSession, set: OodImages, opts: &OodOptions) -> Result<Scores> {
    score_set_named(s, "", set, opts)
}

/// [`score_set`], its progress labelled with the set's `name`.
fn score_set_named(
    s: &EvalSession,
    name: &str,
    set: OodImages,
    opts: &OodOptions,
) -> Result<Scores> {
    let label = if name.is_empty() {
        "ood scores".to_string()
    } else {
        format!("ood scores {name}")
    };
    let progress = s.progress(&label, set.len() as u64, "images");
    let loader = |images: ImageSet| {
        s.data
            .eval_loader(Arc::new(images), opts.batch, &s.device)
            .map_err(EvalError::Train)
    };
    let first = loader(set.first)?;
    let second = set.second.map(loader).transpose()?;
    let mut partner = second.as_ref().map(|l| l.epoch(0));
    let mut out = Scores::default();
    let to_vec = |t: &candle_core::Tensor| -> Result<Vec<f64>> {
        Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
    };
    for b in first.epoch(0) {
        let mut b = b?;
        if let Some(p) = partner.as_mut() {
            let other = p
                .next()
                .ok_or_else(|| EvalError::Invalid("interpolation pairs out of step".into()))??;
            b.images = ((&b.images + &other.images)? * 0.5)?;
        }
        let logits = s.model.logits(&b.images, BnMode::Eval)?.detach();
        let lse = log_density(&logits)?;
        let py = logits
            .broadcast_sub(&lse.unsqueeze(1)?)?
            .exp()?
            .max(D::Minus1)?;
        out.px.extend(to_vec(&lse)?);
        out.py.extend(to_vec(&py)?);
        if opts.pxgrad {
            let g = if opts.pxgrad_reference_bug {
                let first = b.images.narrow(0, 0, 1)?;
                let (g0, _) = input_gradient(&s.model, &first, BnMode::Eval)?;
                let rest = b.images.dim(0)? - 1;
                if rest > 0 {
                    let zeros = b.images.narrow(0, 1, rest)?.zeros_like()?;
                    candle_core::Tensor::cat(&[&g0, &zeros], 0)?
                } else {
                    g0
                }
            } else {
                // eval-mode BatchNorm: the images are independent, so the gradient of the
                // batch's summed LSE holds each image's own gradient
                input_gradient(&s.model, &b.images, BnMode::Eval)?.0
            };
            let norm = g.sqr()?.flatten_from(1)?.sum(1)?.sqrt()?;
            out.pxgrad.extend(to_vec(&norm)?.into_iter().map(|v| -v));
        }
        progress.inc(b.labels.dim(0)? as u64);
    }
    progress.finish();
    Ok(out)
}

/// Detection of every set in `sets` against the test split; writes `out/ood.json` and
/// `out/ood-hist-<set>.png` (log p(x) of the test split against the set).
pub fn ood(
    s: &EvalSession,
    sets: &[String],
    data_dir: &Path,
    opts: &OodOptions,
    out: &Path,
) -> Result<OodResult> {
    if sets.is_empty() {
        return Err(EvalError::Invalid("no OOD set given".into()));
    }
    let test = OodImages {
        first: Arc::unwrap_or_clone(s.data.test.clone()),
        second: None,
    };
    let inn = score_set_named(s, "test", test, opts)?;
    crate::output::ensure_dir(out)?;
    let mut rows = Vec::new();
    for name in sets {
        let mut set = ood_images(s, name, data_dir, opts.seed)?;
        if let Some(max) = opts.max_images {
            set = set.truncate(max);
        }
        let o = score_set_named(s, name, set, opts)?;
        let report = |a: &[f64], b: &[f64]| ood_report(a, b).map_err(EvalError::Metric);
        rows.push(OodSetResult {
            name: name.clone(),
            n: o.px.len(),
            px: report(&inn.px, &o.px)?,
            py: report(&inn.py, &o.py)?,
            pxgrad: if opts.pxgrad {
                Some(report(&inn.pxgrad, &o.pxgrad)?)
            } else {
                None
            },
        });
        let file = out.join(format!("ood-hist-{name}.png"));
        let title = format!("log p(x): test vs {name}");
        save_histograms(
            &file,
            &title,
            "log p(x)",
            &[("test", &inn.px), (name, &o.px)],
            100,
        )
        .map_err(plot_err)?;
    }
    let result = OodResult {
        checkpoint: s.checkpoint.display().to_string(),
        n_in: inn.px.len(),
        sets: rows,
        options: *opts,
    };
    write_json(out, "ood.json", &result)?;
    Ok(result)
}
