//! PGD: random start, steps, projections, and the per-step record.

use candle_core::{D, DType, Tensor, Var};
use jem_models::BnMode;
use jem_models::jem::{Classifier, class_logit, log_density};
use rand::Rng;
use rand_distr::StandardNormal;

use super::config::{AttackNorm, BpdaEot, PgdConfig};
use super::eot;
use crate::{EvalError, Result};

/// What [`pgd_trace`] records for a batch of `N` images.
#[derive(Clone, Debug)]
pub struct PgdTrace {
    /// The adversarial images after the last step (model space, the shape of `x`).
    pub adversarial: Tensor,
    /// Per image: classified correctly without attack.
    pub clean_correct: Vec<bool>,
    /// Per image: classified correctly at the last iterate.
    pub last_correct: Vec<bool>,
    /// Per image: classified correctly at every evaluated point (the clean image, the start
    /// and every iterate): the reference's `defended`.
    pub robust: Vec<bool>,
    /// Images still `robust` after each evaluation, `steps + 2` entries: after the clean
    /// image, after the start point, after each of the `steps` updates (the rows of the
    /// reference's `class_path`).
    pub robust_per_step: Vec<usize>,
}

/// Adversarial examples for images `x` (`[N, ...]`, model space) with labels `y` (`[N]`,
/// integer): `config.steps` steps of cross-entropy ascent from `x` (or a random point of the
/// ball), each projected onto the `config.eps` ball around `x` and into `config.clip`.
/// Returns the last iterate. BatchNorm is in eval mode, so the images are independent.
pub fn pgd_attack<M, R>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    config: &PgdConfig,
    rng: &mut R,
) -> Result<Tensor>
where
    M: Classifier + ?Sized,
    R: Rng + ?Sized,
{
    Ok(pgd_trace(model, x, y, config, rng)?.adversarial)
}

/// [`pgd_attack`] with the record of which images are classified correctly at each step
/// (the reference's `attack_batch`).
pub fn pgd_trace<M, R>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    config: &PgdConfig,
    rng: &mut R,
) -> Result<PgdTrace>
where
    M: Classifier + ?Sized,
    R: Rng + ?Sized,
{
    config.validate()?;
    let (y, labels) = check_inputs(x, y, config)?;
    let x = x.detach();
    let oracle = Oracle {
        model,
        y: &y,
        labels: &labels,
        eot: config.bpda_eot.filter(BpdaEot::is_active),
    };

    // baseline: `defended` starts as the clean correctness (confirmed for a stochastic defence)
    let (correct, _) = oracle.eval(&x, false, rng)?;
    let clean_correct = oracle.confirm_all(&x, &correct, None, rng)?;
    let mut robust = clean_correct.clone();
    let mut robust_per_step = Vec::with_capacity(config.steps + 2);
    robust_per_step.push(count(&robust));

    let mut x_adv = if config.random_start {
        random_start(&x, config, rng)?
    } else {
        x.clone()
    };
    let mut last_correct = Vec::new();
    for step in 0..=config.steps {
        let last = step == config.steps;
        let (correct, grad) = oracle.eval(&x_adv, !last, rng)?;
        if last {
            last_correct = oracle.confirm_all(&x_adv, &correct, None, rng)?;
            for (r, &c) in robust.iter_mut().zip(&last_correct) {
                *r &= c;
            }
        } else {
            robust = oracle.confirm_all(&x_adv, &correct, Some(&robust), rng)?;
        }
        robust_per_step.push(count(&robust));
        if let Some(g) = grad {
            x_adv = pgd_step(&x_adv, &g, &x, config)?;
        }
    }
    Ok(PgdTrace {
        adversarial: x_adv,
        clean_correct,
        last_correct,
        robust,
        robust_per_step,
    })
}

fn count(v: &[bool]) -> usize {
    v.iter().filter(|&&b| b).count()
}

/// Checks `x` and `y` against each other and the box; returns the labels as u32 (tensor and
/// host copy).
fn check_inputs(x: &Tensor, y: &Tensor, config: &PgdConfig) -> Result<(Tensor, Vec<u32>)> {
    let dims = x.dims();
    if dims.len() < 2 || dims[0] == 0 {
        return Err(EvalError::Invalid(format!(
            "PGD input `x`: shape {dims:?}, expected [N, ...] with N >= 1"
        )));
    }
    if !x.dtype().is_float() {
        return Err(EvalError::Invalid(format!(
            "PGD input `x`: dtype {:?}, expected a float type",
            x.dtype()
        )));
    }
    if y.dims() != [dims[0]] {
        return Err(EvalError::Invalid(format!(
            "PGD labels `y`: shape {:?}, expected [{}] (one label per image of `x`)",
            y.dims(),
            dims[0]
        )));
    }
    let y = match y.dtype() {
        DType::U32 => y.clone(),
        DType::U8 | DType::I64 | DType::I32 | DType::I16 => {
            let min = y.to_dtype(DType::I64)?.min_all()?.to_scalar::<i64>()?;
            if min < 0 {
                return Err(EvalError::Invalid(format!(
                    "PGD labels `y`: negative label {min}"
                )));
            }
            y.to_dtype(DType::U32)?
        }
        other => {
            return Err(EvalError::Invalid(format!(
                "PGD labels `y`: dtype {other:?}, expected an integer type"
            )));
        }
    };
    let labels = y.to_vec1::<u32>()?;
    if let Some((lo, hi)) = config.clip {
        let xmin = x.min_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let xmax = x.max_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let tol = 1e-5 * (hi - lo);
        if xmin < lo - tol || xmax > hi + tol || !xmin.is_finite() || !xmax.is_finite() {
            return Err(EvalError::Invalid(format!(
                "PGD input `x`: values in [{xmin}, {xmax}] are not inside the box `clip` \
                 ({lo}, {hi}); are the images in model space?"
            )));
        }
    }
    Ok((y, labels))
}

/// Per-image correctness of `logits` (`[N, classes]`) against `labels`.
pub(super) fn hits(logits: &Tensor, labels: &[u32]) -> Result<Vec<bool>> {
    let (n, classes) = logits.dims2().map_err(|_| {
        EvalError::Invalid(format!(
            "the model's logits have shape {:?}, expected [N, classes]",
            logits.dims()
        ))
    })?;
    if n != labels.len() {
        return Err(EvalError::Invalid(format!(
            "the model returned {n} rows of logits for {} images",
            labels.len()
        )));
    }
    if let Some(bad) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(EvalError::Invalid(format!(
            "PGD labels `y`: label {bad} is not below the model's {classes} classes"
        )));
    }
    let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok(pred.iter().zip(labels).map(|(p, l)| p == l).collect())
}

/// `sum_i CE(logits_i, y_i)` (the reference's mean CE up to a factor that neither step
/// direction sees; the sum keeps each image's gradient independent of the batch size).
pub(super) fn ce_sum(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok((log_density(logits)? - class_logit(logits, y)?)?.sum_all()?)
}

/// The gradient of `loss_of(x)` with respect to `x`.
pub(super) fn grad_wrt<F>(x: &Tensor, loss_of: F) -> Result<(Tensor, Tensor)>
where
    F: FnOnce(&Tensor) -> Result<(Tensor, Tensor)>,
{
    let xv = Var::from_tensor(&x.detach())?;
    let (loss, aux) = loss_of(xv.as_tensor())?;
    let grads = loss.backward()?;
    let g = grads
        .get(xv.as_tensor())
        .ok_or_else(|| EvalError::Invalid("no gradient reached the input images".into()))?
        .clone();
    Ok((g, aux.detach()))
}

/// The classifier under attack: plain, or a purification defence with EOT/BPDA.
struct Oracle<'a, M: ?Sized> {
    model: &'a M,
    y: &'a Tensor,
    labels: &'a [u32],
    eot: Option<BpdaEot>,
}

impl<M: Classifier + ?Sized> Oracle<'_, M> {
    /// Per-image correctness at `x`, and the attack gradient when `need_grad`.
    fn eval<R: Rng + ?Sized>(
        &self,
        x: &Tensor,
        need_grad: bool,
        rng: &mut R,
    ) -> Result<(Vec<bool>, Option<Tensor>)> {
        if let Some(e) = &self.eot {
            return eot::eval(self.model, x, self.y, self.labels, e, need_grad, rng);
        }
        if need_grad {
            let (g, logits) = grad_wrt(x, |xv| {
                let logits = self.model.logits_input_only(xv, BnMode::Eval)?;
                Ok((ce_sum(&logits, self.y)?, logits))
            })?;
            Ok((hits(&logits, self.labels)?, Some(g)))
        } else {
            let logits = self.model.logits_input_only(x, BnMode::Eval)?.detach();
            Ok((hits(&logits, self.labels)?, None))
        }
    }

    /// `correct`, with each misclassified image (among `among`, when given) re-checked by
    /// the defence's large-sample prediction; images outside `among` stay false. Without
    /// a stochastic defence this is `correct AND among`.
    fn confirm_all<R: Rng + ?Sized>(
        &self,
        x: &Tensor,
        correct: &[bool],
        among: Option<&[bool]>,
        rng: &mut R,
    ) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(correct.len());
        for (i, &c) in correct.iter().enumerate() {
            let candidate = among.is_none_or(|a| a[i]);
            let ok = match (&self.eot, c, candidate) {
                (_, _, false) => false,
                (_, true, true) => true,
                (None, false, true) => false,
                (Some(e), false, true) => {
                    eot::confirm(self.model, &x.narrow(0, i, 1)?, self.labels[i], e, rng)?
                }
            };
            out.push(ok);
        }
        Ok(out)
    }
}

/// `[N, 1, 1, ...]` view of per-image values `v` (`[N]`) for broadcasting against `like`.
fn per_image(v: &Tensor, like: &Tensor) -> Result<Tensor> {
    let mut shape = vec![1usize; like.rank()];
    shape[0] = like.dim(0)?;
    Ok(v.reshape(shape)?)
}

/// Per-image L2 norms `[N]` of `t` (`[N, ...]`).
fn l2_norms(t: &Tensor) -> Result<Tensor> {
    Ok(t.flatten_from(1)?.sqr()?.sum(1)?.sqrt()?)
}

/// One ascent step along `grad`, then the projection.
fn pgd_step(x_adv: &Tensor, grad: &Tensor, x: &Tensor, config: &PgdConfig) -> Result<Tensor> {
    let step = config.step_model();
    let direction = match config.norm {
        AttackNorm::Linf => grad.sign()?,
        AttackNorm::L2 => {
            // a zero gradient gives a zero step (the reference would divide by 0)
            let norm = l2_norms(grad)?.maximum(1e-30)?;
            grad.broadcast_div(&per_image(&norm, grad)?)?
        }
    };
    project(&(x_adv + (direction * step)?)?, x, config)
}

/// Projects `x_adv` onto the ball of radius `eps` around `x` and then into the box (which
/// cannot leave the ball: `x` is inside the box, so clamping moves no coordinate away
/// from `x`).
pub(super) fn project(x_adv: &Tensor, x: &Tensor, config: &PgdConfig) -> Result<Tensor> {
    let eps = config.eps_model();
    let delta = (x_adv - x)?;
    let delta = match config.norm {
        AttackNorm::Linf => delta.clamp(-eps, eps)?,
        AttackNorm::L2 if eps == 0.0 => delta.zeros_like()?,
        AttackNorm::L2 => {
            // factor min(1, eps / ||delta||), exactly 1 inside the ball
            let factor = (l2_norms(&delta)?.maximum(eps)?.recip()? * eps)?;
            delta.broadcast_mul(&per_image(&factor, &delta)?)?
        }
    };
    clip(&(x + delta)?, config)
}

fn clip(x: &Tensor, config: &PgdConfig) -> Result<Tensor> {
    Ok(match config.clip {
        Some((lo, hi)) => x.clamp(lo, hi)?,
        None => x.clone(),
    })
}

/// The random start: L-infinity uniform in the cube, L2 a uniform direction with radius
/// `eps * U(0, 1)` (the reference's `rand_init_l_p`); then clamped into the box (the
/// reference clamps only the L-infinity start).
fn random_start<R: Rng + ?Sized>(x: &Tensor, config: &PgdConfig, rng: &mut R) -> Result<Tensor> {
    let eps = config.eps_model();
    let n = x.dim(0)?;
    let per = x.elem_count() / n;
    let mut delta: Vec<f64> = Vec::with_capacity(n * per);
    match config.norm {
        AttackNorm::Linf => {
            delta.extend((0..n * per).map(|_| eps * (2.0 * rng.random::<f64>() - 1.0)));
        }
        AttackNorm::L2 => {
            for _ in 0..n {
                let r: Vec<f64> = (0..per).map(|_| rng.sample(StandardNormal)).collect();
                let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
                let radius = eps * rng.random::<f64>();
                let scale = if norm > 0.0 { radius / norm } else { 0.0 };
                delta.extend(r.iter().map(|v| v * scale));
            }
        }
    }
    let delta = Tensor::from_vec(delta, x.shape(), x.device())?.to_dtype(x.dtype())?;
    clip(&(x + delta)?, config)
}
