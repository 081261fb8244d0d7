//! Batched feature extraction into plain `f64` arrays.

use std::fmt::Display;

use candle_core::{DType, Tensor};
use jem_io::progress::{Progress, ProgressMode};

use super::network::{FidInception, InceptionOutput};
use super::{NUM_LOGITS, POOL_DIM};
use crate::{MetricError, Result};

/// Inception outputs of a set of images, row-major `f64` on the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InceptionFeatures {
    /// Number of images `N`.
    pub count: usize,
    /// Pool features, `N x 2048` row-major (the input of FID).
    pub pool: Vec<f64>,
    /// Logits with bias, `N x 1008` row-major (empty when the network has no classifier,
    /// see [`FidInception::has_logits`]).
    pub logits: Vec<f64>,
    /// Logits without bias, `N x 1008` row-major (the input of the Inception Score; empty as
    /// `logits`).
    pub logits_unbiased: Vec<f64>,
}

impl InceptionFeatures {
    /// The pool features of image `i` (2048 values).
    pub fn pool_row(&self, i: usize) -> &[f64] {
        &self.pool[i * POOL_DIM..(i + 1) * POOL_DIM]
    }

    /// The unbiased logits of image `i` (1008 values).
    pub fn logits_unbiased_row(&self, i: usize) -> &[f64] {
        &self.logits_unbiased[i * NUM_LOGITS..(i + 1) * NUM_LOGITS]
    }

    fn append(&mut self, n: usize, o: &InceptionOutput) -> candle_core::Result<()> {
        let host = |t: &Tensor| t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>();
        self.pool.extend(host(&o.pool)?);
        if let (Some(l), Some(u)) = (&o.logits, &o.logits_unbiased) {
            self.logits.extend(host(l)?);
            self.logits_unbiased.extend(host(u)?);
        }
        self.count += n;
        Ok(())
    }
}

impl FidInception {
    /// Runs `images` (`[N, C, H, W]` in `[0, 1]`, as [`forward`](Self::forward)) through the
    /// network `batch_size` images at a time, collecting the outputs on the host. With
    /// `progress`, a progress line is written to stderr (nothing otherwise).
    pub fn extract(
        &self,
        images: &Tensor,
        batch_size: usize,
        progress: bool,
    ) -> Result<InceptionFeatures> {
        if batch_size == 0 {
            return Err(MetricError::Invalid("batch_size must be at least 1".into()));
        }
        let n = images
            .dims4()
            .map_err(|e| MetricError::Invalid(format!("images must be [N, C, H, W]: {e}")))?
            .0;
        let p = Progress::new(
            "inception",
            n as u64,
            "images",
            ProgressMode::shown(progress),
        );
        let mut out = InceptionFeatures::default();
        for start in (0..n).step_by(batch_size) {
            let len = batch_size.min(n - start);
            let batch = images
                .narrow(0, start, len)
                .map_err(|e| MetricError::Invalid(format!("images {start}..: {e}")))?;
            self.extract_into(&mut out, &batch)?;
            p.set_position(out.count as u64);
        }
        p.finish();
        Ok(out)
    }

    /// As [`extract`](Self::extract), over batches from an iterator (e.g. a data loader or a
    /// sampler); the first error of the iterator stops the extraction and is returned.
    pub fn extract_batches<I, E>(&self, batches: I, progress: bool) -> Result<InceptionFeatures>
    where
        I: IntoIterator<Item = std::result::Result<Tensor, E>>,
        E: Display,
    {
        let p = Progress::new("inception", 0, "images", ProgressMode::shown(progress));
        let mut out = InceptionFeatures::default();
        for (i, batch) in batches.into_iter().enumerate() {
            let batch = batch.map_err(|e| MetricError::Invalid(format!("batch {i}: {e}")))?;
            self.extract_into(&mut out, &batch)?;
            p.set_position(out.count as u64);
        }
        p.finish();
        Ok(out)
    }

    fn extract_into(&self, out: &mut InceptionFeatures, batch: &Tensor) -> Result<()> {
        let o = self.forward(batch)?;
        let n = o.pool.dim(0).unwrap_or(0);
        out.append(n, &o)
            .map_err(|e| MetricError::Invalid(format!("copying features to the host: {e}")))
    }
}
