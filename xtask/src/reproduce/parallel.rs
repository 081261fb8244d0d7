//! `--devices`: the stages of a reproduction on several devices at once.
//!
//! The stages of one model run in plan order on one device (its evaluations need its
//! training); different models run side by side, one per device; the figures that overlay
//! every model (`all/...`) wait for all of them. Each stage's `--device` is set to the
//! device its worker holds.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Result;

use super::{Stage, attempt_stage};
use crate::report;

/// The plan's stages in chains: one per model in plan order, then the `all/` stages.
pub(crate) fn chains(stages: &[Stage]) -> (Vec<Vec<&Stage>>, Vec<&Stage>) {
    let mut per_model: Vec<(&str, Vec<&Stage>)> = Vec::new();
    let mut last = Vec::new();
    for s in stages {
        let model = s.name.split('/').next().unwrap_or(&s.name);
        if model == "all" {
            last.push(s);
        } else if let Some((_, v)) = per_model.iter_mut().find(|(m, _)| *m == model) {
            v.push(s);
        } else {
            per_model.push((model, vec![s]));
        }
    }
    (per_model.into_iter().map(|(_, v)| v).collect(), last)
}

/// `args` with the value of `--device` set to `device`; stages that run on no device (a
/// model export) have no `--device` and keep their arguments.
pub(crate) fn on_device(args: &[String], device: &str) -> Vec<String> {
    let mut out = args.to_vec();
    if let Some(i) = out.iter().position(|a| a == "--device")
        && i + 1 < out.len()
    {
        out[i + 1] = device.to_string();
    }
    out
}

/// Runs the stages not yet done (and selected by `only`) on `devices`, a worker per device;
/// returns the names of the failed stages (a failure does not stop the others).
pub(crate) fn run_stages_on(
    stages: &[Stage],
    jem: &Path,
    only: Option<&[String]>,
    timings: &mut report::Timings,
    out: &Path,
    devices: &[String],
) -> Result<Vec<String>> {
    let (models, last) = chains(stages);
    let queue = Mutex::new(VecDeque::from(models));
    let timings = Mutex::new(timings);
    let failed = Mutex::new(Vec::new());
    let run_one = |s: &Stage, device: &str, worker: usize| -> Result<()> {
        let tag = format!("[{worker}: {device}] ");
        let args = on_device(&s.args, device);
        let failure = attempt_stage(stages, s, jem, &args, only, &tag, |name, secs, ok| {
            let mut t = timings.lock().unwrap_or_else(|p| p.into_inner());
            t.record(name, secs, ok);
            t.save(out)
        })?;
        if let Some(f) = failure {
            failed.lock().unwrap_or_else(|p| p.into_inner()).push(f);
        }
        Ok(())
    };
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = devices
            .iter()
            .enumerate()
            .map(|(w, device)| {
                let (queue, run_one) = (&queue, &run_one);
                scope.spawn(move || -> Result<()> {
                    loop {
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                        let Some(chain) = next else { return Ok(()) };
                        for s in chain {
                            run_one(s, device, w)?;
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a stage worker panicked"))??;
        }
        Ok(())
    })?;
    for s in last {
        run_one(s, &devices[0], 0)?;
    }
    Ok(failed.into_inner().unwrap_or_else(|p| p.into_inner()))
}
