//! The energy landscape of a model (the SADA-JEM paper's Figure 1; reference section 6.7):
//! the mean energy `E(x) = -LSE(f(x))` of a fixed data batch, BatchNorm in eval mode, at
//! parameters `theta + alpha d1 (+ beta d2)` along filter-normalized random directions
//! (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets").
//!
//! - [`Direction::filter_normalized`]: a seeded Gaussian direction whose every filter has
//!   the norm of the corresponding weight filter; biases and BatchNorm parameters get 0
//!   unless [`DirectionOptions::include_biases_and_bn`]; BN running statistics are never
//!   perturbed;
//! - [`landscape_1d`] / [`landscape_2d`]: the scans, which restore the parameters
//!   bit-exactly afterwards, even on error;
//! - [`save_landscape_1d`] (curves of several checkpoints overlaid) and
//!   [`save_landscape_2d`] (heatmap with iso-lines): PNG figures.
//!
//! No code for this figure was released; the defaults follow the reference's suggestion:
//! a 1-D direction over `alpha` in `[-1, 1]` with 51 points ([`linspace`]). To compare
//! checkpoints, draw each model's direction with the same seed (each is normalized to its
//! own weights, which makes the curves comparable).
//!
//! ```no_run
//! # fn main() -> jem_eval::Result<()> {
//! use jem_eval::landscape::*;
//! # let model: jem_models::WideResNet = todo!();
//! # let batch: candle_core::Tensor = todo!();
//! let d = Direction::filter_normalized(&model.store, 1, DirectionOptions::default())?;
//! let curve = landscape_1d(&model, &batch, &d, &linspace(-1.0, 1.0, 51))?;
//! save_landscape_1d(std::path::Path::new("landscape.png"), &[("SADA-JEM", &curve)])?;
//! # Ok(()) }
//! ```

mod direction;
mod figure;
mod scan;

pub use direction::{Direction, DirectionOptions, DirectionSpec};
pub use figure::{save_landscape_1d, save_landscape_2d};
pub use scan::{
    Landscape1d, Landscape2d, ScanOptions, landscape_1d, landscape_1d_with, landscape_2d,
    landscape_2d_with, mean_energy,
};

/// `n` equally spaced values from `lo` to `hi`, both included (`[lo]` for `n = 1`, empty
/// for `n = 0`). The midpoint of a symmetric range is exactly 0 for odd `n`.
pub fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![lo],
        _ => (0..n)
            .map(|i| {
                let t = i as f64 / (n - 1) as f64;
                lo * (1.0 - t) + hi * t
            })
            .collect(),
    }
}
