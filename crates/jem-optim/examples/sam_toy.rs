//! SAM (and ASAM) around PyTorch-exact SGD on a toy problem: least squares `|A w - b|^2`,
//! the two passes of each iteration written out as SADA-JEM's training loop runs them.
//!
//! ```sh
//! cargo run --release -p jem-optim --example sam_toy
//! ```

use candle_core::{Device, Tensor, Var};
use jem_optim::{Optimizer, Sam, Sgd, SgdConfig};

fn loss(a: &Tensor, w: &Var, b: &Tensor) -> candle_core::Result<Tensor> {
    a.matmul(w.as_tensor())?.sub(b)?.sqr()?.mean_all()
}

fn run(adaptive: bool, rho: f64) -> Result<f32, Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let a = Tensor::new(&[[1f32, 2.0], [3.0, 1.0], [0.5, -1.0], [2.0, 2.0]], &dev)?;
    let b = Tensor::new(&[[1f32], [2.0], [-0.5], [3.0]], &dev)?;
    // ASAM scales the step by |w|: start away from 0
    let w = Var::new(&[[0.5f32], [0.5]], &dev)?;
    let mut sgd = Sgd::new(SgdConfig {
        lr: 0.01,
        momentum: 0.9,
        ..SgdConfig::default()
    });
    let mut sam = Sam::new(rho, adaptive)?;
    let params = [("w", &w)];
    let mut last = 0.0;
    for it in 0..100 {
        // first pass: the gradient at w, then move to the sharpest point within rho
        let grads = loss(&a, &w, &b)?.backward()?;
        let norm = sam.first_step(&params, &grads)?;
        // second pass at the perturbed weights; the base optimizer steps from the old w
        let l = loss(&a, &w, &b)?;
        let grads = l.backward()?;
        sam.second_step(&params, &grads, &mut sgd as &mut dyn Optimizer)?;
        last = loss(&a, &w, &b)?.to_scalar::<f32>()?;
        if it % 25 == 0 {
            println!("  iteration {it:2}: loss {last:.5}, gradient norm {norm:.4}");
        }
    }
    Ok(last)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for (name, adaptive, rho) in [
        ("plain SGD (rho 0)", false, 0.0),
        ("SAM, rho 0.2", false, 0.2),
        ("ASAM, rho 0.5", true, 0.5),
    ] {
        println!("{name}:");
        let l = run(adaptive, rho)?;
        println!("  final loss {l:.5}");
    }
    Ok(())
}
