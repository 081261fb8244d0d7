//! `cargo xtask make-quick-data`: the embedded quick data sets, made from the official-format
//! Fashion-MNIST and MNIST files by a seeded, class-balanced selection (kept in file order).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use jem_data::embedded::LAYOUT;
use jem_data::idx;

const SEED: u64 = 20231;

/// `cargo xtask make-quick-data`: rebuilds the embedded quick data sets
/// (`crates/jem-data/embedded/`) from the official-format files.
#[derive(clap::Args, Debug)]
pub struct QuickDataArgs {
    /// The folder with `fashion-mnist/` and `mnist/` in IDX format.
    #[arg(long, default_value = "../shared/data", value_name = "DIR")]
    pub from: PathBuf,
}

pub fn run(args: QuickDataArgs) -> Result<()> {
    let from = args.from;
    let out_root = Path::new("crates/jem-data/embedded");
    for (name, split, per_class) in LAYOUT {
        let src_dir = from.join(name.trim_end_matches("-quick"));
        let prefix = if split == "train" { "train" } else { "t10k" };
        let images = src_dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
        let labels = src_dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
        let set = idx::load_idx_pair(&images, &labels, 10)
            .with_context(|| format!("reading {}", src_dir.display()))?;
        let keep = set.balanced_indices(per_class, SEED)?;
        let sub = set.subset(&keep);
        let dir = out_root.join(name);
        let [_, h, w] = sub.shape;
        let img_out = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
        idx::write_idx_file(&img_out, &[sub.len(), h, w], &sub.images, true)?;
        let lab: Vec<u8> = sub.labels.iter().map(|&l| l as u8).collect();
        idx::write_idx_file(
            &dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
            &[sub.len()],
            &lab,
            true,
        )?;
        println!(
            "{name} {split}: {} images ({per_class} per class) -> {} ({} bytes)",
            sub.len(),
            img_out.display(),
            std::fs::metadata(&img_out)?.len()
        );
    }
    Ok(())
}
