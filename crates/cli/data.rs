//! `jem data ...`: fetch and inspect data sets.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use jem_data::celeba::CelebaResize;
use jem_data::cifar::Cifar100Labels;
use jem_data::download::FetchOptions;
use jem_data::info::dataset_info;
use jem_data::{
    ClassGaussians, DatasetName, LoadOptions, Transform, resolve_cache_dir, resolve_data_dir,
};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Download a data set from its official source, verify its checksums and unpack it.
    ///
    /// Files go to the data folder: --data-dir, else $JEM_DATA_DIR, else the per-user cache
    /// folder. An interrupted download resumes; files already present are verified instead
    /// of downloaded again, so files placed there by hand are checked and unpacked.
    Fetch {
        /// mnist, fashion-mnist, cifar10, cifar100, svhn or celeba.
        dataset: String,
        #[command(flatten)]
        dir: DataDir,
        /// Download from this base URL instead (files are looked up by their official name).
        #[arg(long, value_name = "URL")]
        mirror: Option<String>,
        /// Keep downloaded archives after unpacking them.
        #[arg(long)]
        keep_archives: bool,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Counts per split and class, image shape, pixel mean and standard deviation.
    Info {
        /// A data set name (see `jem data list`).
        dataset: String,
        #[command(flatten)]
        dir: DataDir,
        #[command(flatten)]
        load: LoadArgs,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Per-class mean and covariance (Cholesky of cov + 1e-4 I) in model space, for the
    /// informative initialization of SGLD; computed once and cached under
    /// `<cache folder>/class-stats/`. Prints one JSON object.
    ClassStats {
        /// A data set name.
        dataset: String,
        #[command(flatten)]
        dir: DataDir,
        #[command(flatten)]
        load: LoadArgs,
        /// Split to fit.
        #[arg(long, default_value = "train")]
        split: String,
        /// Zero-pad images to this square size first (e.g. 32 for 28x28 digits).
        #[arg(long, value_name = "SIZE")]
        pad_to: Option<usize>,
        /// Repeat grayscale images into three channels first.
        #[arg(long)]
        gray_to_rgb: bool,
        /// Cache folder (default: $JEM_CACHE_DIR, else the per-user cache folder).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// The known data sets and whether they are present in the data folder.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(Args)]
pub struct DataDir {
    /// Data folder (default: $JEM_DATA_DIR, else the per-user cache folder).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// CIFAR-100 labels.
    #[arg(long, value_enum, default_value_t = Cifar100Arg::Fine)]
    cifar100_labels: Cifar100Arg,
    /// How CelebA images become 32 pixels: a central square crop resized to 32x32, or the
    /// reference's short side to 32 (32x39 images).
    #[arg(long, value_enum, default_value_t = CelebaArg::CenterCrop)]
    celeba_resize: CelebaArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum Cifar100Arg {
    Fine,
    Coarse,
}

#[derive(Clone, Copy, ValueEnum)]
enum CelebaArg {
    CenterCrop,
    ShortSide,
}

impl LoadArgs {
    fn options(&self) -> LoadOptions {
        LoadOptions {
            cifar100_labels: match self.cifar100_labels {
                Cifar100Arg::Fine => Cifar100Labels::Fine,
                Cifar100Arg::Coarse => Cifar100Labels::Coarse,
            },
            celeba_resize: match self.celeba_resize {
                CelebaArg::CenterCrop => CelebaResize::CenterCrop,
                CelebaArg::ShortSide => CelebaResize::ShortSide,
            },
        }
    }
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Fetch {
            dataset,
            dir,
            mirror,
            keep_archives,
            quiet,
        } => {
            let name: DatasetName = dataset.parse()?;
            let data_dir = resolve_data_dir(dir.data_dir.as_deref());
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
        DataCommand::Info {
            dataset,
            dir,
            load,
            json,
        } => {
            let name: DatasetName = dataset.parse()?;
            let data_dir = resolve_data_dir(dir.data_dir.as_deref());
            let info = dataset_info(name, &data_dir, &load.options())?;
            if json {
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
        DataCommand::ClassStats {
            dataset,
            dir,
            load,
            split,
            pad_to,
            gray_to_rgb,
            cache_dir,
        } => {
            let name: DatasetName = dataset.parse()?;
            let data_dir = resolve_data_dir(dir.data_dir.as_deref());
            let set = name.load(&split, &data_dir, &load.options())?;
            let transform = Transform {
                pad_to: pad_to.map(|s| [s, s]),
                gray_to_rgb,
                ..Transform::default()
            };
            let start = Instant::now();
            let key = format!("{name}-{split}");
            let cache = resolve_cache_dir(cache_dir.as_deref()).join("class-stats");
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
        DataCommand::List { dir } => {
            let data_dir = resolve_data_dir(dir.data_dir.as_deref());
            println!("data folder: {}", data_dir.display());
            for name in DatasetName::ALL {
                let state = if name.is_embedded() {
                    "embedded"
                } else if name.is_present(&data_dir) {
                    "present"
                } else {
                    "not present"
                };
                println!(
                    "  {:<20} {:<12} splits: {}",
                    name.as_str(),
                    state,
                    name.splits().join(", ")
                );
            }
            Ok(())
        }
    }
}
