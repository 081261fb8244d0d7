//! The model's forward pass, input gradients, parameter gradients and BN running statistics
//! against PyTorch's (`make_golden.py`), shared by `parity.rs` (the CPU kernels) and
//! `portable.rs` (candle's own operations, the path of other devices).

use candle_core::Device;

use super::formula::{
    apply_formula, assert_close, assert_close_scaled, batch, golden, jem_loss, max_abs,
};
use jem_models::{BnMode, WideResNet, WrnConfig, jem};

fn model(width: usize) -> WideResNet {
    let m = WideResNet::new(WrnConfig::reference(10, width, 10), 0, &Device::Cpu).unwrap();
    apply_formula(&m.store);
    m
}

/// Logits, LSE, dE/dx in eval and train mode; the running statistics after train mode.
pub fn forward_and_input_gradients_match_pytorch() {
    let g = golden();
    for (mode, tag) in [(BnMode::Eval, "eval"), (BnMode::Train, "train")] {
        let m = model(2);
        let x = batch(0);
        let logits = m.logits(&x, mode).unwrap();
        assert_close(
            &format!("{tag} logits"),
            &logits,
            &g[&format!("wrn10_2/{tag}/logits")],
            1e-5,
        );
        assert_close(
            &format!("{tag} lse"),
            &jem::log_density(&logits).unwrap(),
            &g[&format!("wrn10_2/{tag}/lse")],
            1e-5,
        );
        let m = model(2);
        let (grad_lse, _) = jem::input_gradient(&m, &x, mode).unwrap();
        // the golden file holds dE/dx = -d LSE/dx
        assert_close(
            &format!("{tag} dE/dx"),
            &grad_lse.neg().unwrap(),
            &g[&format!("wrn10_2/{tag}/dEdx")],
            1e-5,
        );
        if mode == BnMode::Train {
            for (name, v) in m.store.buffers() {
                assert_close(
                    name,
                    v.as_tensor(),
                    &g[&format!("wrn10_2/train/after/{name}")],
                    1e-5,
                );
            }
        }
    }
}

/// The JEM loss's parameter gradients and the running statistics in train mode.
pub fn parameter_gradients_and_running_stats_match_pytorch() {
    let g = golden();
    let m = model(1);
    let grads = jem_loss(&m, BnMode::Train).backward().unwrap();
    // biases followed by train-mode BatchNorm have a gradient that is zero up to rounding
    // (f.conv1.bias: PyTorch's own float32 and float64 results differ by about 4e-7, as
    // much as the values themselves): every tensor is compared relative to the larger of its
    // own scale and the largest gradient of the model
    let scale = g
        .iter()
        .filter(|(k, _)| k.starts_with("grads/"))
        .map(|(_, t)| max_abs(t))
        .fold(0.0, f64::max);
    let mut n = 0;
    for (name, p) in m.store.params() {
        let want = &g[&format!("grads/{name}")];
        assert_close_scaled(
            &format!("grad {name}"),
            grads.get(p.as_tensor()).unwrap(),
            want,
            1e-5,
            scale,
        );
        n += 1;
    }
    assert_eq!(n, g.keys().filter(|k| k.starts_with("grads/")).count());
    for (name, v) in m.store.buffers() {
        assert_close(name, v.as_tensor(), &g[&format!("grads_bn/{name}")], 1e-5);
    }
}
