//! Filter-normalized random directions in parameter space (Li et al. 2018).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use jem_models::ParamStore;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::{EvalError, Result};

/// Options of [`Direction::filter_normalized`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionOptions {
    /// Perturb the 1-D parameters (biases, BatchNorm weights and biases) too. Their
    /// direction is then a copy of the parameter itself, as in Li et al.'s code (each
    /// "filter" is one scalar, whose normalized direction is the weight up to sign).
    /// Default `false`: their direction is 0 (Li et al.'s `ignore='biasbn'`, the paper's
    /// choice).
    pub include_biases_and_bn: bool,
}

/// How a direction was drawn; recorded in the results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionSpec {
    /// The seed of the Gaussian draws.
    pub seed: u64,
    /// See [`DirectionOptions::include_biases_and_bn`].
    pub include_biases_and_bn: bool,
}

/// A direction in the space of a model's trainable parameters: one tensor per parameter,
/// of its shape, dtype and device; parameters without a tensor have direction 0. Buffers
/// (BatchNorm running statistics) are never part of a direction.
#[derive(Clone, Debug)]
pub struct Direction {
    tensors: BTreeMap<String, Tensor>,
    spec: Option<DirectionSpec>,
}

/// FNV-1a of a parameter name: each parameter's Gaussian stream depends only on the seed
/// and its name, not on which other parameters exist or are drawn.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Direction {
    /// A filter-normalized Gaussian direction for the parameters of `store` (Li et al.,
    /// section 4): for every tensor of rank >= 2 (convolution `[out, in, kh, kw]`, linear
    /// `[out, in]`), a standard-normal tensor of its shape whose every filter (slice along
    /// the first, output-channel dimension) is rescaled to the Frobenius norm of the same
    /// filter of the weights (`d_k *= ||w_k|| / (||d_k|| + 1e-10)`, Li et al.'s code).
    /// Tensors of rank <= 1 get 0, or a copy of the parameter with
    /// [`DirectionOptions::include_biases_and_bn`].
    ///
    /// Deterministic in `seed` (ChaCha8 per parameter name, independent of candle's
    /// generator and of the device). Two directions for a 2-D landscape: two seeds.
    pub fn filter_normalized(
        store: &ParamStore,
        seed: u64,
        options: DirectionOptions,
    ) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        for (name, var) in store.params() {
            let w = var.as_tensor();
            if w.rank() <= 1 {
                if options.include_biases_and_bn {
                    tensors.insert(name.to_string(), w.detach().copy()?);
                }
                continue;
            }
            let dims = w.dims().to_vec();
            let weights = w.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
            let mut rng = jem_data::rng::rng_for(&[seed, name_hash(name), 0x1a9d]);
            let mut d: Vec<f64> = (0..weights.len())
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            let per_filter = weights.len() / dims[0].max(1);
            if per_filter > 0 {
                for (dk, wk) in d.chunks_mut(per_filter).zip(weights.chunks(per_filter)) {
                    let wn = wk.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let dn = dk.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let s = wn / (dn + 1e-10);
                    dk.iter_mut().for_each(|v| *v *= s);
                }
            }
            let t = Tensor::from_vec(d, dims, &Device::Cpu)?
                .to_dtype(w.dtype())?
                .to_device(w.device())?;
            tensors.insert(name.to_string(), t);
        }
        Ok(Self {
            tensors,
            spec: Some(DirectionSpec {
                seed,
                include_biases_and_bn: options.include_biases_and_bn,
            }),
        })
    }

    /// A direction from given tensors (by parameter name; missing parameters get 0),
    /// checked against `store`: every name must be a trainable parameter (not a buffer)
    /// with the tensor's shape. Tensors are converted to the parameter's dtype and device.
    pub fn from_tensors(store: &ParamStore, tensors: BTreeMap<String, Tensor>) -> Result<Self> {
        let params: BTreeMap<&str, _> = store.params().collect();
        let mut out = BTreeMap::new();
        for (name, t) in tensors {
            let var = params.get(name.as_str()).ok_or_else(|| {
                EvalError::Invalid(format!(
                    "direction: `{name}` is not a trainable parameter of the model"
                ))
            })?;
            if t.dims() != var.dims() {
                return Err(EvalError::Invalid(format!(
                    "direction: `{name}` has shape {:?}, the parameter {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            let t = t.to_dtype(var.dtype())?.to_device(var.device())?;
            out.insert(name, t);
        }
        Ok(Self {
            tensors: out,
            spec: None,
        })
    }

    /// The direction's tensor for parameter `name` (`None`: direction 0).
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// The non-zero parameters' tensors, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How the direction was drawn (`None` for [`Direction::from_tensors`]).
    pub fn spec(&self) -> Option<DirectionSpec> {
        self.spec
    }

    /// The Euclidean norm of the whole direction.
    pub fn norm(&self) -> Result<f64> {
        let mut s = 0.0;
        for t in self.tensors.values() {
            s += t
                .to_dtype(DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
        Ok(s.sqrt())
    }

    /// Checks that the direction fits `store` (names, shapes, dtypes, devices); `arg`
    /// names the argument in the error.
    pub(crate) fn check(&self, store: &ParamStore, arg: &str) -> Result<()> {
        let params: BTreeMap<&str, _> = store.params().collect();
        for (name, t) in &self.tensors {
            let var = params.get(name.as_str()).ok_or_else(|| {
                EvalError::Invalid(format!(
                    "{arg}: `{name}` is not a trainable parameter of the model"
                ))
            })?;
            if t.dims() != var.dims() || t.dtype() != var.dtype() {
                return Err(EvalError::Invalid(format!(
                    "{arg}: `{name}` is {:?} {:?}, the parameter {:?} {:?}",
                    t.dtype(),
                    t.dims(),
                    var.dtype(),
                    var.dims()
                )));
            }
            if !t.device().same_device(var.device()) {
                return Err(EvalError::Invalid(format!(
                    "{arg}: `{name}` is on {:?}, the model on {:?}",
                    t.device(),
                    var.device()
                )));
            }
        }
        Ok(())
    }
}
