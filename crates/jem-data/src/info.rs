//! Summaries of a data set: counts per split and class, image shape, pixel statistics.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::datasets::{DatasetName, LoadOptions};
use crate::error::{DataError, Result};
use crate::image_set::ImageSet;

/// Summary of one split.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SplitInfo {
    /// Number of images.
    pub count: usize,
    /// Images per class.
    pub per_class: Vec<usize>,
    /// Per-channel pixel mean in [0, 1] units.
    pub mean: Vec<f64>,
    /// Per-channel pixel standard deviation in [0, 1] units.
    pub std: Vec<f64>,
}

impl SplitInfo {
    /// Summarizes a decoded split.
    pub fn of(set: &ImageSet) -> Self {
        let (mean, std) = set.channel_mean_std();
        Self {
            count: set.len(),
            per_class: set.per_class_counts(),
            mean,
            std,
        }
    }
}

/// Summary of a data set (the JSON of `jem data info --json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetInfo {
    /// Data set name.
    pub dataset: String,
    /// Summaries of the splits that are present.
    pub splits: BTreeMap<String, SplitInfo>,
    /// `[C, H, W]` of the images.
    pub shape: [usize; 3],
    /// Number of classes.
    pub num_classes: usize,
    /// Class names, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
    /// Splits whose files are all absent.
    pub missing_splits: Vec<String>,
}

/// Reads every split of `name` that is present in `data_dir` and summarizes it. A split
/// with some of its files absent is an error; one with all absent is listed as missing.
pub fn dataset_info(name: DatasetName, data_dir: &Path, opts: &LoadOptions) -> Result<DatasetInfo> {
    let mut splits = BTreeMap::new();
    let mut missing = Vec::new();
    let mut shape = None;
    for &split in name.splits() {
        let files = name.split_files(split, data_dir);
        if !files.is_empty() && files.iter().all(|f| !f.exists()) {
            missing.push(split.to_string());
            continue;
        }
        let set = name.load(split, data_dir, opts)?;
        shape.get_or_insert(set.shape);
        splits.insert(split.to_string(), SplitInfo::of(&set));
    }
    let Some(shape) = shape else {
        // nothing present: the first split's load error names the missing file
        let err = name.load(name.splits()[0], data_dir, opts).err();
        return Err(err.unwrap_or_else(|| {
            DataError::Invalid(format!("{name}: no split found in {}", data_dir.display()))
        }));
    };
    Ok(DatasetInfo {
        dataset: name.to_string(),
        splits,
        shape,
        num_classes: name.num_classes(opts),
        class_names: name
            .class_names()
            .map(|n| n.iter().map(|s| s.to_string()).collect()),
        missing_splits: missing,
    })
}
