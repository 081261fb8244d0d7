//! The robustness curve: robust accuracy against the radius.

use std::path::Path;

use jem_plot::{LineChart, Series};

use super::eval::RobustnessResult;
use crate::output::plot_err;
use crate::{EvalError, Result};

/// Draws one line per `(label, result)`: the reference's robust accuracy (every-step
/// accounting, in %) against the radius in /255 units, starting at the clean accuracy at
/// radius 0 when the result has no radius-0 entry; writes the PNG to `path` (its folder is
/// created). Labels should name the model and the norm (e.g. `"SADA-JEM L-inf"`).
pub fn save_robustness_curve(path: &Path, curves: &[(&str, &RobustnessResult)]) -> Result<()> {
    if curves.is_empty() {
        return Err(EvalError::Invalid(
            "robustness curve: `curves` is empty".into(),
        ));
    }
    // one norm's curves get its name in the title; mixed norms (an API caller's choice) do not
    let norm = curves[0].1.config.norm;
    let title = if curves.iter().all(|(_, r)| r.config.norm == norm) {
        format!("Robust accuracy under white-box {norm} PGD")
    } else {
        "Robust accuracy under white-box PGD".to_string()
    };
    let mut chart = LineChart::new(&title, "eps (/255)", "robust accuracy (%)");
    for (label, r) in curves {
        if r.points.is_empty() {
            return Err(EvalError::Invalid(format!(
                "robustness curve `{label}`: the result has no radius"
            )));
        }
        let mut pts: Vec<(f64, f64)> = r
            .points
            .iter()
            .map(|p| (255.0 * p.eps, 100.0 * p.robust_accuracy))
            .collect();
        if !r.points.iter().any(|p| p.eps == 0.0) {
            pts.push((0.0, 100.0 * r.points[0].clean_accuracy));
        }
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart = chart.with(Series::new(*label, pts));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::output::ensure_dir(dir)?;
    }
    chart.save(path).map_err(plot_err)
}
