//! Batched, shuffled, augmented data streams, prepared on background threads.
//!
//! A [`Loader`] turns an [`ImageSource`] into batches of candle tensors. Every batch is a
//! pure function of `(seed, epoch, batch index)`: the epoch's shuffle and each image's
//! augmentation come from generators seeded by that position, so the batches are the same
//! whether they are prepared on the calling thread ([`Loader::batch_at`]) or by any number of
//! prefetching workers, and a run resumed at a [`Position`] sees exactly what it would have.
//!
//! ```
//! use std::sync::Arc;
//! use jem_data::{ImageSet, Loader, LoaderConfig, Transform};
//! let set = ImageSet::new(vec![0u8; 10 * 4], (0..10).map(|i| i % 2).collect(), [1, 2, 2], 2, "toy")?;
//! let cfg = LoaderConfig { batch_size: 4, ..LoaderConfig::default() };
//! let loader = Loader::new(Arc::new(set), Transform::default(), cfg, candle_core::Device::Cpu)?;
//! assert_eq!(loader.batches_per_epoch(), 2); // drop_last
//! for batch in loader.epoch(0) {
//!     assert_eq!(batch?.images.dims(), &[4, 1, 2, 2]);
//! }
//! # Ok::<(), jem_data::DataError>(())
//! ```

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::rng::{derive_seed, permutation, rng_for};
use crate::transform::{ImageSource, Transform};

/// How batches are drawn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Reshuffle the images every epoch.
    pub shuffle: bool,
    /// Drop the last, incomplete batch of an epoch.
    pub drop_last: bool,
    /// Seed of the shuffles and augmentations.
    pub seed: u64,
    /// Background threads preparing batches (0: prepare on the calling thread).
    pub workers: usize,
    /// Batches each worker may have ready ahead of use.
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            shuffle: true,
            drop_last: true,
            seed: 1,
            workers: 2,
            prefetch: 2,
        }
    }
}

/// Where a stream stands: the epoch and the batch within it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Epoch, from 0.
    pub epoch: u64,
    /// Batch within the epoch, from 0.
    pub batch: usize,
}

/// One batch: images `[B, C, H, W]` (f32, [-1, 1] before noise) and labels `[B]` (u32).
#[derive(Clone, Debug)]
pub struct Batch {
    /// Images on the loader's device.
    pub images: Tensor,
    /// Labels on the loader's device.
    pub labels: Tensor,
    /// Indices of the images in the source.
    pub indices: Vec<usize>,
    /// Position of this batch.
    pub position: Position,
}

struct Inner {
    source: Arc<dyn ImageSource>,
    transform: Transform,
    cfg: LoaderConfig,
    device: Device,
    out_shape: [usize; 3],
}

/// A seeded batch stream over an image source; cheap to clone.
#[derive(Clone)]
pub struct Loader {
    inner: Arc<Inner>,
}

impl Loader {
    /// A loader of `source` applying `transform`, delivering tensors on `device`.
    pub fn new(
        source: Arc<dyn ImageSource>,
        transform: Transform,
        cfg: LoaderConfig,
        device: Device,
    ) -> Result<Self> {
        let out_shape = transform.output_shape(source.shape())?;
        if cfg.batch_size == 0 {
            return Err(DataError::Invalid(
                "loader.batch_size must be at least 1".into(),
            ));
        }
        let inner = Inner {
            source,
            transform,
            cfg,
            device,
            out_shape,
        };
        if inner.batches_per_epoch() == 0 {
            return Err(DataError::Invalid(format!(
                "loader.batch_size {} leaves no batch in a data set of {} images",
                inner.cfg.batch_size,
                inner.source.len()
            )));
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.inner.batches_per_epoch()
    }

    /// `[C, H, W]` of the delivered images.
    pub fn output_shape(&self) -> [usize; 3] {
        self.inner.out_shape
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.inner.cfg
    }

    /// The order in which epoch `epoch` visits the images.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        self.inner.order(epoch)
    }

    /// Prepares the batch at `pos` on the calling thread.
    pub fn batch_at(&self, pos: Position) -> Result<Batch> {
        if pos.batch >= self.batches_per_epoch() {
            return Err(DataError::Invalid(format!(
                "batch {} is past the {} batches of an epoch",
                pos.batch,
                self.batches_per_epoch()
            )));
        }
        self.inner.batch(pos, &self.inner.order(pos.epoch))
    }

    /// The batches of one epoch (finite).
    pub fn epoch(&self, epoch: u64) -> Batches {
        let start = Position { epoch, batch: 0 };
        self.stream(start, Some(self.batches_per_epoch()))
    }

    /// An endless stream starting at `start`, epoch after epoch, reshuffled each time (the
    /// reference's `cycle(loader)`).
    pub fn cycle_from(&self, start: Position) -> Batches {
        self.stream(start, None)
    }

    /// `count` batches from `start` (`None`: endless).
    pub fn stream(&self, start: Position, count: Option<usize>) -> Batches {
        let mut b = Batches {
            inner: self.inner.clone(),
            start,
            yielded: 0,
            count,
            receivers: Vec::new(),
            handles: Vec::new(),
            order: None,
        };
        for w in 0..self.inner.cfg.workers {
            let (tx, rx) = sync_channel(self.inner.cfg.prefetch.max(1));
            let inner = self.inner.clone();
            let n = self.inner.cfg.workers;
            b.receivers.push(rx);
            b.handles.push(std::thread::spawn(move || {
                worker(inner, start, w, n, count, tx)
            }));
        }
        b
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("images", &self.inner.source.len())
            .field("output_shape", &self.inner.out_shape)
            .field("transform", &self.inner.transform)
            .field("config", &self.inner.cfg)
            .field("device", &self.inner.device)
            .finish()
    }
}

impl Inner {
    fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.source.len(), self.cfg.batch_size);
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.source.len();
        if self.cfg.shuffle {
            permutation(n, derive_seed(&[self.cfg.seed, epoch, 0x5eed]))
        } else {
            (0..n).collect()
        }
    }

    fn advance(&self, start: Position, k: usize) -> Position {
        let per = self.batches_per_epoch();
        let total = start.batch + k;
        Position {
            epoch: start.epoch + (total / per) as u64,
            batch: total % per,
        }
    }

    fn batch(&self, pos: Position, order: &[usize]) -> Result<Batch> {
        let b = self.cfg.batch_size;
        let indices = order[pos.batch * b..((pos.batch + 1) * b).min(order.len())].to_vec();
        let in_shape = self.source.shape();
        let d_in: usize = in_shape.iter().product();
        let d_out: usize = self.out_shape.iter().product();
        let mut scratch = vec![0.0f32; d_in];
        let mut images = vec![0.0f32; indices.len() * d_out];
        let mut labels = Vec::with_capacity(indices.len());
        let mut rng = rng_for(&[self.cfg.seed, pos.epoch, pos.batch as u64, 0xa06]);
        for (out, &i) in images.chunks_exact_mut(d_out).zip(&indices) {
            self.source.read_unit(i, &mut scratch);
            self.transform.apply(&scratch, in_shape, &mut rng, out);
            labels.push(self.source.label(i));
        }
        let [c, h, w] = self.out_shape;
        let n = indices.len();
        Ok(Batch {
            images: Tensor::from_vec(images, (n, c, h, w), &self.device)?,
            labels: Tensor::from_vec(labels, n, &self.device)?,
            indices,
            position: pos,
        })
    }
}

fn worker(
    inner: Arc<Inner>,
    start: Position,
    w: usize,
    n: usize,
    count: Option<usize>,
    tx: SyncSender<Result<Batch>>,
) {
    let mut cached: Option<(u64, Vec<usize>)> = None;
    let mut k = w;
    while count.is_none_or(|c| k < c) {
        let pos = inner.advance(start, k);
        if cached.as_ref().is_none_or(|(e, _)| *e != pos.epoch) {
            cached = Some((pos.epoch, inner.order(pos.epoch)));
        }
        let order = &cached.as_ref().expect("just set").1;
        if tx.send(inner.batch(pos, order)).is_err() {
            return; // the stream was dropped
        }
        k += n;
    }
}

/// An iterator of batches; workers stop when it is dropped.
pub struct Batches {
    inner: Arc<Inner>,
    start: Position,
    yielded: usize,
    count: Option<usize>,
    receivers: Vec<Receiver<Result<Batch>>>,
    handles: Vec<JoinHandle<()>>,
    order: Option<(u64, Vec<usize>)>,
}

impl Batches {
    /// Position of the next batch this iterator will yield (save it to resume).
    pub fn position(&self) -> Position {
        self.inner.advance(self.start, self.yielded)
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.count.is_some_and(|c| self.yielded >= c) {
            return None;
        }
        let k = self.yielded;
        self.yielded += 1;
        if self.receivers.is_empty() {
            let pos = self.inner.advance(self.start, k);
            if self.order.as_ref().is_none_or(|(e, _)| *e != pos.epoch) {
                self.order = Some((pos.epoch, self.inner.order(pos.epoch)));
            }
            let order = &self.order.as_ref().expect("just set").1;
            return Some(self.inner.batch(pos, order));
        }
        let rx = &self.receivers[k % self.receivers.len()];
        Some(rx.recv().unwrap_or_else(|_| {
            Err(DataError::Invalid(
                "a data loader worker stopped unexpectedly".into(),
            ))
        }))
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
