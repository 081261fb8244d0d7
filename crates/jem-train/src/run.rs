//! The training loop.

use std::collections::BTreeSet;
use std::time::Instant;

use jem_data::rng::rng_for;
use jem_data::{Batches, Position};

use crate::algorithm::{BufferChains, IterationData, iteration};
use crate::config::{GuardConfig, SelectOn};
use crate::eval::{EvalRecord, evaluate};
use crate::log::{Reporter, TrainRecord};
use crate::step::StepStats;
use crate::trainer::{RunSummary, Trainer};
use crate::{Result, TrainError};

/// Checks the first pass of an iteration; `Some(reason)` on divergence.
fn diverged(g: &GuardConfig, s: &StepStats) -> Option<String> {
    if !s.loss.is_finite() || !s.e_pos.is_finite() || !s.e_neg.is_finite() {
        return Some(format!(
            "non-finite loss {} (E+ {}, E- {})",
            s.loss, s.e_pos, s.e_neg
        ));
    }
    if s.loss.abs() > g.max_abs_loss {
        return Some(format!(
            "|loss| {} > guard.max_abs_loss {}",
            s.loss, g.max_abs_loss
        ));
    }
    let e = s.e_pos.abs().max(s.e_neg.abs());
    if e > g.max_abs_energy {
        return Some(format!(
            "|energy| {e} > guard.max_abs_energy {}",
            g.max_abs_energy
        ));
    }
    None
}

/// Sums of logged scalars over a window of iterations.
#[derive(Default)]
struct Window {
    n: u64,
    sum: StepStats,
    seconds: f64,
}

impl Window {
    fn add(&mut self, s: &StepStats, seconds: f64) {
        self.n += 1;
        self.seconds += seconds;
        self.sum.e_pos += s.e_pos;
        self.sum.e_neg += s.e_neg;
        self.sum.ce += s.ce;
        self.sum.acc += s.acc;
        self.sum.loss += s.loss;
    }

    fn mean(&self) -> StepStats {
        let n = self.n.max(1) as f64;
        StepStats {
            e_pos: self.sum.e_pos / n,
            e_neg: self.sum.e_neg / n,
            ce: self.sum.ce / n,
            acc: self.sum.acc / n,
            loss: self.sum.loss / n,
        }
    }
}

struct Streams {
    px: Option<Batches>,
    clf: Batches,
}

fn next(stream: &mut Batches, what: &str) -> Result<jem_data::Batch> {
    stream
        .next()
        .ok_or_else(|| {
            TrainError::from(jem_data::DataError::Invalid(format!(
                "the {what} stream ended"
            )))
        })?
        .map_err(TrainError::from)
}

impl Trainer {
    fn streams(&self) -> Result<Streams> {
        let (px, clf) = self.data.train_loaders(
            &self.cfg,
            self.progress.guard.seed_offset,
            &self.opts.device,
        )?;
        let at = |bpe: u64| Position {
            epoch: self.progress.iteration / bpe,
            batch: (self.progress.iteration % bpe) as usize,
        };
        let generative = self.cfg.loss.px > 0.0;
        Ok(Streams {
            px: generative.then(|| px.cycle_from(at(px.batches_per_epoch() as u64))),
            clf: clf.cycle_from(at(self.iters_per_epoch)),
        })
    }

    /// The last iteration of the run: the schedule's end or `run.max_iters`.
    pub fn stop_iteration(&self) -> u64 {
        let end = self.cfg.schedule.epochs as u64 * self.iters_per_epoch;
        self.cfg.run.max_iters.map_or(end, |m| m.min(end))
    }

    /// One iteration; `Ok(Some(reason))` when it diverged (nothing was updated then).
    fn iteration(
        &mut self,
        streams: &mut Streams,
        injected: &mut BTreeSet<u64>,
    ) -> Result<(Option<String>, StepStats, Option<candle_core::Tensor>)> {
        let i = self.progress.iteration;
        let epoch = i / self.iters_per_epoch;
        let lr = self
            .schedule
            .lr(i as usize, epoch as usize, self.iters_per_epoch as usize)
            * self.progress.guard.lr_scale;
        self.opt.base.set_lr(lr);
        let clf = next(&mut streams.clf, "classification")?;
        let mut rng = rng_for(&[self.cfg.seed, self.progress.guard.seed_offset, i, 3]);
        let x_pos = match (&mut streams.px, &self.buffer) {
            (Some(px), Some(_)) => Some(next(px, "p(x)")?.images),
            _ => None,
        };
        let data = IterationData {
            x_pos,
            x_lab: clf.images,
            y_lab: clf.labels,
        };
        let sampler = self.sampler();
        let chains = self.buffer.as_mut().map(|buffer| BufferChains {
            buffer,
            gaussians: self.data.gaussians.as_ref(),
            sampler: &sampler,
            batch_size: self.cfg.data.px_batch_size,
        });
        let inject = self.cfg.guard.inject_nan_at.contains(&i) && injected.insert(i);
        let guard = &self.cfg.guard;
        let out = iteration(
            &self.model,
            data,
            chains,
            &mut rng,
            &self.cfg.loss,
            &mut self.opt,
            |stats| {
                if inject {
                    stats.loss = f64::NAN;
                }
                diverged(guard, stats)
            },
        )?;
        Ok((out.diverged, out.stats, out.x_neg))
    }

    fn record_eval(&mut self, reporter: &Reporter) -> Result<EvalRecord> {
        let mut r = evaluate(
            &self.model,
            &self.data,
            self.cfg.eval.ece_bins,
            self.cfg.eval.batch_size,
            &self.opts.device,
        )?;
        r.iteration = self.progress.iteration;
        r.epoch = self.progress.iteration as f64 / self.iters_per_epoch as f64;
        r.train_minutes = self.progress.train_seconds / 60.0;
        self.evals.write(
            &serde_json::to_value(&r).map_err(|source| TrainError::Json {
                what: "eval.jsonl".into(),
                source,
            })?,
        )?;
        let ood: Vec<String> = r
            .ood
            .iter()
            .map(|o| {
                format!(
                    "AUROC {} log p(x) {:.4} max p(y|x) {:.4}",
                    o.dataset, o.log_px, o.max_py
                )
            })
            .collect();
        reporter.println(&format!(
            "eval @ {} ({:.1} min): test acc {:.4}, ECE {:.4}{}{} [{:.0} s]",
            r.iteration,
            r.train_minutes,
            r.test_acc,
            r.test_ece,
            r.valid_acc
                .map(|v| format!(", valid acc {v:.4}"))
                .unwrap_or_default(),
            if ood.is_empty() {
                String::new()
            } else {
                format!(", {}", ood.join(", "))
            },
            r.seconds
        ));
        let metric = match self.cfg.run.select_on {
            SelectOn::Valid => r.valid_acc,
            SelectOn::Test => Some(r.test_acc),
            SelectOn::None => None,
        };
        if let Some(m) = metric
            && self.progress.best.is_none_or(|(b, _)| m > b)
            && self.model_is_finite()?
        {
            self.progress.best = Some((m, r.iteration));
            self.save_checkpoint("best.safetensors")?;
        }
        Ok(r)
    }

    /// Trains until the schedule ends, `run.max_iters` or `run.max_minutes`, evaluating,
    /// logging and checkpointing on the way, then writes the final figures.
    pub fn run(&mut self) -> Result<RunSummary> {
        let stop = self.stop_iteration();
        let reporter = Reporter::new(stop, self.progress.iteration, self.opts.quiet);
        let mut streams = self.streams()?;
        let mut window = Window::default();
        let mut injected = BTreeSet::new();
        let mut last_eval: Option<EvalRecord> = self.resumed_eval.take();
        let session_start = self.progress.train_seconds;
        let session_iter = self.progress.iteration;
        let max_seconds = self.cfg.run.max_minutes.map(|m| m * 60.0);
        let run = self.cfg.run.clone();
        let mut stopped = "the schedule ended".to_string();
        if self.progress.iteration == 0 && run.eval_every_iters > 0 && last_eval.is_none() {
            last_eval = Some(self.record_eval(&reporter)?);
        }
        while self.progress.iteration < stop {
            if crate::interrupt::requested() {
                reporter.finish();
                return self.stop_interrupted(last_eval, session_iter, session_start);
            }
            if let Some(m) = max_seconds
                && self.progress.train_seconds >= m
            {
                stopped = format!("run.max_minutes ({:.1}) reached", m / 60.0);
                break;
            }
            let t0 = Instant::now();
            let (bad, stats, x_neg) = self.iteration(&mut streams, &mut injected)?;
            if let Some(reason) = bad {
                reporter.println(&format!(
                    "divergence at iteration {}: {reason}; rolling back",
                    self.progress.iteration
                ));
                if let Err(e) = self.rollback(&reason) {
                    reporter.finish();
                    return Err(self.stop_diverged(e, last_eval, session_iter, session_start));
                }
                streams = self.streams()?;
                window = Window::default();
                continue;
            }
            let dt = t0.elapsed().as_secs_f64();
            self.progress.iteration += 1;
            self.progress.train_seconds += dt;
            window.add(&stats, dt);
            let it = self.progress.iteration;
            let lr = self.opt.base.lr();
            if it.is_multiple_of(run.log_every) || it == stop {
                let m = window.mean();
                let ips = window.n as f64 / window.seconds.max(1e-9);
                let (px, pyx) = (self.cfg.loss.px > 0.0, self.cfg.loss.pyx > 0.0);
                let rec = TrainRecord {
                    iteration: it,
                    epoch: it as f64 / self.iters_per_epoch as f64,
                    e_pos: px.then_some(m.e_pos),
                    e_neg: px.then_some(m.e_neg),
                    e_diff: px.then_some(m.e_pos - m.e_neg),
                    ce: pyx.then_some(m.ce),
                    acc: pyx.then_some(m.acc),
                    loss: m.loss,
                    lr,
                    iters_per_s: ips,
                    images_per_s: ips * self.cfg.data.clf_batch_size as f64,
                    train_minutes: self.progress.train_seconds / 60.0,
                };
                self.log.write(&rec.to_json()?)?;
                let done = (it - session_iter) as f64;
                let rate = done / (self.progress.train_seconds - session_start).max(1e-9);
                let eta = (stop - it) as f64 / rate.max(1e-9);
                reporter.update(it, &rec.progress_line(stop, eta / 60.0), true);
                window = Window::default();
            } else {
                reporter.update(it, "", false);
            }
            if let Some(x) = &x_neg
                && run.grid_every > 0
                && it.is_multiple_of(run.grid_every)
            {
                let path = self.opts.run_dir.join(format!("samples/neg-{it:07}.png"));
                jem_plot::save_grid(&path, x, 8)?;
            }
            let epoch_end = it.is_multiple_of(self.iters_per_epoch);
            if (run.eval_every_iters > 0 && it.is_multiple_of(run.eval_every_iters)) || epoch_end {
                last_eval = Some(self.record_eval(&reporter)?);
            }
            let every_iters =
                run.checkpoint_every_iters > 0 && it.is_multiple_of(run.checkpoint_every_iters);
            if epoch_end || every_iters {
                if !self.model_is_finite()? {
                    let reason = "non-finite weights after the update".to_string();
                    if let Err(e) = self.rollback(&reason) {
                        reporter.finish();
                        return Err(self.stop_diverged(e, last_eval, session_iter, session_start));
                    }
                    streams = self.streams()?;
                    continue;
                }
                self.save_checkpoint("last.safetensors")?;
                let epoch = it / self.iters_per_epoch;
                if epoch_end
                    && run.checkpoint_every_epochs > 0
                    && epoch.is_multiple_of(run.checkpoint_every_epochs)
                {
                    self.save_checkpoint(&format!("epoch-{epoch:04}.safetensors"))?;
                }
            }
        }
        reporter.finish();
        self.finish_run(last_eval, stopped, session_iter, session_start)
    }

    /// A requested stop: the checkpoint and the summary at once, without the final
    /// evaluation and figures of a finished run (`--resume` continues exactly).
    fn stop_interrupted(
        &mut self,
        last_eval: Option<EvalRecord>,
        session_iter: u64,
        session_start: f64,
    ) -> Result<RunSummary> {
        if self.model_is_finite()? {
            self.save_checkpoint("last.safetensors")?;
        }
        self.log.write(&serde_json::json!({
            "event": "interrupted", "iteration": self.progress.iteration,
        }))?;
        let stopped = format!(
            "interrupted at iteration {} (signal); `jem train --resume` continues",
            self.progress.iteration
        );
        self.write_summary(last_eval, stopped, false, session_iter, session_start)
    }

    fn finish_run(
        &mut self,
        last_eval: Option<EvalRecord>,
        stopped: String,
        session_iter: u64,
        session_start: f64,
    ) -> Result<RunSummary> {
        let reporter = Reporter::new(0, 0, true);
        let last_eval = match last_eval {
            Some(e) if e.iteration == self.progress.iteration => Some(e),
            _ if self.progress.iteration > 0 => Some(self.record_eval(&reporter)?),
            _ => None,
        };
        if self.model_is_finite()? {
            self.save_checkpoint("last.safetensors")?;
        }
        if let Some(b) = &self.buffer {
            crate::figures::buffer_grid(&self.opts.run_dir, b, self.data.num_classes)?;
        }
        crate::figures::curves(&self.opts.run_dir)?;
        self.write_summary(last_eval, stopped, false, session_iter, session_start)
    }

    /// The run diverged beyond the guard's budget: `summary.json` records it (the divergence
    /// is a result: the paper marks JEM and JEM++ as regularly diverging) beside the training
    /// curves; `last.safetensors` stays the last good state. Returns the error to report.
    fn stop_diverged(
        &mut self,
        err: TrainError,
        last_eval: Option<EvalRecord>,
        session_iter: u64,
        session_start: f64,
    ) -> TrainError {
        if !matches!(err, TrainError::Diverged(_)) {
            return err;
        }
        let stopped = format!("diverged: {err}");
        let written = crate::figures::curves(&self.opts.run_dir).and_then(|()| {
            self.write_summary(last_eval, stopped, true, session_iter, session_start)
        });
        match written {
            Ok(_) => err,
            Err(e) => TrainError::RunDir(format!("{err}; and summary.json was not written: {e}")),
        }
    }

    fn write_summary(
        &self,
        last_eval: Option<EvalRecord>,
        stopped: String,
        diverged: bool,
        session_iter: u64,
        session_start: f64,
    ) -> Result<RunSummary> {
        let secs = self.progress.train_seconds - session_start;
        let summary = RunSummary {
            iterations: self.progress.iteration,
            train_minutes: self.progress.train_seconds / 60.0,
            iters_per_second: (self.progress.iteration - session_iter) as f64 / secs.max(1e-9),
            last_eval,
            best: self.progress.best,
            // the divergence that stopped a run is not a rollback
            rollbacks: self.progress.guard.failures - usize::from(diverged),
            rollback_events: self.progress.guard.events.clone(),
            diverged,
            stopped,
        };
        let text = serde_json::to_string_pretty(&summary).map_err(|source| TrainError::Json {
            what: "summary.json".into(),
            source,
        })?;
        jem_io::write_atomic(&self.opts.run_dir.join("summary.json"), text.as_bytes())?;
        Ok(summary)
    }
}
