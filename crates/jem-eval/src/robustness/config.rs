//! The attack's settings and their checks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{EvalError, Result};

/// The norm of the threat model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttackNorm {
    /// L-infinity ball; sign-gradient steps (the reference's `l_inf`).
    #[serde(rename = "l_inf")]
    Linf,
    /// L2 ball; steps along the per-image L2-normalized gradient (the reference's `l_2`).
    #[serde(rename = "l_2")]
    L2,
}

impl fmt::Display for AttackNorm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttackNorm::Linf => "L-inf",
            AttackNorm::L2 => "L2",
        })
    }
}

impl FromStr for AttackNorm {
    type Err = EvalError;

    /// Parses `linf`, `l_inf`, `l-inf`, `inf` or `l2`, `l_2`, `l-2` (any case).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "linf" | "l_inf" | "l-inf" | "inf" => Ok(AttackNorm::Linf),
            "l2" | "l_2" | "l-2" => Ok(AttackNorm::L2),
            other => Err(EvalError::Invalid(format!(
                "attack norm `{other}`: expected `linf` or `l2`"
            ))),
        }
    }
}

/// The reference's BPDA+EOT attack through an SGLD purification defence
/// (`bpda_eot_attack.py`, with `use_bpda_eot: true` and averaging over logits).
///
/// The defended classifier purifies its input with `langevin_steps` steps
/// `x <- x + langevin_step_size * grad_x LSE(f(x)) + langevin_noise * N(0, I)` (model space,
/// no clamping) and classifies the purified image; being stochastic, it averages the logits of
/// several independently purified copies. The attack gradient (BPDA: the purification is
/// treated as the identity in the backward pass; EOT: averaged over `attack_reps` copies) is
/// the input gradient of the cross-entropy of the averaged logits at the purified copies,
/// averaged over the copies. An image that the `attack_reps`-copy prediction misclassifies is
/// counted as broken only if a prediction over `defense_reps` fresh copies confirms it (the
/// reference's `eot_defense_verification`; `defense_reps = 0` skips the confirmation).
///
/// With `langevin_steps = 0` (the reference's `bpda_eot_attack_jem.json`) the defence does
/// nothing and the attack is plain PGD, exactly as without this option.
///
/// Deviation: the reference's `purify` steps by `-grad f(x)[0].sum()`, where its `f(x)` is
/// `LSE(logits)` per image, i.e. it *descends* the log-density and differentiates only the
/// first image of the batch; both are inert there (0 steps). This implementation ascends the
/// log-density of every image (the purification of Hill et al. that the script comes from).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BpdaEot {
    /// Purification steps (reference: 0).
    pub langevin_steps: usize,
    /// Step size on `grad_x LSE(f(x))`, model space (reference: 1, implicit).
    pub langevin_step_size: f64,
    /// Standard deviation of the Gaussian noise of each step, model space (reference: 0.01).
    pub langevin_noise: f64,
    /// Purified copies per image for the attack gradient and the per-step prediction
    /// (reference: 15).
    pub attack_reps: usize,
    /// Purified copies to confirm a break (reference: 150; 0 = no confirmation).
    pub defense_reps: usize,
}

impl BpdaEot {
    /// The reference's `bpda_eot_attack_jem.json` (0 Langevin steps: plain PGD).
    pub fn reference() -> Self {
        Self {
            langevin_steps: 0,
            langevin_step_size: 1.0,
            langevin_noise: 1e-2,
            attack_reps: 15,
            defense_reps: 150,
        }
    }

    /// Whether the defence changes anything (some Langevin steps).
    pub fn is_active(&self) -> bool {
        self.langevin_steps > 0
    }
}

/// A white-box PGD attack.
///
/// Radii and step sizes are in **[0, 1]-pixel units** (8/255 is the usual L-infinity radius
/// of CIFAR-10); the attack works in model space with `eps * pixel_scale` and
/// `step_size * pixel_scale`. For the L2 norm the same scaling applies to the whole vector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PgdConfig {
    /// The threat model's norm.
    pub norm: AttackNorm,
    /// Radius of the ball, [0, 1]-pixel units (ignored by [`robust_accuracy`](super::robust_accuracy),
    /// which takes a list).
    pub eps: f64,
    /// Step size, [0, 1]-pixel units (L-infinity: per-pixel sign step; L2: length of the step).
    pub step_size: f64,
    /// Gradient steps.
    pub steps: usize,
    /// Start at a random point of the ball (L-infinity: uniform in the cube; L2: a uniform
    /// direction times `eps * U(0, 1)`, as the reference), clamped into the box.
    pub random_start: bool,
    /// Model-space units per [0, 1]-pixel unit: 2 for images normalized by
    /// `(x - 0.5) / 0.5` (the data pipeline of this project and of the reference).
    pub pixel_scale: f64,
    /// The valid pixel box in model space, `(lo, hi)` (`(-1, 1)` for the normalized images),
    /// applied after each projection; `None` leaves the images unbounded.
    pub clip: Option<(f64, f64)>,
    /// The BPDA+EOT attack through a purification defence; `None` attacks the classifier.
    pub bpda_eot: Option<BpdaEot>,
}

/// The radii of the reference's `scripts/bpda_attack.sh`, in /255 units.
pub const REFERENCE_EPS_255: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 22.0, 30.0];

/// [`REFERENCE_EPS_255`] in [0, 1]-pixel units (`eps / 255`).
pub fn reference_eps_list() -> Vec<f64> {
    REFERENCE_EPS_255.iter().map(|e| e / 255.0).collect()
}

impl PgdConfig {
    /// The reference's attack: PGD-50, step 2/255, random start, radius 8/255, images
    /// normalized to `[-1, 1]` (`pixel_scale` 2, box `(-1, 1)`), no purification.
    pub fn reference(norm: AttackNorm) -> Self {
        Self {
            norm,
            eps: 8.0 / 255.0,
            step_size: 2.0 / 255.0,
            steps: 50,
            random_start: true,
            pixel_scale: 2.0,
            clip: Some((-1.0, 1.0)),
            bpda_eot: None,
        }
    }

    /// The same attack with radius `eps` ([0, 1]-pixel units).
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// The radius in model space.
    pub fn eps_model(&self) -> f64 {
        self.eps * self.pixel_scale
    }

    /// The step size in model space.
    pub fn step_model(&self) -> f64 {
        self.step_size * self.pixel_scale
    }

    /// Checks every field; the error names the offending one.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: String| {
            Err(EvalError::Invalid(format!("PGD config `{field}`: {why}")))
        };
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return bad("eps", format!("{} is not a finite radius >= 0", self.eps));
        }
        if !(self.step_size.is_finite() && self.step_size >= 0.0) {
            return bad(
                "step_size",
                format!("{} is not a finite step >= 0", self.step_size),
            );
        }
        if !(self.pixel_scale.is_finite() && self.pixel_scale > 0.0) {
            return bad(
                "pixel_scale",
                format!("{} is not a finite scale > 0", self.pixel_scale),
            );
        }
        if let Some((lo, hi)) = self.clip
            && !(lo.is_finite() && hi.is_finite() && lo < hi)
        {
            return bad(
                "clip",
                format!("({lo}, {hi}) is not a finite box with lo < hi"),
            );
        }
        if let Some(e) = &self.bpda_eot {
            if !(e.langevin_step_size.is_finite() && e.langevin_step_size >= 0.0) {
                return bad(
                    "bpda_eot.langevin_step_size",
                    format!("{} is not a finite step >= 0", e.langevin_step_size),
                );
            }
            if !(e.langevin_noise.is_finite() && e.langevin_noise >= 0.0) {
                return bad(
                    "bpda_eot.langevin_noise",
                    format!("{} is not a finite deviation >= 0", e.langevin_noise),
                );
            }
            if e.attack_reps == 0 {
                return bad("bpda_eot.attack_reps", "must be at least 1".into());
            }
        }
        Ok(())
    }
}

impl Default for PgdConfig {
    /// [`PgdConfig::reference`] under L-infinity.
    fn default() -> Self {
        Self::reference(AttackNorm::Linf)
    }
}
