//! The fixtures the generation tests share: a tiny untrained WRN-10-1 (1 channel, 32x32,
//! 3 classes), synthetic per-class Gaussians and a sampler over them.

#![allow(dead_code)]

use candle_core::Device;
use jem_data::ClassGaussians;
use jem_eval::generate::Sampler;
use jem_models::{WideResNet, WrnConfig};

pub const SHAPE: [usize; 3] = [1, 32, 32];
pub const K: usize = 3;

pub fn model() -> WideResNet {
    let cfg = WrnConfig {
        in_channels: 1,
        ..WrnConfig::reference(10, 1, K)
    };
    WideResNet::new(cfg, 3, &Device::Cpu).unwrap()
}

/// Class `c` has mean `-0.5 + 0.5 c` everywhere and covariance `0.01 I`.
pub fn gaussians() -> ClassGaussians {
    let d: usize = SHAPE.iter().product();
    let means = (0..K)
        .flat_map(|c| std::iter::repeat_n(-0.5 + 0.5 * c as f32, d))
        .collect();
    let mut chol = vec![0f32; K * d * d];
    for c in 0..K {
        for i in 0..d {
            chol[c * d * d + i * d + i] = 0.1;
        }
    }
    ClassGaussians {
        shape: SHAPE,
        counts: vec![10; K],
        means,
        chol,
        jitter: 1e-4,
    }
}

pub fn sampler<'a>(
    m: &'a WideResNet,
    g: Option<&'a ClassGaussians>,
    device: &'a Device,
) -> Sampler<'a, WideResNet> {
    Sampler {
        model: m,
        gaussians: g,
        shape: SHAPE,
        num_classes: K,
        device,
    }
}
