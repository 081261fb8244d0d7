//! SAM and ASAM as in davda54/sam (the copy SADA-JEM vendors).

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::{OptimError, Optimizer, Result};

/// Sharpness-aware minimization around a base optimizer.
///
/// [`Sam::first_step`]: `n = || (|w| if adaptive) * g ||_2` over all parameters with a
/// gradient, `scale = rho / (n + 1e-12)`, and each weight moves to
/// `w + (w^2 if adaptive) * g * scale` (its old value is kept). The caller then recomputes
/// the loss and its gradients at the perturbed weights (the reference freezes BatchNorm's
/// running statistics for this pass) and calls [`Sam::second_step`], which restores the old
/// weights and applies the base optimizer with the new gradients.
#[derive(Debug)]
pub struct Sam {
    /// Neighbourhood size (0.05 in SAM's paper, 0.2 in SADA-JEM's, 2.0 with ASAM in its code).
    pub rho: f64,
    /// ASAM: scale the perturbation by the weights.
    pub adaptive: bool,
    old: BTreeMap<String, Tensor>,
}

impl Sam {
    /// SAM (`adaptive = false`) or ASAM (`adaptive = true`) with radius `rho`.
    pub fn new(rho: f64, adaptive: bool) -> Result<Self> {
        if !(rho >= 0.0 && rho.is_finite()) {
            return Err(OptimError::Invalid(format!(
                "optimizer.rho {rho} must be a finite number >= 0"
            )));
        }
        Ok(Self {
            rho,
            adaptive,
            old: BTreeMap::new(),
        })
    }

    /// Moves the weights to the worst point of the neighbourhood; returns the gradient norm.
    pub fn first_step(&mut self, params: &[(&str, &Var)], grads: &GradStore) -> Result<f64> {
        let mut norms = Vec::new();
        for &(_, p) in params {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let scaled = if self.adaptive {
                (p.as_detached_tensor().abs()? * g)?
            } else {
                g.clone()
            };
            norms.push(scaled.sqr()?.sum_all()?.sqrt()?.to_dtype(DType::F32)?);
        }
        if norms.is_empty() {
            return Err(OptimError::Invalid(
                "SAM first step: no parameter has a gradient".into(),
            ));
        }
        let norm = Tensor::stack(&norms, 0)?
            .sqr()?
            .sum_all()?
            .sqrt()?
            .to_scalar::<f32>()?;
        let scale = (self.rho as f32) / (norm + 1e-12);
        self.old.clear();
        for &(name, p) in params {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let w = p.as_detached_tensor();
            self.old.insert(name.to_string(), w.copy()?);
            let e = if self.adaptive {
                (w.sqr()? * g)?
            } else {
                g.clone()
            };
            let e = (e * scale as f64)?;
            p.set(&(w + e)?)?;
        }
        Ok(norm as f64)
    }

    /// Restores the weights saved by the first step and applies `base` with `grads` (the
    /// gradients at the perturbed weights).
    pub fn second_step(
        &mut self,
        params: &[(&str, &Var)],
        grads: &GradStore,
        base: &mut dyn Optimizer,
    ) -> Result<()> {
        if self.old.is_empty() {
            return Err(OptimError::Invalid(
                "SAM second step without a first step".into(),
            ));
        }
        for &(name, p) in params {
            if let Some(old) = self.old.remove(name) {
                p.set(&old)?;
            }
        }
        self.old.clear();
        base.step(params, grads)
    }
}
