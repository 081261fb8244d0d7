//! `WideResNet` as a `candle_nn::ModuleT`, trained by a candle-nn optimizer (AdamW) with
//! candle-nn's cross-entropy: a toy task of bright against dark noise images.
//!
//! ```sh
//! cargo run --release -p jem-models --example candle_nn_training
//! ```

use candle_core::{D, Device, Tensor};
use candle_nn::{AdamW, ModuleT, Optimizer, ParamsAdamW};
use jem_models::{WideResNet, WrnConfig};

fn batch(step: usize, dev: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    // class 1 images are 0.5 brighter than class 0 images
    let labels: Vec<u32> = (0..16).map(|i| ((i + step) % 2) as u32).collect();
    let y = Tensor::new(labels.as_slice(), dev)?;
    let shift = y
        .to_dtype(candle_core::DType::F32)?
        .reshape((16, 1, 1, 1))?;
    let x = Tensor::randn(0f32, 1.0, (16, 1, 32, 32), dev)?.broadcast_add(&(shift * 0.5)?)?;
    Ok((x, y))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let mut config = WrnConfig::reference(10, 1, 2);
    config.in_channels = 1;
    let model = WideResNet::new(config, 0, &dev)?;
    // the parameters only (not BatchNorm's running statistics) go to the optimizer
    let mut opt = AdamW::new(
        model.store.vars(),
        ParamsAdamW {
            lr: 1e-3,
            ..ParamsAdamW::default()
        },
    )?;
    for step in 0..30 {
        let (x, y) = batch(step, &dev)?;
        let logits = model.forward_t(&x, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        opt.backward_step(&loss)?;
        if step % 5 == 0 || step == 29 {
            println!("step {step:2}: loss {:.4}", loss.to_scalar::<f32>()?);
        }
    }
    let (x, y) = batch(1000, &dev)?;
    let pred = model.forward_t(&x, false)?.argmax(D::Minus1)?;
    let correct = pred.eq(&y)?.to_dtype(candle_core::DType::F32)?.sum_all()?;
    println!(
        "eval accuracy on a fresh batch: {}/16",
        correct.to_scalar::<f32>()?
    );
    Ok(())
}
