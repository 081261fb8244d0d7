//! The layers of the model zoo, on candle tensors: convolution and linear layers with bias,
//! BatchNorm with PyTorch's semantics, leaky ReLU.

use candle_core::{DType, Tensor, Var};
use jem_rng::ChaCha8Rng;

use crate::error::Result;
use crate::init::torch_default;
use crate::params::ParamStore;

/// How BatchNorm layers behave in a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BnMode {
    /// Normalize with the batch's statistics and update the running statistics
    /// (`model.train()` in PyTorch).
    Train,
    /// Normalize with the batch's statistics, leave the running statistics alone
    /// (PyTorch with BN momentum 0: SAM's second pass).
    TrainFrozen,
    /// Normalize with the running statistics (`model.eval()`).
    Eval,
}

/// Whether a forward pass records the parameters for their gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Params {
    /// The usual: gradients reach the parameters.
    Tracked,
    /// The parameters are constants of the pass, so a backward pass computes only the
    /// gradients of the inputs (SGLD needs `d LSE / dx`, never the weight gradients, which
    /// would cost a third of its backward pass).
    Detached,
}

impl Params {
    /// The variable's tensor, detached if asked.
    pub fn get(self, v: &Var) -> Tensor {
        match self {
            Params::Tracked => v.as_tensor().clone(),
            Params::Detached => v.as_tensor().detach(),
        }
    }
}

/// How a forward pass runs: BatchNorm's mode and whether the parameters are tracked. One
/// value for every [`Layer`], so a network passes it down unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass {
    /// BatchNorm's mode (layers without BatchNorm ignore it).
    pub mode: BnMode,
    /// Whether gradients reach the parameters.
    pub params: Params,
}

impl Pass {
    /// Training: batch statistics, running statistics updated, parameters tracked.
    pub const TRAIN: Pass = Pass {
        mode: BnMode::Train,
        params: Params::Tracked,
    };
    /// Evaluation: running statistics, parameters tracked (for input or weight gradients).
    pub const EVAL: Pass = Pass {
        mode: BnMode::Eval,
        params: Params::Tracked,
    };
}

/// A layer of the network: one forward method, told how to run by a [`Pass`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use jem_models::layers::{Conv2d, Conv2dConfig, Layer, Pass};
/// use jem_models::ParamStore;
/// let mut store = ParamStore::new(&Device::Cpu);
/// let mut rng = jem_rng::rng_for(&[0]);
/// let cfg = Conv2dConfig { padding: 1, ..Conv2dConfig::default() };
/// let conv = Conv2d::new(&mut store, "conv", 3, 8, 3, cfg, &mut rng)?;
/// let x = Tensor::zeros((1, 3, 8, 8), candle_core::DType::F32, &Device::Cpu)?;
/// assert_eq!(conv.forward_pass(&x, Pass::TRAIN)?.dims(), [1, 8, 8, 8]);
/// # Ok::<(), jem_models::ModelError>(())
/// ```
pub trait Layer {
    /// Applies the layer to `x`.
    fn forward_pass(&self, x: &Tensor, pass: Pass) -> Result<Tensor>;
}

/// The options of a [`Conv2d`] besides its channels and kernel size, as candle-nn's
/// `Conv2dConfig`: stride 1, no padding by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
        }
    }
}

/// 2-D convolution with bias (`nn.Conv2d(..., bias=True)`), square kernel.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[out, in, k, k]`.
    pub weight: Var,
    /// `[out]`.
    pub bias: Var,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl Conv2d {
    /// A `k x k` convolution from `c_in` to `c_out` channels registered in `store` under
    /// `name.weight` / `name.bias`, initialized as PyTorch's default from `rng`.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
        config: Conv2dConfig,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let Conv2dConfig { stride, padding } = config;
        if c_in == 0 || c_out == 0 || k == 0 || stride == 0 {
            return Err(crate::ModelError::Invalid(format!(
                "convolution `{name}`: channels {c_in} -> {c_out}, kernel {k} and stride {stride} \
                 must all be at least 1"
            )));
        }
        let dev = store.device().clone();
        let fan_in = c_in * k * k;
        let weight = store.add_param(
            &format!("{name}.weight"),
            torch_default(&[c_out, c_in, k, k], fan_in, rng, &dev)?,
        )?;
        let bias = store.add_param(
            &format!("{name}.bias"),
            torch_default(&[c_out], fan_in, rng, &dev)?,
        )?;
        Ok(Self {
            weight,
            bias,
            stride,
            padding,
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl Layer for Conv2d {
    /// The convolution of `x` (`[N, C, H, W]`).
    fn forward_pass(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        let p = pass.params;
        Ok(jem_kernels::conv::conv2d(
            x,
            &p.get(&self.weight),
            Some(&p.get(&self.bias)),
            self.stride,
            self.padding,
        )?)
    }
}

impl Layer for Linear {
    /// `x W^T + b` of `x` (`[N, in]`).
    fn forward_pass(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        let p = pass.params;
        Ok(x.matmul(&p.get(&self.weight).t()?)?
            .broadcast_add(&p.get(&self.bias))?)
    }
}

/// The options of a [`BatchNorm2d`], PyTorch's defaults (`eps` 1e-5, `momentum` 0.1; the
/// reference's networks pass 0.9).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance.
    pub eps: f64,
    /// Weight of the newest batch in the running statistics.
    pub momentum: f64,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self {
            eps: 1e-5,
            momentum: 0.1,
        }
    }
}

/// Fully connected layer `y = x W^T + b` (`nn.Linear`).
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Var,
    /// `[out]`.
    pub bias: Var,
}

impl Linear {
    /// A linear layer registered under `name.weight` / `name.bias`.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        d_in: usize,
        d_out: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let dev = store.device().clone();
        let weight = store.add_param(
            &format!("{name}.weight"),
            torch_default(&[d_out, d_in], d_in, rng, &dev)?,
        )?;
        let bias = store.add_param(
            &format!("{name}.bias"),
            torch_default(&[d_out], d_in, rng, &dev)?,
        )?;
        Ok(Self { weight, bias })
    }
}

/// `nn.BatchNorm2d(c, eps, momentum)` with affine parameters and running statistics.
///
/// In [`BnMode::Train`] the batch is normalized with its mean and biased variance over
/// `(N, H, W)` and the running statistics become `(1 - m) * running + m * batch`, with the
/// unbiased variance `var * n / (n - 1)` (PyTorch's convention: the reference's
/// `momentum = 0.9` gives the newest batch 90 % of the weight).
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    /// Scale, `[C]`.
    pub weight: Var,
    /// Shift, `[C]`.
    pub bias: Var,
    /// Running mean, `[C]` (a buffer).
    pub running_mean: Var,
    /// Running variance, `[C]` (a buffer).
    pub running_var: Var,
    /// Added to the variance.
    pub eps: f64,
    /// Weight of the newest batch in the running statistics.
    pub momentum: f64,
}

impl BatchNorm2d {
    /// A BatchNorm layer registered under `name.{weight,bias,running_mean,running_var}`.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        c: usize,
        config: BatchNormConfig,
    ) -> Result<Self> {
        let BatchNormConfig { eps, momentum } = config;
        if c == 0 || !(eps > 0.0 && eps.is_finite()) || !(0.0..=1.0).contains(&momentum) {
            return Err(crate::ModelError::Invalid(format!(
                "BatchNorm `{name}`: {c} channels, eps {eps}, momentum {momentum}: need at least \
                 one channel, eps > 0 and a momentum in [0, 1]"
            )));
        }
        let dev = store.device().clone();
        Ok(Self {
            weight: store.add_param(
                &format!("{name}.weight"),
                Tensor::ones(c, DType::F32, &dev)?,
            )?,
            bias: store.add_param(&format!("{name}.bias"), Tensor::zeros(c, DType::F32, &dev)?)?,
            running_mean: store.add_buffer(
                &format!("{name}.running_mean"),
                Tensor::zeros(c, DType::F32, &dev)?,
            )?,
            running_var: store.add_buffer(
                &format!("{name}.running_var"),
                Tensor::ones(c, DType::F32, &dev)?,
            )?,
            eps,
            momentum,
        })
    }

    /// [`forward_pass`](Layer::forward_pass) followed by a leaky ReLU of `slope` (if
    /// given), fused into one operation on the CPU (the network's BN + activation pairs).
    pub fn forward_fused(&self, x: &Tensor, pass: Pass, slope: Option<f64>) -> Result<Tensor> {
        let Pass { mode, params } = pass;
        let fused = jem_kernels::uses_kernels(x);
        if !fused {
            let y = self.forward_composed(x, mode, params)?;
            return match slope {
                Some(s) => leaky_relu(&y, s),
                None => Ok(y),
            };
        }
        let (gamma, beta) = (&params.get(&self.weight), &params.get(&self.bias));
        if mode == BnMode::Eval {
            let running = (self.running_mean.as_tensor(), self.running_var.as_tensor());
            return Ok(jem_kernels::batch_norm::batch_norm_eval(
                x, gamma, beta, running, self.eps, slope,
            )?);
        }
        let (n, _, h, w) = x.dims4()?;
        let (y, mean, var) =
            jem_kernels::batch_norm::batch_norm_train(x, gamma, beta, self.eps, slope)?;
        if mode == BnMode::Train {
            self.update_running(&mean, &var, n * h * w)?;
        }
        Ok(y)
    }

    /// The composed operations (devices other than the CPU, dtypes other than f32).
    fn forward_composed(&self, x: &Tensor, mode: BnMode, params: Params) -> Result<Tensor> {
        let (weight, bias) = (params.get(&self.weight), params.get(&self.bias));
        let c = x.dim(1)?;
        let shape = (1, c, 1, 1);
        let dtype = x.dtype();
        match mode {
            BnMode::Eval => {
                let mean = self.running_mean.as_tensor().reshape(shape)?;
                let var = self.running_var.as_tensor().reshape(shape)?;
                let inv_std = (var + self.eps)?.sqrt()?.recip()?;
                let scale = weight.reshape(shape)?;
                let shift = bias.reshape(shape)?;
                Ok(x.broadcast_sub(&mean)?
                    .broadcast_mul(&inv_std)?
                    .broadcast_mul(&scale)?
                    .broadcast_add(&shift)?)
            }
            BnMode::Train | BnMode::TrainFrozen => {
                let (n, _, h, w) = x.dims4()?;
                let x64 = x.to_dtype(DType::F64)?;
                // per-channel mean and biased variance over (N, H, W)
                let mean = x64.mean_keepdim((0, 2, 3))?;
                let xc = x64.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim((0, 2, 3))?;
                if mode == BnMode::Train {
                    let flat = |t: &Tensor| t.detach().flatten_all()?.to_dtype(dtype);
                    self.update_running(&flat(&mean)?, &flat(&var)?, n * h * w)?;
                }
                let inv_std = (var + self.eps)?.sqrt()?.recip()?;
                let scale = weight.to_dtype(DType::F64)?.reshape(shape)?;
                let shift = bias.to_dtype(DType::F64)?.reshape(shape)?;
                Ok(xc
                    .broadcast_mul(&inv_std)?
                    .broadcast_mul(&scale)?
                    .broadcast_add(&shift)?
                    .to_dtype(dtype)?)
            }
        }
    }

    fn update_running(&self, mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        let m = self.momentum;
        let unbiased = if count > 1 {
            (var * (count as f64 / (count as f64 - 1.0)))?
        } else {
            var.clone()
        };
        let rm = ((self.running_mean.as_detached_tensor() * (1.0 - m))? + (mean * m)?)?;
        let rv = ((self.running_var.as_detached_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        Ok(())
    }
}

impl Layer for BatchNorm2d {
    /// Normalizes `x` (`[N, C, H, W]`) in `pass.mode`.
    ///
    /// With batch statistics the whole normalization runs in f64, as PyTorch's CPU kernels
    /// accumulate per-channel sums in double: the backward pass subtracts per-channel sums of
    /// gradients that nearly cancel, and f32 sums over `N * H * W` values would leave errors
    /// of about 1e-4 relative in input gradients.
    fn forward_pass(&self, x: &Tensor, pass: Pass) -> Result<Tensor> {
        self.forward_fused(x, pass, None)
    }
}

/// Leaky ReLU as PyTorch: `x` where `x > 0`, else `slope * x`; the derivative at exactly 0
/// is `slope` (an elementwise maximum would split it half and half there).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    Ok(x.gt(0.0)?.where_cond(x, &(x * slope)?)?)
}
