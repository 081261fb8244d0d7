//! Sample quality (reference 6.2): the Inception Score and FID of the checkpoint's replay
//! buffer (or of saved samples) after the reference's selection by classifier confidence, FID
//! against the real data's Inception statistics, computed once and cached per data set.
//! Beside the reference's buffer protocol, [`SampleSource::Chains`] scores fresh chains of
//! the reference's eval-time sampler ([`fresh_chains`]); every result names its
//! [`protocol`].

mod source;
mod timing;

pub use source::*;
pub use timing::QualitySeconds;
use timing::timed;

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use jem_data::DatasetName;
use jem_data::download::{Checksum, file_digest};
use jem_metrics::fid::{FidReport, GaussianStats, frechet_distance};
use jem_metrics::inception::{
    FID_WEIGHTS_FILE, FID_WEIGHTS_SHA256, FidInception, InceptionFeatures,
};
use jem_metrics::inception_score::{InceptionScore, inception_score_from_logits, reference_splits};
use jem_metrics::stats_io::{load_stats, save_stats};
use jem_models::BnMode;
use serde::{Deserialize, Serialize};

use crate::generate::ChainInit;
use crate::output::write_json;
use crate::{EvalError, EvalSession, Result};

/// The Inception weight file: `explicit`, else `<data_dir>/inception/<pytorch-fid's name>`,
/// else pytorch-fid's own download in torch hub's cache; an error that says how to get it
/// when it is missing.
pub fn inception_weights(explicit: Option<&Path>, data_dir: &Path) -> Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => jem_metrics::inception::find_fid_weights(data_dir)
            .unwrap_or_else(|| data_dir.join("inception").join(FID_WEIGHTS_FILE)),
    };
    if !path.exists() {
        return Err(EvalError::Invalid(format!(
            "Inception weights {} not found: run `jem data fetch inception` (or pass --weights); \
             no FID or IS is computed without them",
            path.display()
        )));
    }
    Ok(path)
}

/// Where [`dataset_stats`] caches the statistics of `dataset`'s `splits` (of its first
/// `max_images` images) under the Inception weights `weights`:
/// `cache_dir/fid-stats/<dataset>-<split+split>[-first<N>]-<weights file stem>.safetensors`.
pub fn stats_cache_file(
    cache_dir: &Path,
    dataset: DatasetName,
    splits: &str,
    max_images: Option<usize>,
    weights: &Path,
) -> PathBuf {
    let stem = weights
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "weights".into());
    cache_dir.join("fid-stats").join(format!(
        "{dataset}-{}{}-{stem}.safetensors",
        splits.replace(',', "+"),
        max_images.map(|n| format!("-first{n}")).unwrap_or_default()
    ))
}

/// Which real images [`dataset_stats`] describes and where their statistics are kept.
#[derive(Clone, Debug)]
pub struct RealImages<'a> {
    /// The data set.
    pub dataset: DatasetName,
    /// Its splits, comma-separated (`train,test`: the reference's 60,000 CIFAR-10 images).
    pub splits: &'a str,
    /// Only the first images of the splits.
    pub max_images: Option<usize>,
    /// Where the data set's files are.
    pub data_dir: &'a Path,
    /// Where statistics are cached (`fid-stats/`).
    pub cache_dir: &'a Path,
    /// A file to write instead of the cache's.
    pub out: Option<PathBuf>,
}

/// Statistics of `real`: read from the cache (or `real.out`) when present, else computed
/// with `net` (`batch` images at a time) and written there. Returns the file, the statistics
/// and whether they came from the file.
pub fn dataset_stats(
    net: &FidInception,
    weights: &Path,
    real: &RealImages<'_>,
    batch: usize,
    progress: bool,
) -> Result<(PathBuf, GaussianStats, bool)> {
    let RealImages {
        dataset,
        splits,
        max_images,
        data_dir,
        cache_dir,
        ..
    } = *real;
    let file = real
        .out
        .clone()
        .unwrap_or_else(|| stats_cache_file(cache_dir, dataset, splits, max_images, weights));
    if file.exists() {
        let s = load_stats(&file).map_err(|e| {
            EvalError::Invalid(format!(
                "cached statistics (delete the file to recompute): {e}"
            ))
        })?;
        return Ok((file, s, true));
    }
    let mut set = None;
    for split in splits.split(',').map(str::trim) {
        let part = dataset.load(split, data_dir, &jem_data::LoadOptions::default())?;
        match &mut set {
            None => set = Some(part),
            Some(s) => jem_data::ImageSet::extend(s, &part)?,
        }
    }
    let mut set = set.ok_or_else(|| EvalError::Invalid("splits: none given".into()))?;
    if let Some(max) = max_images.filter(|&k| k < set.len()) {
        set = set.subset(&(0..max).collect::<Vec<_>>());
    }
    let [c, h, w] = set.shape;
    let pixels: Vec<f32> = set.images.iter().map(|&p| f32::from(p) / 255.0).collect();
    let images =
        Tensor::from_vec(pixels, (set.len(), c, h, w), &Device::Cpu)?.to_device(net.device())?;
    let f = net.extract(&images, batch.max(1), progress)?;
    let s = GaussianStats::from_features_named(
        &format!("{dataset} {splits}"),
        &f.pool,
        f.count,
        f.pool.len() / f.count.max(1),
    )?;
    if let Some(dir) = file.parent() {
        crate::output::ensure_dir(dir)?;
    }
    let sha = if weights.file_name().and_then(|n| n.to_str()) == Some(FID_WEIGHTS_FILE) {
        FID_WEIGHTS_SHA256.to_string()
    } else {
        file_digest(weights, &Checksum::Sha256(String::new()))?
    };
    let count = set.len().to_string();
    let meta = [
        ("dataset", dataset.as_str()),
        ("splits", splits),
        ("images", count.as_str()),
        ("weights_sha256", sha.as_str()),
    ];
    save_stats(&file, &s, &meta)?;
    Ok((file, s, false))
}

/// Model-space images (`[-1, 1]`) as the reference hands them to Inception:
/// `(clamp(x, -1, 1) + 1) / (2 + 1e-5)`, in `[0, 1)`, not quantised.
pub fn to_inception_pixels(x: &Tensor) -> Result<Tensor> {
    Ok(((x.clamp(-1f32, 1f32)? + 1.0)? / (2.0 + 1e-5))?)
}

/// The reference's `cond_is_fid` selection: classify every image (eval-mode BatchNorm),
/// group by predicted class, and keep in each class the `ratio` fraction (rounded down, at
/// least one when the class has images) with the highest max p(y|x).
pub fn select_by_confidence(
    s: &EvalSession,
    images: &Tensor,
    ratio: f64,
    batch: usize,
) -> Result<Tensor> {
    if !(ratio > 0.0 && ratio <= 1.0) {
        return Err(EvalError::Invalid(format!(
            "ratio: {ratio} is not in (0, 1]"
        )));
    }
    let n = images.dim(0)?;
    let (mut pred, mut conf) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for start in (0..n).step_by(batch.max(1)) {
        let len = batch.max(1).min(n - start);
        let x = images.narrow(0, start, len)?.to_device(&s.device)?;
        let logits = s.model.logits(&x, BnMode::Eval)?.detach();
        let lse = jem_models::jem::log_density(&logits)?;
        let probs = logits.broadcast_sub(&lse.unsqueeze(1)?)?.exp()?;
        pred.extend(probs.argmax(D::Minus1)?.to_vec1::<u32>()?);
        conf.extend(
            probs
                .max(D::Minus1)?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?,
        );
    }
    let mut keep = Vec::new();
    for class in 0..s.data.num_classes as u32 {
        let mut idx: Vec<usize> = (0..n).filter(|&i| pred[i] == class).collect();
        idx.sort_by(|&a, &b| conf[b].total_cmp(&conf[a]));
        let k = ((idx.len() as f64 * ratio) as usize).max(usize::from(!idx.is_empty()));
        keep.extend(idx.into_iter().take(k));
    }
    keep.sort_unstable();
    let keep: Vec<u32> = keep.into_iter().map(|i| i as u32).collect();
    let ids = Tensor::from_vec(keep.clone(), keep.len(), images.device())?;
    Ok(images.index_select(&ids, 0)?)
}

/// Which numbers to compute and from what; the default is the reference's protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityOptions {
    /// Compute FID.
    pub fid: bool,
    /// Compute the Inception Score.
    pub is: bool,
    /// Where the images come from (the reference: the replay buffer). Results written
    /// before this field existed are of the buffer, hence the serde default.
    #[serde(default)]
    pub source: SampleSource,
    /// Fraction kept per class for FID (the reference: 0.9; 1 keeps all without
    /// classifying).
    pub fid_ratio: f64,
    /// Fraction kept per class for IS (the reference: 0.1).
    pub is_ratio: f64,
    /// Real splits for FID (the reference: train and test).
    pub real_splits: String,
    /// Images per Inception batch.
    pub batch: usize,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl QualityOptions {
    /// The defaults with images from `source` and its default selection: the reference's
    /// 90 % (FID) / 10 % (IS) per class for the buffer, every image for fresh chains.
    pub fn with_source(source: SampleSource) -> Self {
        let (fid_ratio, is_ratio) = match source {
            SampleSource::Buffer => (0.9, 0.1),
            SampleSource::Chains { .. } => (1.0, 1.0),
        };
        Self {
            source,
            fid_ratio,
            is_ratio,
            ..Self::default()
        }
    }

    /// The result file's name: `fid.json` or `is.json` for one metric, `quality.json` for
    /// both; with `-chains` before `.json` for fresh chains, so that both protocols can sit
    /// in one folder.
    pub fn result_file(&self) -> String {
        let metric = match (self.fid, self.is) {
            (true, false) => "fid",
            (false, true) => "is",
            _ => "quality",
        };
        format!("{metric}{}.json", self.source.file_suffix())
    }

    /// Checks the settings before any slow work; errors name the field.
    pub fn validate(&self) -> Result<()> {
        self.source.validate()?;
        let asked = [
            ("fid_ratio", self.fid, self.fid_ratio),
            ("is_ratio", self.is, self.is_ratio),
        ];
        for (name, _, r) in asked.into_iter().filter(|a| a.1) {
            if !(r > 0.0 && r <= 1.0) {
                return Err(EvalError::Invalid(format!(
                    "quality: {name} must be in (0, 1], got {r}"
                )));
            }
        }
        Ok(())
    }
}

impl Default for QualityOptions {
    fn default() -> Self {
        Self {
            fid: true,
            is: true,
            source: SampleSource::Buffer,
            fid_ratio: 0.9,
            is_ratio: 0.1,
            real_splits: "train,test".into(),
            batch: 50,
            progress: false,
        }
    }
}

/// `jem eval fid` / `jem eval is`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityResult {
    /// The checkpoint.
    pub checkpoint: String,
    /// Which protocol produced the numbers, in words (see [`protocol`]).
    pub protocol: String,
    /// Where the images came from.
    pub source: SampleSource,
    /// Fresh chains: where they started (informative, or uniform when the run has no
    /// per-class Gaussians).
    pub chain_init: Option<ChainInit>,
    /// Generated images before the selection.
    pub n_source: usize,
    /// FID and the images it used, when asked.
    pub fid: Option<FidReport>,
    /// Images behind the FID.
    pub n_fid: usize,
    /// The real statistics file.
    pub real_stats: Option<String>,
    /// Inception Score, when asked.
    pub is: Option<InceptionScore>,
    /// Images behind the IS.
    pub n_is: usize,
    /// The options used.
    pub options: QualityOptions,
    /// Wall-clock seconds of its parts (zeros in files written before they were kept).
    #[serde(default)]
    pub seconds: QualitySeconds,
}

/// Inception features of the `ratio` selection of `images`; a ratio of 1 keeps every image
/// without classifying them (the selection would keep them all, in order).
fn selected_features(
    s: &EvalSession,
    net: &FidInception,
    images: &Tensor,
    ratio: f64,
    opts: &QualityOptions,
) -> Result<InceptionFeatures> {
    let chosen = if ratio >= 1.0 {
        images.clone()
    } else {
        select_by_confidence(s, images, ratio, 100)?
    };
    Ok(net.extract(
        &to_inception_pixels(&chosen)?,
        opts.batch.max(1),
        opts.progress,
    )?)
}

/// IS and / or FID of the checkpoint's replay buffer (the reference's protocol) or of fresh
/// chains ([`QualityOptions::source`]), model space; writes
/// `out/<QualityOptions::result_file>` (`fid.json`, `is.json`, `quality.json` for both, with
/// `-chains` for fresh chains), so that `jem eval fid` and `jem eval is` of either source
/// into one folder keep every result.
pub fn quality(
    s: &EvalSession,
    weights: &Path,
    data_dir: &Path,
    cache_dir: &Path,
    opts: &QualityOptions,
    out: &Path,
) -> Result<QualityResult> {
    opts.validate()?;
    let net = FidInception::load(weights, &s.device)?;
    if opts.is {
        net.require_logits()
            .map_err(|e| EvalError::Invalid(format!("{}: {e}", weights.display())))?;
    }
    let mut seconds = QualitySeconds::default();
    let (images, chain_init) = timed(&mut seconds.source, || source_images(s, opts))?;
    let n_source = images.dim(0)?;
    let mut result = QualityResult {
        checkpoint: s.checkpoint.display().to_string(),
        protocol: protocol(
            &opts.source,
            n_source,
            chain_init,
            opts.fid.then_some(opts.fid_ratio),
            opts.is.then_some(opts.is_ratio),
        ),
        source: opts.source,
        chain_init,
        n_source,
        fid: None,
        n_fid: 0,
        real_stats: None,
        is: None,
        n_is: 0,
        options: opts.clone(),
        seconds,
    };
    if opts.is {
        let f = timed(&mut result.seconds.inception, || {
            selected_features(s, &net, &images, opts.is_ratio, opts)
        })?;
        result.seconds.inception_images += f.count;
        let splits = reference_splits(f.count);
        result.is = Some(inception_score_from_logits(
            &f.logits_unbiased,
            1008,
            splits,
        )?);
        result.n_is = f.count;
    }
    if opts.fid {
        let dataset = s.config.dataset()?;
        let wanted = RealImages {
            dataset,
            splits: &opts.real_splits,
            max_images: None,
            data_dir,
            cache_dir,
            out: None,
        };
        let mut real_seconds = 0.0;
        let (file, real, cached) = timed(&mut real_seconds, || {
            dataset_stats(&net, weights, &wanted, opts.batch, opts.progress)
        })?;
        if !cached {
            result.seconds.real_stats = real_seconds;
            result.seconds.real_images = real.n;
        }
        let f = timed(&mut result.seconds.inception, || {
            selected_features(s, &net, &images, opts.fid_ratio, opts)
        })?;
        result.seconds.inception_images += f.count;
        let fake = GaussianStats::from_features_named("generated", &f.pool, f.count, 2048)?;
        result.fid = Some(frechet_distance(&real, &fake)?);
        result.n_fid = f.count;
        result.real_stats = Some(file.display().to_string());
    }
    write_json(out, &opts.result_file(), &result)?;
    Ok(result)
}
