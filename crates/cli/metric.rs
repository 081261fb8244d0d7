//! `jem metric ...`: the metrics of jem-metrics on `.npy` files; each prints one JSON object.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{Arg, ArgMatches, Command};
use jem_metrics::calibration::{EceConvention, calibration};
use jem_metrics::fid::{FidOptions, GaussianStats, frechet_distance_with};
use jem_metrics::inception_score::{
    inception_score, inception_score_from_logits, reference_splits,
};
use jem_metrics::kid::KidOptions;
use jem_metrics::npy::read_npy;
use jem_metrics::ood::ood_report;
use jem_metrics::stats_io::load_stats;
use jem_metrics::{confidences_and_hits, top_k_accuracy};
use serde_json::json;

use crate::args::{cache_dir, flag, opt, parsed, path, string};
use crate::metric_images;

/// The `jem metric` command tree.
pub fn command() -> Command {
    let fid = Command::new("fid")
        .about(
            "Fréchet Inception Distance between a real and a generated set, each given as \
             features (.npy, N x D), statistics (.safetensors from `jem metric stats`, or a \
             pytorch-fid .npz) or images (folder or .npy, run through the Inception network)",
        )
        .arg(opt(
            "real",
            "NPY",
            "Real features, N x D (float32/float64 .npy)",
        ))
        .arg(opt("fake", "NPY", "Generated features, N x D"))
        .arg(opt("real-stats", "FILE", "Real statistics (mu, sigma)"))
        .arg(opt(
            "fake-stats",
            "FILE",
            "Generated statistics (mu, sigma)",
        ))
        .arg(opt("real-images", "DIR_OR_NPY", "Real images"))
        .arg(opt("fake-images", "DIR_OR_NPY", "Generated images"))
        .arg(opt(
            "real-dataset",
            "NAME",
            "A data set as the real side: its statistics, cached as `jem metric stats --dataset`",
        ))
        .arg(
            opt(
                "real-split",
                "SPLITS",
                "Split(s) of --real-dataset, comma-separated",
            )
            .default_value("train"),
        )
        .arg(cache_dir())
        .arg(
            opt(
                "eps",
                "EPS",
                "pytorch-fid's diagonal offset for singular products",
            )
            .default_value("1e-6"),
        )
        .arg(flag(
            "always-offset",
            "Add --eps to both covariance diagonals from the start",
        ));
    let fid = metric_images::network_args(fid);
    let kid = Command::new("kid")
        .about(
            "Kernel Inception Distance (torch-fidelity's unbiased estimator, its subsets for \
             the same seed) between a real and a generated set, each given as features (.npy, \
             N x D) or images (folder or .npy, run through the Inception network)",
        )
        .arg(opt(
            "real",
            "NPY",
            "Real features, N x D (float32/float64 .npy)",
        ))
        .arg(opt("fake", "NPY", "Generated features, N x D"))
        .arg(opt("real-images", "DIR_OR_NPY", "Real images"))
        .arg(opt("fake-images", "DIR_OR_NPY", "Generated images"))
        .arg(opt("subsets", "N", "Number of random subsets").default_value("100"))
        .arg(opt("subset-size", "N", "Rows drawn from each set per subset").default_value("1000"))
        .arg(opt("degree", "D", "Polynomial kernel degree").default_value("3"))
        .arg(opt(
            "gamma",
            "G",
            "Polynomial kernel scale (default: 1 / feature dimension)",
        ))
        .arg(opt("coef0", "C", "Polynomial kernel offset").default_value("1"))
        .arg(
            opt(
                "seed",
                "SEED",
                "Seed of the subset draws (NumPy RandomState)",
            )
            .default_value("2020"),
        );
    let kid = metric_images::network_args(kid);
    let is = Command::new("is")
        .about("Inception Score of class probabilities, logits, or images")
        .arg(opt("probs", "NPY", "Class probabilities, N x K"))
        .arg(opt(
            "logits",
            "NPY",
            "Logits, N x K (softmax taken in float64)",
        ))
        .arg(opt(
            "images",
            "DIR_OR_NPY",
            "Images: the Inception network's logits without bias, as TF's Inception Score",
        ))
        .arg(opt(
            "splits",
            "N",
            "Number of splits (default: the reference's max(1, N / 5000))",
        ));
    let is = metric_images::network_args(is);
    Command::new("metric")
        .about("Metrics on saved arrays: FID, KID, IS, ECE, AUROC, accuracy (JSON on stdout)")
        .subcommand_required(true)
        .subcommand(fid)
        .subcommand(kid)
        .subcommand(is)
        .subcommand(metric_images::stats_command())
        .subcommand(
            Command::new("ece")
                .about("Calibration error (ECE, MCE, RMS) and the reliability-diagram bins")
                .arg(opt("probs", "NPY", "Class probabilities, N x K").required(true))
                .arg(labels_arg())
                .arg(opt(
                    "bins",
                    "N",
                    "Number of bins (default: 15 for torchmetrics, 20 for reference)",
                ))
                .arg(
                    opt("convention", "NAME", "Bin edges: [lo, hi) or (lo, hi]")
                        .value_parser(["torchmetrics", "reference"])
                        .default_value("torchmetrics"),
                ),
        )
        .subcommand(
            Command::new("auroc")
                .about(
                    "OOD detection: AUROC (in-distribution positive, ties half), AUPR-In, \
                     AUPR-Out and FPR at 95% TPR",
                )
                .arg(
                    opt("id", "NPY", "Scores of in-distribution samples (high = in)")
                        .alias("in")
                        .required(true),
                )
                .arg(opt("ood", "NPY", "Scores of out-of-distribution samples").required(true)),
        )
        .subcommand(
            Command::new("accuracy")
                .about("Top-1 (and top-k) accuracy")
                .arg(opt("probs", "NPY", "Class scores, N x K").required(true))
                .arg(labels_arg())
                .arg(opt("top-k", "K", "Also report top-K accuracy")),
        )
}

fn labels_arg() -> Arg {
    opt(
        "labels",
        "NPY",
        "Labels, N values of any integer dtype (or floats holding integers)",
    )
    .required(true)
}

/// Runs `jem metric ...`.
pub fn run(m: &ArgMatches) -> Result<()> {
    let value = match m.subcommand() {
        Some(("fid", m)) => fid(m)?,
        Some(("kid", m)) => kid(m)?,
        Some(("is", m)) => is(m)?,
        Some(("stats", m)) => metric_images::stats(m)?,
        Some(("ece", m)) => ece(m)?,
        Some(("auroc", m)) => auroc(m)?,
        Some(("accuracy", m)) => accuracy(m)?,
        _ => unreachable!("clap requires a subcommand"),
    };
    println!("{value}");
    Ok(())
}

/// A 2-D array as f64 rows: `(values, rows, columns)`.
pub fn read_matrix(file: &Path, what: &str) -> Result<(Vec<f64>, usize, usize)> {
    let a = read_npy(file).with_context(|| format!("reading {what}"))?;
    let [n, d] = a.shape[..] else {
        bail!(
            "{what} {}: expected a 2-D array (N x D), got shape {:?}",
            file.display(),
            a.shape
        );
    };
    if n == 0 || d == 0 {
        bail!("{what} {}: the array is empty ({n} x {d})", file.display());
    }
    let v = a.to_f64();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        bail!(
            "{what} {}: row {}, column {} is {}; every value must be finite",
            file.display(),
            i / d,
            i % d,
            v[i]
        );
    }
    Ok((v, n, d))
}

/// A 1-D array (or N x 1) as f64.
fn read_vector(file: &Path, what: &str) -> Result<Vec<f64>> {
    let a = read_npy(file).with_context(|| format!("reading {what}"))?;
    match a.shape[..] {
        [n] | [n, 1] if n > 0 => {}
        _ => bail!(
            "{what} {}: expected a non-empty 1-D array, got shape {:?}",
            file.display(),
            a.shape
        ),
    }
    let v = a.to_f64();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        bail!(
            "{what} {}: value {i} is {}; every score must be finite",
            file.display(),
            v[i]
        );
    }
    Ok(v)
}

fn required_path(m: &ArgMatches, name: &str) -> Result<std::path::PathBuf> {
    path(m, name).with_context(|| format!("--{name} is required"))
}

/// Statistics of one side of an FID: features, a statistics file or images.
fn side_stats(m: &ArgMatches, side: &str) -> Result<GaussianStats> {
    let kinds: &[&str] = if side == "real" {
        &["", "-stats", "-images", "-dataset"]
    } else {
        &["", "-stats", "-images"]
    };
    let given: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|s| m.contains_id(&format!("{side}{s}")))
        .collect();
    if given.len() != 1 {
        let dataset = if side == "real" {
            ", --real-dataset"
        } else {
            ""
        };
        bail!("give exactly one of --{side}, --{side}-stats, --{side}-images{dataset}");
    }
    match given[0] {
        "" => {
            let file = required_path(m, side)?;
            let what = format!("--{side}");
            let (v, n, d) = read_matrix(&file, &what)?;
            GaussianStats::from_features_named(&format!("{what} {}", file.display()), &v, n, d)
                .map_err(Into::into)
        }
        "-stats" => {
            let file = required_path(m, &format!("{side}-stats"))?;
            load_stats(&file).with_context(|| format!("--{side}-stats"))
        }
        "-dataset" => {
            let name = string(m, "real-dataset").unwrap_or_default();
            let splits = string(m, "real-split").unwrap_or_else(|| "train".into());
            let (file, _, _) = metric_images::dataset_stats(m, &name, &splits, None, None)?;
            load_stats(&file).with_context(|| format!("statistics of {name}"))
        }
        _ => {
            let file = required_path(m, &format!("{side}-images"))?;
            metric_images::image_stats(m, &file, &format!("--{side}-images"))
        }
    }
}

fn fid(m: &ArgMatches) -> Result<serde_json::Value> {
    let real = side_stats(m, "real")?;
    let fake = side_stats(m, "fake")?;
    if real.dim() != fake.dim() {
        bail!(
            "the real features have {} dimensions and the generated ones {}",
            real.dim(),
            fake.dim()
        );
    }
    let opts = FidOptions {
        eps: parsed(m, "eps")?.unwrap_or(1e-6),
        always_offset: m.get_flag("always-offset"),
    };
    let r = frechet_distance_with(&real, &fake, &opts)?;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    Ok(json!({
        "fid": r.fid,
        "mean_term": r.mean_term,
        "covariance_term": r.covariance_term,
        "offset_applied": r.offset_applied,
        "warnings": r.warnings,
        "n_real": real.n,
        "n_fake": fake.n,
        "dim": real.dim(),
    }))
}

/// The features of one side of `jem metric kid`: `(rows, n, d)`.
fn side_features(m: &ArgMatches, side: &str) -> Result<(Vec<f64>, usize, usize)> {
    match (path(m, side), path(m, &format!("{side}-images"))) {
        (Some(file), None) => read_matrix(&file, &format!("--{side}")),
        (None, Some(images)) => {
            metric_images::image_features(m, &images, &format!("--{side}-images"))
        }
        _ => bail!("give exactly one of --{side} and --{side}-images"),
    }
}

fn kid(m: &ArgMatches) -> Result<serde_json::Value> {
    let (real, n_real, d) = side_features(m, "real")?;
    let (fake, n_fake, d_fake) = side_features(m, "fake")?;
    if d != d_fake {
        bail!("the real features have {d} dimensions and the generated ones {d_fake}");
    }
    let opts = KidOptions {
        subsets: parsed(m, "subsets")?.unwrap_or(100),
        subset_size: parsed(m, "subset-size")?.unwrap_or(1000),
        degree: parsed(m, "degree")?.unwrap_or(3),
        gamma: parsed(m, "gamma")?,
        coef0: parsed(m, "coef0")?.unwrap_or(1.0),
        seed: parsed(m, "seed")?.unwrap_or(2020),
    };
    let r = jem_metrics::kid::kid(&real, &fake, d, &opts)?;
    Ok(json!({
        "kid_mean": r.mean,
        "kid_std": r.std,
        "subsets": opts.subsets,
        "subset_size": opts.subset_size,
        "n_real": n_real,
        "n_fake": n_fake,
        "dim": d,
    }))
}

fn is(m: &ArgMatches) -> Result<serde_json::Value> {
    let given = ["probs", "logits", "images"]
        .into_iter()
        .filter(|s| m.contains_id(s))
        .collect::<Vec<_>>();
    let [source] = given[..] else {
        bail!("give exactly one of --probs, --logits, --images");
    };
    let (values, n, k) = match source {
        "images" => metric_images::image_logits(m, &required_path(m, "images")?)?,
        s => read_matrix(&required_path(m, s)?, &format!("--{s}"))?,
    };
    let splits = parsed::<usize>(m, "splits")?.unwrap_or_else(|| reference_splits(n));
    let score = match source {
        "probs" => inception_score(&values, k, splits),
        _ => inception_score_from_logits(&values, k, splits),
    }
    .with_context(|| format!("--{source}"))?;
    Ok(json!({
        "is_mean": score.mean,
        "is_std": score.std,
        "splits": splits,
        "per_split": score.splits,
        "n": n,
    }))
}

/// Probabilities and labels, checked against each other.
fn probs_and_labels(m: &ArgMatches) -> Result<(Vec<f64>, usize, Vec<u32>)> {
    let probs_file = required_path(m, "probs")?;
    let (probs, n, k) = read_matrix(&probs_file, "--probs")?;
    let labels_file = required_path(m, "labels")?;
    let labels = read_npy(&labels_file).context("reading --labels")?;
    if labels.len() != n || !matches!(labels.shape[..], [_] | [_, 1]) {
        bail!(
            "--labels {}: shape {:?}, but --probs has {n} rows: need {n} labels",
            labels_file.display(),
            labels.shape
        );
    }
    let labels = labels.to_labels(&format!("--labels {}", labels_file.display()), k)?;
    Ok((probs, k, labels))
}

fn ece(m: &ArgMatches) -> Result<serde_json::Value> {
    let (probs, k, labels) = probs_and_labels(m)?;
    let convention = match string(m, "convention").as_deref() {
        Some("reference") => EceConvention::Reference,
        _ => EceConvention::Torchmetrics,
    };
    let default_bins = match convention {
        EceConvention::Torchmetrics => 15,
        EceConvention::Reference => 20,
    };
    let bins = parsed::<usize>(m, "bins")?.unwrap_or(default_bins);
    if probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
        bail!("--probs: values outside [0, 1]; pass probabilities (softmax outputs), not logits");
    }
    let (conf, hits) = confidences_and_hits(&probs, k, &labels).context("--probs")?;
    let c = calibration(&conf, &hits, bins, convention).context("--bins")?;
    let accuracy = hits.iter().filter(|&&h| h).count() as f64 / hits.len() as f64;
    Ok(json!({
        "ece": c.ece,
        "mce": c.mce,
        "rms": c.rms,
        "accuracy": accuracy,
        "convention": convention,
        "bins": c.bins,
    }))
}

fn auroc(m: &ArgMatches) -> Result<serde_json::Value> {
    let s_in = read_vector(&required_path(m, "id")?, "--id")?;
    let s_out = read_vector(&required_path(m, "ood")?, "--ood")?;
    let r = ood_report(&s_in, &s_out)?;
    Ok(json!({
        "auroc": r.auroc,
        "aupr_in": r.aupr_in,
        "aupr_out": r.aupr_out,
        "fpr_at_95_tpr": r.fpr_at_95_tpr,
        "n_in": s_in.len(),
        "n_out": s_out.len(),
    }))
}

fn accuracy(m: &ArgMatches) -> Result<serde_json::Value> {
    let (probs, k, labels) = probs_and_labels(m)?;
    let mut out = json!({ "accuracy": top_k_accuracy(&probs, k, &labels, 1)? });
    if let Some(top) = parsed::<usize>(m, "top-k")? {
        out[format!("top{top}")] =
            json!(top_k_accuracy(&probs, k, &labels, top).context("--top-k")?);
    }
    Ok(out)
}
