//! `torch.optim.SGD`.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{OptimError, OptimState, Optimizer, Result};

/// Settings of [`Sgd`], with PyTorch's meaning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0: plain SGD).
    pub momentum: f64,
    /// Dampening of the momentum.
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0 and no dampening).
    pub nesterov: bool,
    /// L2 penalty added to every gradient (`g + wd * w`).
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
}

/// Stochastic gradient descent exactly as `torch.optim.SGD`:
/// `d = g + wd w`; `buf = d` on the first step, then `buf = mu buf + (1 - dampening) d`;
/// `d = d + mu buf` (Nesterov) or `d = buf`; `w = w - lr d`.
#[derive(Debug)]
pub struct Sgd {
    /// Settings (the learning rate changes with the schedule).
    pub config: SgdConfig,
    buffers: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// A new optimizer; check the settings with [`Sgd::validate`].
    pub fn new(config: SgdConfig) -> Self {
        Self {
            config,
            buffers: BTreeMap::new(),
        }
    }

    /// Checks the settings as PyTorch does.
    pub fn validate(&self) -> Result<()> {
        let c = &self.config;
        if !(c.lr >= 0.0 && c.momentum >= 0.0 && c.weight_decay >= 0.0) {
            return Err(OptimError::Invalid(format!(
                "optimizer: lr {}, momentum {} and weight_decay {} must be >= 0",
                c.lr, c.momentum, c.weight_decay
            )));
        }
        if c.nesterov && (c.momentum <= 0.0 || c.dampening != 0.0) {
            return Err(OptimError::Invalid(
                "optimizer.nesterov needs momentum > 0 and dampening 0".into(),
            ));
        }
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &[(&str, &Var)], grads: &GradStore) -> Result<()> {
        let c = self.config.clone();
        for &(name, p) in params {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let w = p.as_detached_tensor();
            let mut d = g.detach();
            if c.weight_decay != 0.0 {
                d = (d + (&w * c.weight_decay)?)?;
            }
            if c.momentum != 0.0 {
                let buf = match self.buffers.get(name) {
                    None => d.copy()?,
                    Some(b) => ((b * c.momentum)? + (&d * (1.0 - c.dampening))?)?,
                };
                d = if c.nesterov {
                    (d + (&buf * c.momentum)?)?
                } else {
                    buf.clone()
                };
                self.buffers.insert(name.to_string(), buf);
            }
            p.set(&(w - (d * c.lr)?)?)?;
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.config.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    fn state(&self) -> Result<OptimState> {
        let mut s = OptimState::new("sgd");
        s.scalars.insert("lr".into(), self.config.lr);
        for (k, b) in &self.buffers {
            s.tensors.insert(format!("momentum_buffer.{k}"), b.copy()?);
        }
        Ok(s)
    }

    fn load_state(&mut self, state: &OptimState) -> Result<()> {
        state.expect_kind("sgd")?;
        self.config.lr = state.scalar("lr")?;
        self.buffers = state.tensors_with_prefix("momentum_buffer.");
        Ok(())
    }
}
