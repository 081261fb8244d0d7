//! The golden checks of `parity.rs` with [`jem_kernels::set_portable`] on: candle's own
//! operations (composed BatchNorm, stock convolution and pooling), the path that a GPU takes,
//! against PyTorch. Its own test binary, since the switch is process-wide.

#[path = "golden/checks.rs"]
mod checks;
#[path = "golden/formula.rs"]
mod formula;

#[test]
fn forward_and_input_gradients_match_pytorch() {
    jem_kernels::set_portable(true);
    checks::forward_and_input_gradients_match_pytorch();
}

#[test]
fn parameter_gradients_and_running_stats_match_pytorch() {
    jem_kernels::set_portable(true);
    checks::parameter_gradients_and_running_stats_match_pytorch();
}
