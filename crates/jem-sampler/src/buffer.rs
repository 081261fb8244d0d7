//! The replay buffer of persistent SGLD chains.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use jem_data::ClassGaussians;
use jem_rng::ChaCha8Rng;
use rand::Rng;

use crate::init::{self, InitKind};
use crate::{Result, SamplerError};

/// Persistent chains `[N, C, H, W]` kept on the training device.
///
/// [`ReplayBuffer::sample`] draws `n` slots uniformly with replacement (the reference's
/// `randint`), draws a fresh initial sample for every one of them, and keeps the fresh sample
/// instead of the slot's content with probability `reinit_freq`; after SGLD the caller writes
/// the chains back with [`ReplayBuffer::store`].
#[derive(Clone, Debug)]
pub struct ReplayBuffer {
    data: Tensor,
    /// Probability of restarting a drawn chain from the initial distribution.
    pub reinit_freq: f64,
    /// The initial distribution.
    pub init: InitKind,
}

impl ReplayBuffer {
    /// A buffer of `size` chains of `shape` on `device`. Uniform: noise in [-1, 1].
    /// Informative: `size / K` draws of each class, in class order (the reference's
    /// `init_from_centers`); `size` must be a multiple of the number of classes.
    pub fn new(
        size: usize,
        shape: [usize; 3],
        init: InitKind,
        gaussians: Option<&ClassGaussians>,
        reinit_freq: f64,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        if size == 0 || !(0.0..=1.0).contains(&reinit_freq) {
            return Err(SamplerError::Invalid(format!(
                "buffer: size {size} must be positive and reinit_freq {reinit_freq} in [0, 1]"
            )));
        }
        let data = match init {
            InitKind::Uniform => init::uniform(size, shape, rng, device)?,
            InitKind::Informative => {
                let g = gaussians.ok_or_else(|| {
                    SamplerError::Invalid(
                        "informative initialization needs the class statistics".into(),
                    )
                })?;
                let k = g.num_classes();
                if !size.is_multiple_of(k) {
                    return Err(SamplerError::Invalid(format!(
                        "buffer.size {size} must be a multiple of the {k} classes"
                    )));
                }
                let classes: Vec<u32> = (0..size).map(|i| (i / (size / k)) as u32).collect();
                init::informative(g, &classes, rng, device)?
            }
        };
        Ok(Self {
            data,
            reinit_freq,
            init,
        })
    }

    /// A buffer holding `data` (for instance the `replay_buffer` of a PyTorch checkpoint).
    pub fn from_tensor(data: Tensor, init: InitKind, reinit_freq: f64) -> Result<Self> {
        if data.rank() != 4 {
            return Err(SamplerError::Invalid(format!(
                "buffer must be [N, C, H, W], got {:?}",
                data.dims()
            )));
        }
        Ok(Self {
            data: data.to_dtype(DType::F32)?.contiguous()?,
            reinit_freq,
            init,
        })
    }

    /// Number of chains.
    pub fn len(&self) -> usize {
        self.data.dim(0).unwrap_or(0)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[C, H, W]` of a chain.
    pub fn shape(&self) -> [usize; 3] {
        let d = self.data.dims();
        [d[1], d[2], d[3]]
    }

    /// All chains.
    pub fn data(&self) -> &Tensor {
        &self.data
    }

    /// Draws `n` chains (see the type's documentation); returns their slots and values.
    pub fn sample(
        &self,
        n: usize,
        gaussians: Option<&ClassGaussians>,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<usize>, Tensor)> {
        let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..self.len())).collect();
        let (fresh, _) = init::draw(
            self.init,
            n,
            self.shape(),
            gaussians,
            rng,
            self.data.device(),
        )?;
        self.mix(idx, fresh, rng)
    }

    /// Class-conditional draw: the buffer is split into equal segments per class (slot
    /// `c * N/K + j` belongs to class `c`); each sample comes from its label's segment and
    /// restarts from that class's initial distribution.
    pub fn sample_conditional(
        &self,
        labels: &[u32],
        num_classes: usize,
        gaussians: Option<&ClassGaussians>,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<usize>, Tensor)> {
        if num_classes == 0 || !self.len().is_multiple_of(num_classes) {
            return Err(SamplerError::Invalid(format!(
                "conditional sampling needs a buffer size ({}) that is a multiple of the classes ({num_classes})",
                self.len()
            )));
        }
        let per = self.len() / num_classes;
        let idx: Vec<usize> = labels
            .iter()
            .map(|&y| y as usize * per + rng.random_range(0..per))
            .collect();
        let fresh = match self.init {
            InitKind::Uniform => {
                init::uniform(labels.len(), self.shape(), rng, self.data.device())?
            }
            InitKind::Informative => {
                let g = gaussians.ok_or_else(|| {
                    SamplerError::Invalid(
                        "informative initialization needs the class statistics".into(),
                    )
                })?;
                init::informative(g, labels, rng, self.data.device())?
            }
        };
        self.mix(idx, fresh, rng)
    }

    fn mix(
        &self,
        idx: Vec<usize>,
        fresh: Tensor,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<usize>, Tensor)> {
        let n = idx.len();
        let ids = Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            n,
            self.data.device(),
        )?;
        let old = self.data.index_select(&ids, 0)?;
        let keep_fresh: Vec<u8> = (0..n)
            .map(|_| u8::from(rng.random_bool(self.reinit_freq)))
            .collect();
        let mask = Tensor::from_vec(keep_fresh, (n, 1, 1, 1), self.data.device())?
            .broadcast_as(old.shape())?;
        Ok((idx, mask.where_cond(&fresh, &old)?))
    }

    /// Writes chains back to their slots (a slot drawn twice keeps the later value).
    pub fn store(&mut self, idx: &[usize], x: &Tensor) -> Result<()> {
        let [c, h, w] = self.shape();
        let d = c * h * w;
        if x.dims() != [idx.len(), c, h, w] {
            return Err(SamplerError::Invalid(format!(
                "storing {:?} chains into a buffer of {:?} chains",
                x.dims(),
                [c, h, w]
            )));
        }
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.len()) {
            return Err(SamplerError::Invalid(format!(
                "slot {bad} is outside the buffer of {}",
                self.len()
            )));
        }
        let ids: Vec<u32> = idx
            .iter()
            .flat_map(|&i| std::iter::repeat_n(i as u32, d))
            .collect();
        let ids = Tensor::from_vec(ids, x.shape(), x.device())?;
        self.data
            .scatter_set(&ids, &x.detach().to_dtype(DType::F32)?.contiguous()?, 0)?;
        Ok(())
    }

    /// Saves the chains as safetensors (`replay_buffer`), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let data = self.data.to_device(&Device::Cpu)?;
        let bytes = safetensors::serialize([("replay_buffer", &data)], None)
            .map_err(|e| SamplerError::Invalid(format!("{}: {e}", path.display())))?;
        Ok(jem_io::write_atomic(path, &bytes)?)
    }

    /// Loads chains saved by [`ReplayBuffer::save`].
    pub fn load(path: &Path, init: InitKind, reinit_freq: f64, device: &Device) -> Result<Self> {
        let map = candle_core::safetensors::load(path, device).map_err(|e| {
            SamplerError::Invalid(format!(
                "{}: cannot read the replay buffer: {e}",
                path.display()
            ))
        })?;
        let data = map.get("replay_buffer").cloned().ok_or_else(|| {
            SamplerError::Invalid(format!("{}: no `replay_buffer` tensor", path.display()))
        })?;
        Self::from_tensor(data, init, reinit_freq)
    }
}
