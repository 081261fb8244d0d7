//! Adversarial robustness (reference section 6.6, `SADAJEM/bpda_eot_attack.py`): white-box
//! PGD on the cross-entropy of the classifier, under L-infinity or L2, and the robustness
//! curve (accuracy against the attack radius).
//!
//! - [`PgdConfig`]: the attack; radii and step sizes are in **[0, 1]-pixel units** and are
//!   multiplied by [`PgdConfig::pixel_scale`] to reach the model's input space (2 for the
//!   `Normalize(0.5, 0.5)` of the data pipeline, whose images lie in `[-1, 1]`; the reference
//!   scales its /255 numbers by `2 / 255`). [`PgdConfig::reference`] is the reference's
//!   PGD-50 (step 2/255, random start, box `[-1, 1]`);
//! - [`pgd_attack`]: adversarial examples (the last iterate); [`pgd_trace`]: the same with
//!   the per-step record of which images are still classified correctly;
//! - [`robust_accuracy`]: accuracy over batches for a list of radii: clean, last-iterate, and
//!   the reference's accounting (an image is broken when **any** evaluated iterate, the clean
//!   image and the random start included, is misclassified: `defended *= correct` at every
//!   step), with the accuracy after every step;
//! - [`BpdaEot`]: the reference's BPDA+EOT attack through an SGLD purification defence
//!   (optional; the reference runs it with 0 Langevin steps, which makes it plain PGD);
//! - [`save_robustness_curve`]: the PNG figure.
//!
//! Every random draw (random start, purification noise) comes from a seeded ChaCha
//! generator, never from candle's, so results are reproducible on every device.
//!
//! ```no_run
//! # fn main() -> jem_eval::Result<()> {
//! use jem_eval::robustness::*;
//! # let model: jem_models::WideResNet = todo!();
//! # let batches: Vec<(candle_core::Tensor, candle_core::Tensor)> = todo!();
//! let config = PgdConfig::reference(AttackNorm::Linf);
//! let linf = robust_accuracy(&model, batches, &config, &reference_eps_list(), 123)?;
//! save_robustness_curve(std::path::Path::new("robustness.png"), &[("SADA-JEM L-inf", &linf)])?;
//! # Ok(()) }
//! ```

mod config;
mod curve;
mod eot;
mod eval;
mod pgd;

pub use config::{AttackNorm, BpdaEot, PgdConfig, REFERENCE_EPS_255, reference_eps_list};
pub use curve::save_robustness_curve;
pub use eval::{EpsResult, RobustnessResult, robust_accuracy, robust_accuracy_with_progress};
pub use pgd::{PgdTrace, pgd_attack, pgd_trace};
