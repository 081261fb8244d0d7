//! Learning-rate schedules: linear warm-up by iteration, then a decay by epoch.

use serde::{Deserialize, Serialize};

use crate::{OptimError, Result};

/// What happens after the warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Decay {
    /// The base rate throughout.
    Constant,
    /// Multiply by `gamma` at each milestone epoch (the reference: 0.2 at 60, 120, 180).
    MultiStep {
        /// Epochs (from 0) at whose start the rate is multiplied.
        milestones: Vec<usize>,
        /// Factor per milestone.
        gamma: f64,
    },
    /// Cosine from the base rate to `min_lr` over `epochs` epochs, per iteration.
    Cosine {
        /// Length of the schedule in epochs.
        epochs: usize,
        /// Final rate.
        min_lr: f64,
    },
}

/// A learning-rate schedule, as the reference applies it: for iteration `i <= warmup_iters`
/// the rate is `base_lr * i / warmup_iters` (0 at the very first iteration), afterwards the
/// decayed rate of the current epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Peak rate.
    pub base_lr: f64,
    /// Iterations of linear warm-up (0: none).
    pub warmup_iters: usize,
    /// Decay after the warm-up.
    pub decay: Decay,
}

impl Schedule {
    /// The reference's schedule: warm-up over 1000 iterations, x0.2 at epochs 60/120/180.
    pub fn reference(base_lr: f64) -> Self {
        Self {
            base_lr,
            warmup_iters: 1000,
            decay: Decay::MultiStep {
                milestones: vec![60, 120, 180],
                gamma: 0.2,
            },
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let ok = self.base_lr >= 0.0
            && match &self.decay {
                Decay::Constant => true,
                Decay::MultiStep { gamma, .. } => *gamma > 0.0,
                Decay::Cosine { epochs, min_lr } => *epochs > 0 && *min_lr >= 0.0,
            };
        if !ok {
            return Err(OptimError::Invalid(format!(
                "schedule: invalid settings {self:?}"
            )));
        }
        Ok(())
    }

    /// The rate of global iteration `iter` (from 0), in epoch `epoch`, with
    /// `iters_per_epoch` iterations per epoch (used by the cosine decay).
    pub fn lr(&self, iter: usize, epoch: usize, iters_per_epoch: usize) -> f64 {
        if self.warmup_iters > 0 && iter <= self.warmup_iters {
            return self.base_lr * iter as f64 / self.warmup_iters as f64;
        }
        match &self.decay {
            Decay::Constant => self.base_lr,
            Decay::MultiStep { milestones, gamma } => {
                let k = milestones.iter().filter(|&&m| m <= epoch).count();
                self.base_lr * gamma.powi(k as i32)
            }
            Decay::Cosine { epochs, min_lr } => {
                let total = (*epochs * iters_per_epoch.max(1)) as f64;
                let t = (iter as f64 / total).min(1.0);
                min_lr + (self.base_lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_schedule() {
        let s = Schedule::reference(0.1);
        assert_eq!(s.lr(0, 0, 390), 0.0);
        assert!((s.lr(500, 1, 390) - 0.05).abs() < 1e-15);
        assert_eq!(s.lr(1000, 2, 390), 0.1);
        assert_eq!(s.lr(1001, 2, 390), 0.1);
        assert!((s.lr(60 * 390, 60, 390) - 0.02).abs() < 1e-15);
        assert!((s.lr(130 * 390, 130, 390) - 0.004).abs() < 1e-15);
        assert!((s.lr(199 * 390, 199, 390) - 0.0008).abs() < 1e-15);
    }

    #[test]
    fn cosine_ends_at_min() {
        let s = Schedule {
            base_lr: 0.1,
            warmup_iters: 0,
            decay: Decay::Cosine {
                epochs: 10,
                min_lr: 0.001,
            },
        };
        assert!((s.lr(0, 0, 100) - 0.1).abs() < 1e-15);
        assert!((s.lr(500, 5, 100) - 0.0505).abs() < 1e-12);
        assert!((s.lr(1000, 10, 100) - 0.001).abs() < 1e-15);
        assert!(Schedule { base_lr: -1.0, ..s }.validate().is_err());
    }
}
