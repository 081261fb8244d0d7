//! PNG figures of energy landscapes (the SADA-JEM paper's Figure 1).

use std::path::Path;

use jem_plot::{Heatmap, LineChart, Series};

use super::scan::{Landscape1d, Landscape2d};
use crate::{EvalError, Result};

fn plot_err(e: jem_plot::PlotError) -> EvalError {
    EvalError::Plot(e)
}

/// Writes the 1-D landscapes of several models (e.g. checkpoints of JEM, JEM++ and
/// SADA-JEM), one labelled curve each over `alpha`, as a PNG at `path` (atomically;
/// parent folders are created). Non-finite energies are left out of the curves.
pub fn save_landscape_1d(path: &Path, curves: &[(&str, &Landscape1d)]) -> Result<()> {
    if curves.is_empty() {
        return Err(EvalError::Invalid(format!(
            "curves: no landscape to draw into {}",
            path.display()
        )));
    }
    let mut chart = LineChart::new(
        "Energy along a filter-normalized direction",
        "alpha",
        "mean energy E(x) = -LSE(f(x))",
    );
    for (label, l) in curves {
        if l.alphas.len() != l.energies.len() {
            return Err(EvalError::Invalid(format!(
                "curves: `{label}` has {} alphas but {} energies",
                l.alphas.len(),
                l.energies.len()
            )));
        }
        let points = l.alphas.iter().copied().zip(l.energies.iter().copied());
        chart = chart.with(Series::new(*label, points.collect()));
    }
    chart.save(path).map_err(plot_err)
}

/// Writes a 2-D landscape as a PNG at `path`: the mean energy over `(alpha, beta)` as a
/// viridis heatmap with 12 iso-lines (marching squares) and a colour bar, the trained
/// parameters (the origin) marked with a cross; `label` names the model in the title.
pub fn save_landscape_2d(path: &Path, label: &str, landscape: &Landscape2d) -> Result<()> {
    let l = landscape;
    for (arg, v) in [("alphas", &l.alphas), ("betas", &l.betas)] {
        if v.len() < 2 {
            return Err(EvalError::Invalid(format!(
                "landscape.{arg}: a 2-D figure needs at least 2 values, got {}",
                v.len()
            )));
        }
    }
    if l.energies.len() != l.alphas.len() || l.energies.iter().any(|r| r.len() != l.betas.len()) {
        return Err(EvalError::Invalid(format!(
            "landscape.energies: expected {} rows (alphas) of {} values (betas)",
            l.alphas.len(),
            l.betas.len()
        )));
    }
    let mut map = Heatmap::new(
        &format!("{label}: mean energy E(x)"),
        "alpha (d1)",
        "beta (d2)",
        l.alphas.clone(),
        l.betas.clone(),
        l.energies.clone(),
    );
    let inside = |v: &[f64]| v[0] <= 0.0 && 0.0 <= v[v.len() - 1];
    if inside(&l.alphas) && inside(&l.betas) {
        map = map.with_marker(0.0, 0.0);
    }
    map.save(path).map_err(plot_err)
}
