//! The JEM view of a classifier: `log p(x) = LSE(f(x)) + const = -E(x)`, `f(x)[y]`,
//! cross-entropy, and input gradients for SGLD.

use candle_core::{D, Tensor, Var};

use crate::error::{ModelError, Result};
use crate::layers::BnMode;

/// Anything that maps images to logits in a BatchNorm mode.
pub trait Classifier {
    /// Logits `[N, classes]`.
    fn logits(&self, x: &Tensor, mode: BnMode) -> Result<Tensor>;

    /// Logits for a pass whose backward needs only input gradients (SGLD): a model may
    /// treat its parameters as constants here. The values must equal [`logits`](Self::logits).
    fn logits_input_only(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.logits(x, mode)
    }
}

impl Classifier for crate::wrn::WideResNet {
    fn logits(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        crate::wrn::WideResNet::logits(self, x, mode)
    }

    fn logits_input_only(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.logits_with(x, mode, crate::layers::Params::Detached)
    }
}

/// `LSE(logits)` per row: the unnormalized log-density `-E(x)`, `[N]`.
///
/// Computed as `m + log(sum(exp(l - m)))` with the row maximum `m` detached, so that the
/// backward pass is exactly the softmax (candle's `log_sum_exp` also differentiates through
/// the maximum, which cancels only up to rounding and costs precision in input gradients
/// where the class terms nearly cancel).
pub fn log_density(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let sum = logits.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?;
    Ok((sum.log()? + max)?.squeeze(D::Minus1)?)
}

/// The energy `E(x) = -LSE(f(x))`, `[N]`.
pub fn energy(logits: &Tensor) -> Result<Tensor> {
    Ok(log_density(logits)?.neg()?)
}

/// The class-conditional logit `f(x)[y]`, `[N]` (labels `[N]`, u32).
pub fn class_logit(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    Ok(logits.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?)
}

/// Mean cross-entropy of `logits` against `labels` (u32), as `nn.CrossEntropyLoss()`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let lse = log_density(logits)?;
    Ok((lse - class_logit(logits, labels)?)?.mean_all()?)
}

/// Fraction of rows whose largest logit is the label.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let pred = logits.argmax(D::Minus1)?;
    let hits = pred
        .eq(labels)?
        .to_dtype(candle_core::DType::F32)?
        .mean_all()?;
    Ok(hits.to_scalar::<f32>()? as f64)
}

/// The gradient of `sum_i LSE(f(x_i))` with respect to `x` (what SGLD ascends), and the
/// log-densities `[N]`, in the given BatchNorm mode. In train modes the samples of the
/// batch are coupled through the batch statistics, as in PyTorch.
pub fn input_gradient<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    mode: BnMode,
) -> Result<(Tensor, Tensor)> {
    let xv = Var::from_tensor(&x.detach())?;
    let lse = log_density(&model.logits_input_only(xv.as_tensor(), mode)?)?;
    let grads = lse.sum_all()?.backward()?;
    let g = grads
        .get(xv.as_tensor())
        .ok_or_else(|| ModelError::Invalid("no gradient reached the input".into()))?
        .clone();
    Ok((g, lse.detach()))
}
