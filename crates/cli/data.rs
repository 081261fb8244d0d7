//! `jem data ...`: fetch and inspect data sets.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Arg, ArgMatches, Command};
use jem_data::celeba::CelebaResize;
use jem_data::cifar::Cifar100Labels;
use jem_data::download::{Checksum, FetchOptions, RemoteFile, fetch_file};
use jem_data::info::dataset_info;

use crate::args::{cache_dir, data_dir, flag, is_set, opt, parsed, path, string};
use jem_data::{
    ClassGaussians, DatasetName, LoadOptions, Transform, resolve_cache_dir, resolve_data_dir,
};

/// The `jem data` command tree.
pub fn command() -> Command {
    let dataset = || Arg::new("dataset").required(true).value_name("DATASET");
    let load = |c: Command| {
        c.arg(
            opt(
                "cifar100-labels",
                "LABELS",
                "CIFAR-100 labels: fine or coarse",
            )
            .value_parser(["fine", "coarse"])
            .default_value("fine"),
        )
        .arg(
            opt(
                "celeba-resize",
                "MODE",
                "How CelebA images become 32 pixels: center-crop (a central square resized to \
                 32x32) or short-side (the reference: short side to 32, 32x39 images)",
            )
            .value_parser(["center-crop", "short-side"])
            .default_value("center-crop"),
        )
    };
    Command::new("data")
        .about("Data sets: download, inspect, class statistics")
        .subcommand_required(true)
        .subcommand(
            Command::new("fetch")
                .about("Download a data set from its official source, verify its checksums and unpack it")
                .long_about(
                    "Download a data set from its official source, verify its checksums and unpack it.\n\n\
                     Files go to the data folder: --data-dir, else $JEM_DATA_DIR, else the per-user cache \
                     folder. An interrupted download resumes; files already present are verified instead \
                     of downloaded again, so files placed there by hand are checked and unpacked.",
                )
                .arg(dataset().help(
                    "mnist, fashion-mnist, cifar10, cifar100, svhn or celeba; or inception \
                     (pytorch-fid's FID Inception-v3 weights, into <data folder>/inception/)",
                ))
                .arg(data_dir())
                .arg(opt("mirror", "URL", "Download from this base URL instead (files are looked up by their official name)"))
                .arg(flag("keep-archives", "Keep downloaded archives after unpacking them"))
                .arg(flag("quiet", "No progress output").short('q')),
        )
        .subcommand(load(
            Command::new("info")
                .about("Counts per split and class, image shape, pixel mean and standard deviation")
                .arg(dataset().help("A data set name (see `jem data list`)"))
                .arg(data_dir())
                .arg(flag("json", "Print one JSON object instead of a table")),
        ))
        .subcommand(load(
            Command::new("class-stats")
                .about(
                    "Per-class mean and covariance (Cholesky factor of cov + 1e-4 I) in model space, for the \
                     informative initialization of SGLD; computed once and cached under \
                     <cache folder>/class-stats/. Prints one JSON object.",
                )
                .arg(dataset().help("A data set name"))
                .arg(data_dir())
                .arg(opt("split", "SPLIT", "Split to fit").default_value("train"))
                .arg(opt("pad-to", "SIZE", "Zero-pad images to this square size first (e.g. 32 for 28x28 digits)"))
                .arg(flag("gray-to-rgb", "Repeat grayscale images into three channels first"))
                .arg(cache_dir()),
        ))
        .subcommand(
            Command::new("list")
                .about("The known data sets and whether they are present in the data folder")
                .arg(data_dir())
                .arg(flag(
                    "json",
                    "Print one JSON object ({data_dir, datasets: [{name, state, splits}]})",
                )),
        )
}

fn load_options(m: &ArgMatches) -> LoadOptions {
    LoadOptions {
        cifar100_labels: match string(m, "cifar100-labels").as_deref() {
            Some("coarse") => Cifar100Labels::Coarse,
            _ => Cifar100Labels::Fine,
        },
        celeba_resize: match string(m, "celeba-resize").as_deref() {
            Some("short-side") => CelebaResize::ShortSide,
            _ => CelebaResize::CenterCrop,
        },
    }
}

pub fn run(m: &ArgMatches) -> Result<()> {
    let (sub, m) = m.subcommand().expect("clap requires a subcommand");
    let dataset =
        || -> Result<DatasetName> { Ok(string(m, "dataset").unwrap_or_default().parse()?) };
    let folder = || resolve_data_dir(path(m, "data-dir").as_deref());
    match sub {
        "fetch" => {
            let data_dir = folder();
            let (mirror, keep_archives, quiet) = (
                string(m, "mirror"),
                is_set(m, "keep-archives"),
                is_set(m, "quiet"),
            );
            let opts = FetchOptions {
                mirror: mirror.clone(),
                progress: !quiet,
                ..FetchOptions::default()
            };
            if string(m, "dataset").as_deref() == Some("inception") {
                let file = fetch_inception(&data_dir, &opts)?;
                println!("inception weights are ready in {}", file.display());
                return Ok(());
            }
            let name = dataset()?;
            if name.is_embedded() {
                println!("{name} is embedded in jem: nothing to download");
                return Ok(());
            }
            let opts = FetchOptions {
                mirror,
                progress: !quiet,
                ..FetchOptions::default()
            };
            let path = name
                .fetch(&data_dir, &opts, keep_archives)
                .with_context(|| format!("fetching {name} into {}", data_dir.display()))?;
            println!("{name} is ready in {}", path.display());
            Ok(())
        }
        "info" => {
            let name = dataset()?;
            let data_dir = folder();
            let info = dataset_info(name, &data_dir, &load_options(m))?;
            if is_set(m, "json") {
                println!("{}", serde_json::to_string(&info)?);
                return Ok(());
            }
            let [c, h, w] = info.shape;
            println!(
                "{}: {c}x{h}x{w} images, {} classes{}",
                info.dataset,
                info.num_classes,
                if name.is_embedded() {
                    " (embedded)".to_string()
                } else {
                    format!(" ({})", data_dir.display())
                }
            );
            for (split, s) in &info.splits {
                let f = |v: &[f64]| {
                    v.iter()
                        .map(|x| format!("{x:.4}"))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                println!(
                    "  {split:<6} {:>7} images  mean {}  std {}",
                    s.count,
                    f(&s.mean),
                    f(&s.std)
                );
                if s.per_class.len() <= 20 {
                    let names = info.class_names.as_deref().unwrap_or(&[]);
                    for (k, n) in s.per_class.iter().enumerate() {
                        let label = names.get(k).map_or(String::new(), |s| format!(" {s}"));
                        println!("         class {k:>2}{label:<13} {n:>7}");
                    }
                }
            }
            for m in &info.missing_splits {
                println!("  {m:<6} (not present)");
            }
            Ok(())
        }
        "class-stats" => {
            let name = dataset()?;
            let data_dir = folder();
            let split = string(m, "split").unwrap_or_else(|| "train".into());
            let set = name.load(&split, &data_dir, &load_options(m))?;
            let transform = Transform {
                pad_to: parsed::<usize>(m, "pad-to")?.map(|s| [s, s]),
                gray_to_rgb: is_set(m, "gray-to-rgb"),
                ..Transform::default()
            };
            let start = Instant::now();
            let key = format!("{name}-{split}");
            let cache = resolve_cache_dir(path(m, "cache-dir").as_deref()).join("class-stats");
            let (stats, path) = ClassGaussians::load_or_compute(
                &cache,
                &key,
                &set,
                &transform,
                ClassGaussians::DEFAULT_JITTER,
            )?;
            let out = serde_json::json!({
                "dataset": name.as_str(),
                "split": split,
                "path": path,
                "shape": stats.shape,
                "dim": stats.dim(),
                "counts": stats.counts,
                "jitter": stats.jitter,
                "seconds": start.elapsed().as_secs_f64(),
            });
            println!("{out}");
            Ok(())
        }
        "list" => {
            let data_dir = folder();
            let state = |name: DatasetName| {
                if name.is_embedded() {
                    "embedded"
                } else if name.is_present(&data_dir) {
                    "present"
                } else {
                    "not present"
                }
            };
            if m.get_flag("json") {
                let sets: Vec<_> = DatasetName::ALL
                    .iter()
                    .map(|&n| {
                        serde_json::json!({
                            "name": n.as_str(),
                            "state": state(n),
                            "splits": n.splits(),
                        })
                    })
                    .collect();
                let v = serde_json::json!({ "data_dir": data_dir, "datasets": sets });
                println!("{v}");
                return Ok(());
            }
            println!("data folder: {}", data_dir.display());
            for name in DatasetName::ALL {
                let state = state(name);
                println!(
                    "  {:<20} {:<12} splits: {}",
                    name.as_str(),
                    state,
                    name.splits().join(", ")
                );
            }
            Ok(())
        }
        other => unreachable!("unknown subcommand {other}"),
    }
}

/// Downloads pytorch-fid's Inception-v3 weights (checked against their SHA-256) into
/// `<data folder>/inception/`.
pub fn fetch_inception(data_dir: &Path, opts: &FetchOptions) -> Result<PathBuf> {
    use jem_metrics::inception::{FID_WEIGHTS_FILE, FID_WEIGHTS_SHA256, FID_WEIGHTS_URL};
    let file = RemoteFile {
        urls: vec![FID_WEIGHTS_URL.to_string()],
        file_name: FID_WEIGHTS_FILE.to_string(),
        checksum: Checksum::Sha256(FID_WEIGHTS_SHA256.to_string()),
    };
    let dir = data_dir.join("inception");
    fetch_file(&file, &dir, opts)
        .with_context(|| format!("fetching the Inception weights into {}", dir.display()))
}
