//! The data of a run: the train / validation split, the two training streams (p(x) and
//! classification), the evaluation sets and the per-class Gaussians of the informative
//! initialization.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use jem_data::rng::{derive_seed, permutation};
use jem_data::{
    ClassGaussians, DatasetName, ImageSet, LoadOptions, Loader, LoaderConfig, Transform,
};

use crate::config::TrainConfig;
use crate::{Result, TrainError};

/// Everything a run reads.
pub struct RunData {
    /// Training images (validation images removed).
    pub train: Arc<ImageSet>,
    /// Held-out training images.
    pub valid: Option<Arc<ImageSet>>,
    /// The test split.
    pub test: Arc<ImageSet>,
    /// Out-of-distribution test sets, by name.
    pub ood: Vec<(String, Arc<ImageSet>)>,
    /// Geometry shared by every stream (padding, channels), no randomness.
    pub base: Transform,
    /// `[C, H, W]` seen by the model.
    pub shape: [usize; 3],
    /// Classes.
    pub num_classes: usize,
    /// Per-class Gaussians of the training images (informative initialization).
    pub gaussians: Option<ClassGaussians>,
}

fn data_err(e: jem_data::DataError) -> TrainError {
    TrainError::from(e)
}

impl RunData {
    /// Loads the data sets of `cfg` from `data_dir`, splits off the validation images and,
    /// when the sampler needs them, loads or computes the class Gaussians (cached in
    /// `cache_dir`).
    pub fn load(cfg: &TrainConfig, data_dir: &Path, cache_dir: &Path) -> Result<Self> {
        let ds = cfg.dataset()?;
        let opts = LoadOptions::default();
        let full = ds.load("train", data_dir, &opts).map_err(data_err)?;
        let test = ds.load("test", data_dir, &opts).map_err(data_err)?;
        let n_valid = cfg.data.valid_size;
        if n_valid >= full.len() {
            return Err(TrainError::Config(format!(
                "data.valid_size {n_valid} leaves no training image of the {} in {ds}",
                full.len()
            )));
        }
        let (train, valid) = if n_valid == 0 {
            (full, None)
        } else {
            let order = permutation(full.len(), derive_seed(&[cfg.data.split_seed]));
            let mut v: Vec<usize> = order[..n_valid].to_vec();
            let mut t: Vec<usize> = order[n_valid..].to_vec();
            v.sort_unstable();
            t.sort_unstable();
            (full.subset(&t), Some(Arc::new(full.subset(&v))))
        };
        let base = Transform {
            pad_to: cfg.data.pad_to.map(|p| [p, p]),
            gray_to_rgb: cfg.data.gray_to_rgb,
            ..Transform::default()
        };
        let shape = base.output_shape(train.shape).map_err(data_err)?;
        let mut ood = Vec::new();
        for name in &cfg.eval.ood {
            let d: DatasetName = name.parse().map_err(data_err)?;
            let set = d
                .load("test", data_dir, &opts)
                .map_err(|source| TrainError::DataFor {
                    context: format!("eval.ood `{name}` (or leave it out with --set eval.ood=[])"),
                    source: Box::new(source),
                })?;
            let s = base.output_shape(set.shape).map_err(data_err)?;
            if s != shape {
                return Err(TrainError::Config(format!(
                    "eval.ood: {d} images become {s:?}, the model sees {shape:?}"
                )));
            }
            ood.push((d.to_string(), Arc::new(set)));
        }
        let needs_stats =
            cfg.loss.px > 0.0 && cfg.sampler.init == jem_sampler::InitKind::Informative;
        let gaussians = if needs_stats {
            let key = format!("{ds}-train-minus-{n_valid}-valid");
            let (g, _) = ClassGaussians::load_or_compute(
                cache_dir,
                &key,
                &train,
                &base,
                cfg.sampler.init_jitter,
            )
            .map_err(data_err)?;
            Some(g)
        } else {
            None
        };
        let num_classes = train.num_classes;
        Ok(Self {
            train: Arc::new(train),
            valid,
            test: Arc::new(test),
            ood,
            base,
            shape,
            num_classes,
            gaussians,
        })
    }

    fn augmented(&self, cfg: &TrainConfig) -> Result<Transform> {
        let flip = match cfg.data.hflip {
            Some(f) => f,
            None => cfg.dataset()?.flip_ok(),
        };
        Ok(Transform {
            crop_pad: cfg.data.crop_pad,
            hflip: flip,
            noise_sigma: cfg.data.noise_sigma,
            ..self.base.clone()
        })
    }

    /// The two training streams: p(x) (`px`) and classification (`clf`). Their shuffles
    /// derive from the run seed and `seed_offset` (the divergence guard's `new-seed`).
    pub fn train_loaders(
        &self,
        cfg: &TrainConfig,
        seed_offset: u64,
        device: &Device,
    ) -> Result<(Loader, Loader)> {
        let aug = self.augmented(cfg)?;
        let plain = Transform {
            noise_sigma: cfg.data.noise_sigma,
            ..self.base.clone()
        };
        let make = |batch: usize, t: Transform, stream: u64| {
            Loader::new(
                self.train.clone(),
                t,
                LoaderConfig {
                    batch_size: batch,
                    shuffle: true,
                    drop_last: true,
                    seed: derive_seed(&[cfg.seed, seed_offset, stream]),
                    workers: cfg.data.workers,
                    prefetch: 2,
                },
                device.clone(),
            )
            .map_err(data_err)
        };
        let px = make(
            cfg.data.px_batch_size,
            if cfg.data.px_augment {
                aug.clone()
            } else {
                plain
            },
            1,
        )?;
        let clf = make(
            cfg.data.clf_batch_size,
            if cfg.data.clf_augment {
                aug
            } else {
                self.base.clone()
            },
            2,
        )?;
        Ok((px, clf))
    }

    /// A deterministic, in-order loader over `set` for evaluation.
    pub fn eval_loader(&self, set: Arc<ImageSet>, batch: usize, device: &Device) -> Result<Loader> {
        Loader::new(
            set,
            self.base.clone(),
            LoaderConfig {
                batch_size: batch,
                shuffle: false,
                drop_last: false,
                seed: 0,
                workers: 1,
                prefetch: 2,
            },
            device.clone(),
        )
        .map_err(data_err)
    }
}
