//! SGLD update rules and chains.

use candle_core::{Tensor, Var};
use jem_models::BnMode;
use jem_models::jem::{self, Classifier};
use jem_rng::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::{Result, SamplerError};

/// One step of a chain, given the gradient `g` of the log-density at `x`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SgldRule {
    /// The SADA-JEM / JEM++ training rule (`train_sadajem.py: sample_q`):
    /// `x <- clamp(x + step * clamp(g, -clip, clip) + noise * eps, -1, 1)`; the reference uses
    /// step 1, clip 1, noise 0.
    Clipped {
        /// Step size (`sgld_lr`).
        step: f64,
        /// Bound of the element-wise gradient clip.
        clip: f64,
        /// Standard deviation of the added noise (`sgld_std`).
        noise: f64,
    },
    /// True Langevin dynamics as JEM: `x <- x + step * g + noise * eps`, no clipping of the
    /// gradient or of `x` (JEM: step 1, noise 0.01).
    Langevin {
        /// Step size.
        step: f64,
        /// Noise standard deviation.
        noise: f64,
    },
    /// The reference's evaluation / generation rule (`eval_sadajem.py: sample_q`):
    /// `x <- clamp(x + step * g + noise * eps, -1, 1)` with no gradient clip.
    Unclipped {
        /// Step size.
        step: f64,
        /// Noise standard deviation.
        noise: f64,
    },
}

impl SgldRule {
    /// The SADA-JEM training rule: step 1, clip 1, no noise.
    pub const REFERENCE: SgldRule = SgldRule::Clipped {
        step: 1.0,
        clip: 1.0,
        noise: 0.0,
    };
    /// JEM's rule: step 1, noise 0.01.
    pub const JEM: SgldRule = SgldRule::Langevin {
        step: 1.0,
        noise: 0.01,
    };

    fn noise(&self) -> f64 {
        match *self {
            SgldRule::Clipped { noise, .. }
            | SgldRule::Langevin { noise, .. }
            | SgldRule::Unclipped { noise, .. } => noise,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            SgldRule::Clipped { step, clip, noise } => step >= 0.0 && clip > 0.0 && noise >= 0.0,
            SgldRule::Langevin { step, noise } | SgldRule::Unclipped { step, noise } => {
                step >= 0.0 && noise >= 0.0
            }
        };
        if !ok {
            return Err(SamplerError::Invalid(format!(
                "sgld.rule: invalid settings {self:?}"
            )));
        }
        Ok(())
    }

    /// Applies the rule to `x` with log-density gradient `g`; `rng` draws the noise.
    pub fn apply(&self, x: &Tensor, g: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let moved = match *self {
            SgldRule::Clipped { step, clip, .. } => (x + (g.clamp(-clip, clip)? * step)?)?,
            SgldRule::Langevin { step, .. } | SgldRule::Unclipped { step, .. } => {
                (x + (g * step)?)?
            }
        };
        let sigma = self.noise();
        let moved = if sigma > 0.0 {
            let eps: Vec<f32> = (0..x.elem_count())
                .map(|_| {
                    let e: f32 = StandardNormal.sample(rng);
                    e * sigma as f32
                })
                .collect();
            (moved + Tensor::from_vec(eps, x.shape(), x.device())?)?
        } else {
            moved
        };
        Ok(match self {
            SgldRule::Langevin { .. } => moved,
            _ => moved.clamp(-1f32, 1f32)?,
        })
    }
}

/// K steps of a rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sgld {
    /// The update rule.
    pub rule: SgldRule,
    /// Steps per chain (K).
    pub steps: usize,
    /// BatchNorm mode of the model while sampling (the reference: train mode, updating the
    /// running statistics at every step).
    pub bn_mode: BnMode,
}

impl Sgld {
    /// The SADA-JEM training sampler with `steps` steps.
    pub fn reference(steps: usize) -> Self {
        Self {
            rule: SgldRule::REFERENCE,
            steps,
            bn_mode: BnMode::Train,
        }
    }

    /// Runs the chains from `x` (`[N, C, H, W]`) ascending `sum LSE(f(x))`, or
    /// `sum f(x)[y]` when `labels` are given (class-conditional sampling).
    pub fn run<M: Classifier + ?Sized>(
        &self,
        model: &M,
        x: &Tensor,
        labels: Option<&Tensor>,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor> {
        self.rule.validate()?;
        let mut x = x.detach();
        for _ in 0..self.steps {
            let g = match labels {
                None => jem::input_gradient(model, &x, self.bn_mode)?.0,
                Some(y) => conditional_gradient(model, &x, y, self.bn_mode)?,
            };
            x = self.rule.apply(&x, &g, rng)?.detach();
        }
        Ok(x)
    }
}

/// The gradient of `sum_i f(x_i)[y_i]` with respect to `x`.
pub fn conditional_gradient<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    mode: BnMode,
) -> Result<Tensor> {
    Ok(conditional_gradient_and_logit(model, x, y, mode)?.0)
}

/// The gradient of `sum_i f(x_i)[y_i]` with respect to `x`, and `f(x)[y]` (`[N]`, detached).
pub fn conditional_gradient_and_logit<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    mode: BnMode,
) -> Result<(Tensor, Tensor)> {
    let xv = Var::from_tensor(&x.detach())?;
    let fy = jem::class_logit(&model.logits_input_only(xv.as_tensor(), mode)?, y)?;
    let grads = fy.sum_all()?.backward()?;
    let g = grads
        .get(xv.as_tensor())
        .cloned()
        .ok_or_else(|| SamplerError::Invalid("no gradient reached the input".into()))?;
    Ok((g, fy.detach()))
}
