//! The model against PyTorch: forward, log-density and input gradients in both BN modes,
//! parameter gradients of the JEM loss, BN running statistics, checkpoint import.
//! Golden values: `tests/golden/make_golden.py`.

#[path = "golden/checks.rs"]
mod checks;
#[path = "golden/formula.rs"]
mod formula;

use candle_core::Device;
use formula::{assert_close, batch};
use jem_models::{WideResNet, WrnConfig};

#[test]
fn forward_and_input_gradients_match_pytorch() {
    checks::forward_and_input_gradients_match_pytorch();
}

#[test]
fn parameter_gradients_and_running_stats_match_pytorch() {
    checks::parameter_gradients_and_running_stats_match_pytorch();
}

#[test]
fn reference_checkpoint_imports() {
    let path = formula::golden_dir().join("reference_ckpt.pt");
    let ckpt = jem_models::torch_import::read_torch_checkpoint(&path).unwrap();
    let shapes: Vec<(String, Vec<usize>)> = ckpt
        .state
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec()))
        .collect();
    let want = formula::formula_state(&shapes);
    for (k, t) in &ckpt.state {
        assert_close(k, t, &want[k], 0.0);
    }
    let m = WideResNet::new(WrnConfig::reference(10, 1, 10), 5, &Device::Cpu).unwrap();
    let ignored = jem_models::torch_import::load_torch_state(&m.store, &ckpt, &path).unwrap();
    assert_eq!(
        ignored,
        vec![
            "energy_output.bias".to_string(),
            "energy_output.weight".to_string()
        ]
    );
    assert_close(
        "replay buffer",
        ckpt.replay_buffer.as_ref().unwrap(),
        &batch(2),
        0.0,
    );
}
