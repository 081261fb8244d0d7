//! What a checkpoint must hold for a run to resume from it exactly, and keeping the run
//! folder's `best.safetensors` consistent with the state a run resumes or rolls back to.

use std::path::Path;

use crate::checkpoint::{Checkpoint, Progress};
use crate::config::{OptimKind, TrainConfig};
use crate::{Result, TrainError};

fn incomplete(src: &str, what: String) -> TrainError {
    TrainError::Checkpoint(format!(
        "{src} is incomplete: {what}; resuming from it would not continue the run exactly"
    ))
}

/// Checks that `ck` holds everything a run of `cfg` on images of `shape` needs: a replay
/// buffer of `sampler.buffer_size` images of that shape when the run samples, and, once the
/// run has taken a step, the optimizer's state for every parameter in `params` (name, dims).
pub(crate) fn check(
    ck: &Checkpoint,
    cfg: &TrainConfig,
    shape: [usize; 3],
    params: &[(String, Vec<usize>)],
    src: &str,
) -> Result<()> {
    if cfg.loss.px > 0.0 {
        let want = [cfg.sampler.buffer_size, shape[0], shape[1], shape[2]];
        match &ck.replay_buffer {
            Some(b) if b.dims() == want => {}
            Some(b) => {
                return Err(incomplete(
                    src,
                    format!(
                        "its replay buffer is {:?}, the run needs {want:?}",
                        b.dims()
                    ),
                ));
            }
            None => {
                return Err(incomplete(
                    src,
                    "no replay buffer, but the config samples (loss.px > 0)".into(),
                ));
            }
        }
    }
    if ck.progress.iteration == 0 {
        return Ok(());
    }
    let prefixes: &[&str] = match cfg.optim.kind {
        OptimKind::Sgd if cfg.optim.momentum > 0.0 => &["momentum_buffer."],
        OptimKind::Sgd => &[],
        OptimKind::Adam => &["exp_avg.", "exp_avg_sq."],
    };
    for prefix in prefixes {
        for (name, dims) in params {
            let key = format!("{prefix}{name}");
            match ck.optim.tensors.get(&key) {
                Some(t) if t.dims() == dims.as_slice() => {}
                Some(t) => {
                    return Err(incomplete(
                        src,
                        format!(
                            "optimizer tensor `{key}` is {:?}, its parameter {dims:?}",
                            t.dims()
                        ),
                    ));
                }
                None => {
                    return Err(incomplete(
                        src,
                        format!(
                            "no optimizer tensor `{key}` after {} iterations",
                            ck.progress.iteration
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// After a resume or a rollback to `progress`: a `best.safetensors` written later than
/// `progress.iteration` belongs to the abandoned stretch of the run. It is kept under the name
/// `best-abandoned-<iteration>.safetensors` (nothing a user made is deleted), and the best
/// so far is forgotten, since the file it pointed at was replaced: the next evaluation sets
/// a new one. Returns the new name when a file was set aside.
pub(crate) fn reconcile_best(run_dir: &Path, progress: &mut Progress) -> Result<Option<String>> {
    let best = run_dir.join("best.safetensors");
    if !best.exists() {
        return Ok(None);
    }
    let at = crate::checkpoint::read_progress(&best)?.iteration;
    if at <= progress.iteration {
        return Ok(None);
    }
    let name = format!("best-abandoned-{at}.safetensors");
    std::fs::rename(&best, run_dir.join(&name)).map_err(|e| TrainError::io(&best, e))?;
    progress.best = None;
    Ok(Some(name))
}

/// The dropout generator's state as hex, for [`Progress::dropout_rng`].
pub(crate) fn dropout_hex(state: &[u8; 56]) -> String {
    state.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses [`dropout_hex`]'s text.
pub(crate) fn parse_dropout_hex(text: &str, src: &str) -> Result<[u8; 56]> {
    let bad =
        || TrainError::Checkpoint(format!("{src}: progress.dropout_rng is not 112 hex digits"));
    if text.len() != 112 || !text.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 56];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}
