//! `torch.optim.Adam`.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{OptimError, OptimState, Optimizer, Result};

/// Settings of [`Adam`], with PyTorch's meaning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient (coupled, as `torch.optim.Adam`).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam exactly as `torch.optim.Adam` (single-tensor path): `g = g + wd w`;
/// `m = lerp(m, g, 1 - b1)`; `v = b2 v + (1 - b2) g^2`;
/// `w = w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
#[derive(Debug)]
pub struct Adam {
    /// Settings.
    pub config: AdamConfig,
    step: u64,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
}

impl Adam {
    /// A new optimizer.
    pub fn new(config: AdamConfig) -> Self {
        Self {
            config,
            step: 0,
            m: BTreeMap::new(),
            v: BTreeMap::new(),
        }
    }

    /// Checks the settings as PyTorch does.
    pub fn validate(&self) -> Result<()> {
        let c = &self.config;
        if !(c.lr >= 0.0
            && c.eps >= 0.0
            && (0.0..1.0).contains(&c.beta1)
            && (0.0..1.0).contains(&c.beta2))
        {
            return Err(OptimError::Invalid(format!(
                "optimizer: Adam needs lr >= 0, eps >= 0 and betas in [0, 1); got lr {}, eps {}, betas ({}, {})",
                c.lr, c.eps, c.beta1, c.beta2
            )));
        }
        Ok(())
    }
}

/// `torch.lerp(a, b, w)`: `a + w (b - a)` for `w < 0.5`, else `b - (b - a)(1 - w)`.
fn lerp(a: &Tensor, b: &Tensor, w: f64) -> candle_core::Result<Tensor> {
    let diff = (b - a)?;
    if w < 0.5 {
        a + (diff * w)?
    } else {
        b - (diff * (1.0 - w))?
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &[(&str, &Var)], grads: &GradStore) -> Result<()> {
        let c = self.config.clone();
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for &(name, p) in params {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let w = p.as_detached_tensor();
            let mut g = g.detach();
            if c.weight_decay != 0.0 {
                g = (g + (&w * c.weight_decay)?)?;
            }
            let m = match self.m.get(name) {
                Some(m) => lerp(m, &g, 1.0 - c.beta1)?,
                None => lerp(&g.zeros_like()?, &g, 1.0 - c.beta1)?,
            };
            let g2 = (&g * &g)?;
            let v = match self.v.get(name) {
                Some(v) => ((v * c.beta2)? + (g2 * (1.0 - c.beta2))?)?,
                None => (g2 * (1.0 - c.beta2))?,
            };
            let denom = ((v.sqrt()? / bc2.sqrt())? + c.eps)?;
            let update = ((&m / denom)? * (c.lr / bc1))?;
            p.set(&(w - update)?)?;
            self.m.insert(name.to_string(), m);
            self.v.insert(name.to_string(), v);
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
        let mut s = OptimState::new("adam");
        s.scalars.insert("lr".into(), self.config.lr);
        s.scalars.insert("step".into(), self.step as f64);
        for (k, m) in &self.m {
            s.tensors.insert(format!("exp_avg.{k}"), m.copy()?);
        }
        for (k, v) in &self.v {
            s.tensors.insert(format!("exp_avg_sq.{k}"), v.copy()?);
        }
        Ok(s)
    }

    fn load_state(&mut self, state: &OptimState) -> Result<()> {
        state.expect_kind("adam")?;
        self.config.lr = state.scalar("lr")?;
        self.step = state.scalar("step")? as u64;
        self.m = state.tensors_with_prefix("exp_avg.");
        self.v = state.tensors_with_prefix("exp_avg_sq.");
        Ok(())
    }
}
