//! candle-nn interop: [`WideResNet`] as a `candle_nn::ModuleT` (and, in evaluation mode, a
//! `Module`: [`WideResNet::eval_module`]), loaded from a
//! `VarBuilder`, its parameters as `Var`s for candle-nn's optimizers or a `VarMap`.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{ModuleT, Optimizer};
//! use jem_models::{WideResNet, WrnConfig};
//!
//! let dev = Device::Cpu;
//! let model = WideResNet::new(WrnConfig::reference(10, 1, 10), 0, &dev)?;
//! let x = Tensor::randn(0f32, 1.0, (4, 3, 32, 32), &dev)?;
//! let y = Tensor::new(&[0u32, 1, 2, 3], &dev)?;
//! let mut opt = candle_nn::SGD::new(model.store.vars(), 0.01)?;
//! let loss = candle_nn::loss::cross_entropy(&model.forward_t(&x, true)?, &y)?;
//! opt.backward_step(&loss)?;
//! assert_eq!(model.forward_t(&x, false)?.dims(), [4, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where this crate differs from candle-nn, and why
//!
//! - **BatchNorm has three modes** ([`BnMode`]), not two: besides training (batch
//!   statistics, running statistics updated) and evaluation (running statistics), SADA-JEM's
//!   SGLD and SAM's second pass normalize with the batch's statistics while leaving the
//!   running statistics alone (`TrainFrozen`). `ModuleT::forward_t(x, true)` is `Train`,
//!   `false` is `Eval`; call [`WideResNet::logits`] for `TrainFrozen`.
//! - **The running statistics** are updated as candle-nn's and PyTorch's are (`(1 - m) *
//!   running + m * batch`, unbiased batch variance), but on jem-kernels' fused CPU kernels,
//!   and `m` is the config's `bn_momentum`: the reference passes 0.9 where PyTorch's default
//!   is 0.1, so the newest batch weighs 90 %.
//! - **SGD is PyTorch's** (`jem-optim`): momentum with dampening, weight decay added to the
//!   gradient, Nesterov; candle-nn's `SGD` is plain gradient descent. A candle-nn optimizer
//!   works on the same `Var`s (above), but the reference's training needs jem-optim's.
//! - **Parameters live in a [`ParamStore`]** (names as the reference's PyTorch `state_dict`,
//!   `f.layer1.0.conv1.weight`, buffers apart from parameters), not a `VarMap`, because
//!   buffers (BatchNorm's running statistics) must never reach an optimizer.
//!   [`ParamStore::to_var_map`] gives a `VarMap` that shares the same `Var`s.

use candle_core::{Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};

use crate::layers::BnMode;
use crate::params::ParamStore;
use crate::wrn::{WideResNet, WrnConfig};
use crate::{ModelError, Result};

fn to_candle(e: ModelError) -> candle_core::Error {
    match e {
        ModelError::Candle(e) => e,
        e => candle_core::Error::wrap(e),
    }
}

impl candle_nn::ModuleT for WideResNet {
    /// Logits; `train` normalizes with the batch's statistics and updates the running ones.
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let mode = if train { BnMode::Train } else { BnMode::Eval };
        self.logits(xs, mode).map_err(to_candle)
    }
}

/// A [`WideResNet`] in evaluation mode as a `candle_nn::Module` ([`WideResNet::eval_module`]).
///
/// candle implements `ModuleT` for every `Module`, ignoring the mode, so the network itself
/// can only be a `ModuleT`; this wrapper is its mode-free view for APIs that take a `Module`.
#[derive(Clone, Copy, Debug)]
pub struct EvalModule<'a>(pub &'a WideResNet);

impl candle_nn::Module for EvalModule<'_> {
    /// Logits with the running statistics (`model.eval()`).
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ModuleT::forward_t(self.0, xs, false)
    }
}

impl ParamStore {
    /// The trainable parameters (not the buffers), for candle-nn's optimizers: updating
    /// them updates this store.
    pub fn vars(&self) -> Vec<Var> {
        self.params().map(|(_, v)| v.clone()).collect()
    }

    /// A candle-nn `VarMap` holding this store's parameters and buffers under their names.
    /// The `Var`s are shared, not copied: `VarMap::load` writes into this model and
    /// `VarMap::save` saves it. (`VarMap::all_vars` includes the buffers: give an optimizer
    /// [`vars`](Self::vars) instead.)
    pub fn to_var_map(&self) -> VarMap {
        let map = VarMap::new();
        {
            let mut data = map.data().lock().unwrap_or_else(|p| p.into_inner());
            for (name, var) in self.params().chain(self.buffers()) {
                data.insert(name.to_string(), var.clone());
            }
        }
        map
    }
}

impl WideResNet {
    /// This network in evaluation mode as a `candle_nn::Module`.
    pub fn eval_module(&self) -> EvalModule<'_> {
        EvalModule(self)
    }

    /// The network of `config` with every parameter and buffer read from `vb` under the
    /// reference's names (e.g. a `VarBuilder::from_mmaped_safetensors` over a file written
    /// by [`ParamStore::save`] or converted from the reference's checkpoint). A tensor
    /// missing or of the wrong shape is an error naming it.
    pub fn from_var_builder(config: WrnConfig, vb: &VarBuilder) -> Result<Self> {
        let model = WideResNet::new(config, 0, vb.device())?;
        for (name, var) in model.store.params().chain(model.store.buffers()) {
            let t = vb
                .get_with_hints_dtype(var.dims(), name, Init::Const(0.0), var.dtype())
                .map_err(|e| ModelError::Invalid(format!("VarBuilder: tensor `{name}`: {e}")))?;
            var.set(&t)?;
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{Module, ModuleT};
    use std::collections::HashMap;

    fn model(seed: u64) -> WideResNet {
        WideResNet::new(WrnConfig::reference(10, 1, 10), seed, &Device::Cpu).unwrap()
    }

    #[test]
    fn var_builder_and_var_map_round_trip_the_weights() {
        let a = model(1);
        let x = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
        let want = a.eval_module().forward(&x).unwrap();
        let tensors: HashMap<String, Tensor> = a.store.snapshot().unwrap().into_iter().collect();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let b = WideResNet::from_var_builder(a.config.clone(), &vb).unwrap();
        let got = b.eval_module().forward(&x).unwrap();
        let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);

        // a VarMap shares the Vars: loading into it changes the model
        let c = model(2);
        let dir = std::env::temp_dir().join(format!("jem-interop-{}", std::process::id()));
        let file = dir.join("a.safetensors");
        a.store.save(&file).unwrap();
        let mut map = c.store.to_var_map();
        map.load(&file).unwrap();
        let diff = (c.forward_t(&x, false).unwrap() - &want)
            .unwrap()
            .abs()
            .unwrap();
        assert_eq!(diff.max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        std::fs::remove_dir_all(&dir).unwrap();

        // a missing tensor is named
        let vb = VarBuilder::from_tensors(HashMap::new(), DType::F32, &Device::Cpu);
        let e = WideResNet::from_var_builder(a.config.clone(), &vb).unwrap_err();
        assert!(e.to_string().contains("tensor `class_output.bias`"), "{e}");
    }
}
