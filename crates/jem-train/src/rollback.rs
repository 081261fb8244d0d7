//! Rolling a diverged run back to its last checkpoint, with the guard's recoveries.

use crate::checkpoint::{Checkpoint, GuardState, RollbackEvent};
use crate::config::Recovery;
use crate::trainer::Trainer;
use crate::{Result, TrainError};

impl Trainer {
    /// Handles a divergence at the current iteration: counts it, stops when the guard's
    /// budget is spent (the event is kept in the progress, so that the summary reports it),
    /// otherwise reloads `last.safetensors` and applies the recoveries.
    pub(crate) fn rollback(&mut self, reason: &str) -> Result<()> {
        let at = self.progress.iteration;
        let mut g: GuardState = self.progress.guard.clone();
        g.failures += 1;
        self.log.write(&serde_json::json!({
            "event": "divergence", "iteration": at, "reason": reason, "failures": g.failures,
        }))?;
        if g.failures > self.cfg.guard.max_failures {
            g.events.push(RollbackEvent {
                iteration: at,
                cause: reason.to_string(),
                to_iteration: None,
                change: "none: the run stopped".into(),
            });
            let failures = g.failures;
            self.progress.guard = g;
            return Err(TrainError::Diverged(format!(
                "iteration {at}: {reason}; this is divergence number {} and guard.max_failures is {}. \
                 The last good state is {}. Retrying with new random streams did not help; the \
                 experiment can be changed with a lower optim.lr, more sampler.steps, loss.l2, \
                 or guard.recovery = [\"new-seed\", \"lower-lr\", \"more-steps\"], then \
                 `jem train --resume`.",
                failures,
                self.cfg.guard.max_failures,
                self.opts.run_dir.join("last.safetensors").display()
            )));
        }
        let mut changes = Vec::new();
        for r in &self.cfg.guard.recovery {
            match r {
                Recovery::NewSeed => {
                    g.seed_offset += 1;
                    changes.push(format!("new random stream (seed offset {})", g.seed_offset));
                }
                Recovery::LowerLr => {
                    g.lr_scale *= self.cfg.guard.lr_factor;
                    changes.push(format!("learning rate x{}", g.lr_scale));
                }
                Recovery::MoreSteps => {
                    g.extra_steps += self.cfg.guard.extra_steps;
                    changes.push(format!("K + {} SGLD steps", g.extra_steps));
                }
            }
        }
        let path = self.opts.run_dir.join("last.safetensors");
        let ck = Checkpoint::load(&path, &self.opts.device)?;
        self.restore(ck, &path)?;
        let best_aside = crate::complete::reconcile_best(&self.opts.run_dir, &mut self.progress)?;
        g.events.push(RollbackEvent {
            iteration: at,
            cause: reason.to_string(),
            to_iteration: Some(self.progress.iteration),
            change: if changes.is_empty() {
                "nothing (guard.recovery is empty)".into()
            } else {
                changes.join(", ")
            },
        });
        self.progress.guard = g.clone();
        // the iterations after the checkpoint run again: their records go
        crate::rundir::trim_logs(&self.opts.run_dir, &self.progress)?;
        self.log.write(&serde_json::json!({
            "event": "rollback", "from_iteration": at, "to_iteration": self.progress.iteration,
            "seed_offset": g.seed_offset, "lr_scale": g.lr_scale, "extra_steps": g.extra_steps,
            "change": g.events.last().map(|e| e.change.clone()),
            "best_set_aside": best_aside,
        }))?;
        Ok(())
    }
}
