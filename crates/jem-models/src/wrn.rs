//! The pre-activation Wide-ResNet of JEM, JEM++ and SADA-JEM.
//!
//! `conv3x3(in -> 16)`, three stages of `n = (depth - 4) / 6` blocks with widths
//! `16k, 32k, 64k` and strides 1, 2, 2, then BN -> leaky ReLU -> 8x8 average pool -> linear.
//! A block: `conv1(lrelu(bn1(x)))` (3x3, stride 1) -> dropout -> `conv2(lrelu(bn2(.)))`
//! (3x3, the block's stride) + shortcut, where the shortcut is a 1x1 convolution with bias and
//! the block's stride on the raw input `x` when the shape changes, else `x`. Every
//! convolution has a bias. Parameter names follow the reference's state dict (`f.conv1.weight`,
//! `f.layer2.0.shortcut.0.bias`, `class_output.weight`, ...).

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::layers::{
    BatchNorm2d, BatchNormConfig, BnMode, Conv2d, Conv2dConfig, Layer, Linear, Params, Pass,
    leaky_relu,
};
use crate::params::ParamStore;

/// Normalization layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Norm {
    /// BatchNorm (JEM++, SADA-JEM).
    Batch,
    /// None (the original JEM).
    None,
}

/// The nonlinearity between layers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Activation {
    /// `x` for `x > 0`, else `slope * x` (the reference: slope 0.2; slope 0 is ReLU).
    LeakyRelu {
        /// Negative slope, in [0, 1).
        slope: f64,
    },
    /// `x * sigmoid(x)`, the smooth alternative the JEM authors suggest against divergence.
    Swish,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::LeakyRelu { slope } => leaky_relu(x, *slope),
            Activation::Swish => Ok(x.silu()?),
        }
    }
}

/// Shape and options of a Wide-ResNet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrnConfig {
    /// Depth, `6n + 4` (28 in the paper).
    pub depth: usize,
    /// Widen factor `k` (10 in the paper).
    pub width: usize,
    /// Input channels (3 for colour, 1 for digits).
    pub in_channels: usize,
    /// Classes.
    pub num_classes: usize,
    /// Normalization.
    pub norm: Norm,
    /// Dropout rate between the two convolutions of a block (0 in the paper).
    pub dropout: f64,
    /// Nonlinearity (the reference: leaky ReLU with slope 0.2).
    pub activation: Activation,
    /// BatchNorm momentum, PyTorch convention (0.9 in the reference).
    pub bn_momentum: f64,
    /// BatchNorm epsilon (1e-5).
    pub bn_eps: f64,
}

impl WrnConfig {
    /// The reference's WRN-`depth`-`width` with BatchNorm for 3-channel images.
    pub fn reference(depth: usize, width: usize, num_classes: usize) -> Self {
        Self {
            depth,
            width,
            in_channels: 3,
            num_classes,
            norm: Norm::Batch,
            dropout: 0.0,
            activation: Activation::LeakyRelu { slope: 0.2 },
            bn_momentum: 0.9,
            bn_eps: 1e-5,
        }
    }

    /// Blocks per stage, checking the depth.
    pub fn blocks_per_stage(&self) -> Result<usize> {
        if self.depth < 10 || !(self.depth - 4).is_multiple_of(6) {
            return Err(ModelError::Invalid(format!(
                "model.depth {} is not of the form 6n + 4 with n >= 1 (10, 16, 22, 28, ...)",
                self.depth
            )));
        }
        Ok((self.depth - 4) / 6)
    }

    /// Channels of the stem and the three stages.
    pub fn stage_widths(&self) -> [usize; 4] {
        [16, 16 * self.width, 32 * self.width, 64 * self.width]
    }

    fn validate(&self) -> Result<()> {
        self.blocks_per_stage()?;
        let bad = |m: String| Err(ModelError::Invalid(m));
        if self.width == 0 || self.in_channels == 0 || self.num_classes == 0 {
            return bad(
                "model.width, model.in_channels and model.num_classes must be at least 1".into(),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("model.dropout {} must be in [0, 1)", self.dropout));
        }
        if let Activation::LeakyRelu { slope } = self.activation
            && !(0.0..1.0).contains(&slope)
        {
            return bad(format!("model.activation.slope {slope} must be in [0, 1)"));
        }
        if !(0.0..=1.0).contains(&self.bn_momentum) || self.bn_eps <= 0.0 {
            return bad(format!(
                "model.bn_momentum {} must be in [0, 1] and model.bn_eps {} positive",
                self.bn_momentum, self.bn_eps
            ));
        }
        Ok(())
    }
}

/// One pre-activation block.
#[derive(Clone, Debug)]
pub struct WideBasic {
    /// First normalization (absent without BN).
    pub bn1: Option<BatchNorm2d>,
    /// 3x3, stride 1.
    pub conv1: Conv2d,
    /// Second normalization.
    pub bn2: Option<BatchNorm2d>,
    /// 3x3 with the block's stride.
    pub conv2: Conv2d,
    /// 1x1 projection when the shape changes.
    pub shortcut: Option<Conv2d>,
}

/// A Wide-ResNet classifier with its parameters.
#[derive(Clone, Debug)]
pub struct WideResNet {
    /// Configuration.
    pub config: WrnConfig,
    /// Parameters and buffers.
    pub store: ParamStore,
    /// Stem convolution.
    pub conv1: Conv2d,
    /// All blocks, stage after stage.
    pub blocks: Vec<WideBasic>,
    /// Final normalization.
    pub bn1: Option<BatchNorm2d>,
    /// Classification head.
    pub class_output: Linear,
    dropout_rng: std::sync::Arc<std::sync::Mutex<jem_rng::ChaCha8Rng>>,
}

impl WideResNet {
    /// Builds the network on `device` with PyTorch's default initialization from `seed`.
    pub fn new(config: WrnConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut store = ParamStore::new(device);
        let mut rng = jem_rng::rng_for(&[seed, 0x1417]);
        let n = config.blocks_per_stage()?;
        let [w0, w1, w2, w3] = config.stage_widths();
        let same = Conv2dConfig {
            padding: 1,
            ..Conv2dConfig::default()
        };
        let conv1 = Conv2d::new(
            &mut store,
            "f.conv1",
            config.in_channels,
            w0,
            3,
            same,
            &mut rng,
        )?;
        let bn = |store: &mut ParamStore, name: &str, c: usize| -> Result<Option<BatchNorm2d>> {
            match config.norm {
                Norm::Batch => Ok(Some(BatchNorm2d::new(
                    store,
                    name,
                    c,
                    BatchNormConfig {
                        eps: config.bn_eps,
                        momentum: config.bn_momentum,
                    },
                )?)),
                Norm::None => Ok(None),
            }
        };
        let mut blocks = Vec::new();
        let mut c_in = w0;
        for (s, (&planes, stride)) in [w1, w2, w3].iter().zip([1, 2, 2]).enumerate() {
            for i in 0..n {
                let p = format!("f.layer{}.{i}", s + 1);
                let st = if i == 0 { stride } else { 1 };
                let block = WideBasic {
                    bn1: bn(&mut store, &format!("{p}.bn1"), c_in)?,
                    conv1: Conv2d::new(
                        &mut store,
                        &format!("{p}.conv1"),
                        c_in,
                        planes,
                        3,
                        same,
                        &mut rng,
                    )?,
                    bn2: bn(&mut store, &format!("{p}.bn2"), planes)?,
                    conv2: Conv2d::new(
                        &mut store,
                        &format!("{p}.conv2"),
                        planes,
                        planes,
                        3,
                        Conv2dConfig { stride: st, ..same },
                        &mut rng,
                    )?,
                    shortcut: if st != 1 || c_in != planes {
                        Some(Conv2d::new(
                            &mut store,
                            &format!("{p}.shortcut.0"),
                            c_in,
                            planes,
                            1,
                            Conv2dConfig {
                                stride: st,
                                padding: 0,
                            },
                            &mut rng,
                        )?)
                    } else {
                        None
                    },
                };
                blocks.push(block);
                c_in = planes;
            }
        }
        let bn1 = bn(&mut store, "f.bn1", w3)?;
        let class_output =
            Linear::new(&mut store, "class_output", w3, config.num_classes, &mut rng)?;
        Ok(Self {
            config,
            store,
            conv1,
            blocks,
            bn1,
            class_output,
            dropout_rng: std::sync::Arc::new(std::sync::Mutex::new(jem_rng::rng_for(&[
                seed, 0xd0,
            ]))),
        })
    }

    fn norm_act(
        &self,
        bn: &Option<BatchNorm2d>,
        x: &Tensor,
        mode: BnMode,
        p: Params,
    ) -> Result<Tensor> {
        let pass = Pass { mode, params: p };
        match (bn, &self.config.activation) {
            (Some(bn), Activation::LeakyRelu { slope }) => bn.forward_fused(x, pass, Some(*slope)),
            (Some(bn), act) => act.apply(&bn.forward_pass(x, pass)?),
            (None, act) => act.apply(x),
        }
    }

    /// Where the dropout generator stands (its key, stream and position, 56 bytes), for a
    /// checkpoint: a resumed run restores it with [`WideResNet::set_dropout_state`] and draws
    /// the same masks as an uninterrupted one.
    pub fn dropout_state(&self) -> Result<[u8; 56]> {
        let rng = self.dropout_rng()?;
        let mut out = [0u8; 56];
        out[..32].copy_from_slice(&rng.get_seed()[..]);
        out[32..40].copy_from_slice(&rng.get_stream().to_le_bytes());
        out[40..].copy_from_slice(&rng.get_word_pos().to_le_bytes());
        Ok(out)
    }

    /// Restores a state from [`WideResNet::dropout_state`].
    pub fn set_dropout_state(&self, state: &[u8; 56]) -> Result<()> {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&state[..32]);
        let mut rng = <jem_rng::ChaCha8Rng as rand::SeedableRng>::from_seed(seed);
        rng.set_stream(u64::from_le_bytes(
            state[32..40].try_into().expect("8 bytes"),
        ));
        rng.set_word_pos(u128::from_le_bytes(
            state[40..].try_into().expect("16 bytes"),
        ));
        *self.dropout_rng()? = rng;
        Ok(())
    }

    fn dropout_rng(&self) -> Result<std::sync::MutexGuard<'_, jem_rng::ChaCha8Rng>> {
        self.dropout_rng
            .lock()
            .map_err(|_| ModelError::Invalid("dropout generator poisoned".into()))
    }

    fn dropout(&self, x: Tensor, mode: BnMode) -> Result<Tensor> {
        let p = self.config.dropout;
        if p == 0.0 || mode == BnMode::Eval {
            return Ok(x);
        }
        let mut rng = self.dropout_rng()?;
        let keep: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if rand::Rng::random_bool(&mut *rng, p) {
                    0.0
                } else {
                    (1.0 / (1.0 - p)) as f32
                }
            })
            .collect();
        let mask = Tensor::from_vec(keep, x.shape(), x.device())?;
        Ok((x * mask)?)
    }

    /// Penultimate features `[N, 64k]` (after the final BN, activation and pooling).
    pub fn features(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.features_with(x, mode, Params::Tracked)
    }

    /// [`features`](Self::features) with the parameters tracked or detached.
    pub fn features_with(&self, x: &Tensor, mode: BnMode, p: Params) -> Result<Tensor> {
        let (_, _, in_h, in_w) = x.dims4()?;
        let pass = Pass { mode, params: p };
        let mut out = self.conv1.forward_pass(x, pass)?;
        for b in &self.blocks {
            let h = self.norm_act(&b.bn1, &out, mode, p)?;
            let h = self.dropout(b.conv1.forward_pass(&h, pass)?, mode)?;
            let h = self.norm_act(&b.bn2, &h, mode, p)?;
            let h = b.conv2.forward_pass(&h, pass)?;
            let sc = match &b.shortcut {
                Some(c) => c.forward_pass(&out, pass)?,
                None => out.clone(),
            };
            out = (h + sc)?;
        }
        let out = self.norm_act(&self.bn1, &out, mode, p)?;
        // avg_pool2d(8) as the reference: an 8x8 map (32x32 inputs) becomes one cell; like
        // PyTorch, a map of 8..15 pixels (e.g. 39x32 CelebA) pools its top-left 8x8 window
        let (_, _, h, w) = out.dims4()?;
        let pooled_dims = (
            h.checked_sub(8).map(|v| v / 8 + 1),
            w.checked_sub(8).map(|v| v / 8 + 1),
        );
        if pooled_dims != (Some(1), Some(1)) {
            return Err(ModelError::Invalid(format!(
                "{in_h}x{in_w} inputs give a {h}x{w} final map; the 8x8 average pool needs inputs of 32 to 63 pixels"
            )));
        }
        Ok(out.avg_pool2d(8)?.flatten_from(1)?)
    }

    /// Logits `[N, classes]` of images `[N, C, 32, 32]`.
    pub fn logits(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.logits_with(x, mode, Params::Tracked)
    }

    /// [`logits`](Self::logits) with the parameters tracked or detached.
    pub fn logits_with(&self, x: &Tensor, mode: BnMode, p: Params) -> Result<Tensor> {
        let pass = Pass { mode, params: p };
        self.class_output
            .forward_pass(&self.features_with(x, mode, p)?, pass)
    }
}
