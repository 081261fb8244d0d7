//! A Wide-ResNet forward pass on weights from a safetensors file, loaded through candle-nn's
//! `VarBuilder`: logits, predicted classes and the JEM energy `-logsumexp(logits)`.
//!
//! ```sh
//! cargo run --release -p jem-models --example wrn_forward -- [model.safetensors [DEPTH WIDTH CHANNELS]]
//! ```
//! Without a file, a freshly initialized WRN-10-2 is saved to a temporary file and read
//! back. A file from `jem model export` (e.g. `docs/results/fashion-mnist/
//! sadajem-wrn10-2/run/model.safetensors`, WRN-10-2 on 1-channel images) works as it is:
//! `-- docs/results/.../model.safetensors 10 2 1`.

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder};
use jem_models::{WideResNet, WrnConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dev = Device::Cpu;
    let num = |i: usize, default: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let mut config = WrnConfig::reference(num(1, 10)?, num(2, 2)?, 10);
    config.in_channels = num(3, 3)?;
    let file = match args.first() {
        Some(f) => std::path::PathBuf::from(f),
        None => {
            let f = std::env::temp_dir().join("jem-wrn-example.safetensors");
            WideResNet::new(config.clone(), 0, &dev)?.store.save(&f)?;
            println!("no file given: saved a fresh WRN-10-2 to {}", f.display());
            f
        }
    };
    // SAFETY: the file is not modified while mapped (candle's documented requirement)
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&file], DType::F32, &dev)? };
    let model = WideResNet::from_var_builder(config.clone(), &vb)?;
    println!(
        "WRN-{}-{} with {} parameters from {}",
        config.depth,
        config.width,
        model.store.num_params(),
        file.display()
    );
    let x = Tensor::randn(0f32, 1.0, (4, config.in_channels, 32, 32), &dev)?;
    let logits = model.forward_t(&x, false)?;
    let energy = logits.log_sum_exp(D::Minus1)?.neg()?;
    println!("logits {:?}", logits.dims());
    println!("classes {:?}", logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
    println!(
        "energy E(x) = -logsumexp f(x): {:?}",
        energy.to_vec1::<f32>()?
    );
    Ok(())
}
