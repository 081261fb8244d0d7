//! Bar figures: reliability diagrams (calibration) and overlaid histograms (score
//! distributions of in- and out-of-distribution data).

use std::path::Path;

use plotters::prelude::*;

use crate::chart::{COLORS, draw_err, draw_legend, render_figure};
use crate::{PlotError, Result, write_png};

/// One bin of a reliability diagram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReliabilityBin {
    /// Lower edge of the confidence bin.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Samples in the bin.
    pub count: usize,
    /// Their mean confidence.
    pub confidence: f64,
    /// Their accuracy.
    pub accuracy: f64,
}

/// A reliability diagram as in Guo et al. and the SADA-JEM paper's Figure 4: one bar per
/// non-empty bin, outlined up to its accuracy, the gap between accuracy and the bin's mean
/// confidence shaded, and the diagonal of perfect calibration; the title carries the ECE.
/// The blue fill stops where the gap begins, so that the gap has the legend's colour
/// whether it lies above the bar (over-confidence) or inside it (under-confidence); drawn
/// over the blue, a translucent gap would show a third colour.
pub fn save_reliability_diagram(path: &Path, title: &str, bins: &[ReliabilityBin]) -> Result<()> {
    let img = render_figure((640, 600), title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(|e| draw_err(title, e))?;
        chart
            .configure_mesh()
            .x_desc("confidence")
            .y_desc("accuracy")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| draw_err(title, e))?;
        let blue = COLORS[0];
        let red = RGBColor(214, 39, 40);
        let filled: Vec<&ReliabilityBin> =
            bins.iter().filter(|b| b.count > 0 && b.hi > b.lo).collect();
        chart
            .draw_series(filled.iter().map(|b| {
                let top = b.accuracy.min(b.confidence);
                Rectangle::new([(b.lo, 0.0), (b.hi, top)], blue.mix(0.85).filled())
            }))
            .map_err(|e| draw_err(title, e))?
            .label("accuracy")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], blue.mix(0.85).filled())
            });
        chart
            .draw_series(filled.iter().map(|b| {
                let (lo, hi) = if b.accuracy < b.confidence {
                    (b.accuracy, b.confidence)
                } else {
                    (b.confidence, b.accuracy)
                };
                Rectangle::new([(b.lo, lo), (b.hi, hi)], red.mix(0.35).filled())
            }))
            .map_err(|e| draw_err(title, e))?
            .label("gap to confidence")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], red.mix(0.35).filled())
            });
        chart
            .draw_series(
                filled.iter().map(|b| {
                    Rectangle::new([(b.lo, 0.0), (b.hi, b.accuracy)], BLACK.stroke_width(1))
                }),
            )
            .map_err(|e| draw_err(title, e))?;
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, 0.0), (1.0, 1.0)],
                BLACK.mix(0.6).stroke_width(2),
            ))
            .map_err(|e| draw_err(title, e))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, title)
    })?;
    write_png(path, &img)
}

/// Overlaid density histograms of several score sets over a common range (`bins` equal
/// bins), as the paper's Table 4 (log p(x) of in-distribution data against OOD sets).
/// Non-finite values are left out.
pub fn save_histograms(
    path: &Path,
    title: &str,
    x_label: &str,
    sets: &[(&str, &[f64])],
    bins: usize,
) -> Result<()> {
    let finite = |v: &[f64]| {
        v.iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect::<Vec<_>>()
    };
    let sets: Vec<(&str, Vec<f64>)> = sets.iter().map(|(n, v)| (*n, finite(v))).collect();
    let all: Vec<f64> = sets.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    if all.is_empty() || bins == 0 {
        return Err(PlotError::Invalid(format!(
            "histogram `{title}` needs finite values and at least one bin"
        )));
    }
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi - lo < 1e-12 {
        hi = lo + 1.0;
    }
    let width = (hi - lo) / bins as f64;
    let densities: Vec<Vec<f64>> = sets
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0.0; bins];
            for x in v {
                c[(((x - lo) / width) as usize).min(bins - 1)] += 1.0;
            }
            let norm = (v.len().max(1) as f64) * width;
            c.iter().map(|k| k / norm).collect()
        })
        .collect();
    let top = densities.iter().flatten().copied().fold(0.0f64, f64::max) * 1.08;
    let img = render_figure((720, 480), title, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(lo..hi, 0f64..top.max(1e-12))
            .map_err(|e| draw_err(title, e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("density")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| draw_err(title, e))?;
        for (i, ((name, _), d)) in sets.iter().zip(&densities).enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(
                    d.iter()
                        .enumerate()
                        .filter(|(_, v)| **v > 0.0)
                        .map(|(b, v)| {
                            let x0 = lo + b as f64 * width;
                            Rectangle::new([(x0, 0.0), (x0 + width, *v)], color.mix(0.4).filled())
                        }),
                )
                .map_err(|e| draw_err(title, e))?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.mix(0.6).filled())
                });
        }
        draw_legend(&mut chart, SeriesLabelPosition::MiddleRight, title)
    })?;
    write_png(path, &img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliability_diagram_and_histograms_write_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let bins: Vec<ReliabilityBin> = (0..10)
            .map(|b| ReliabilityBin {
                lo: b as f64 / 10.0,
                hi: (b + 1) as f64 / 10.0,
                count: b,
                confidence: (b as f64 + 0.5) / 10.0,
                accuracy: b as f64 / 12.0,
            })
            .collect();
        let p = dir.path().join("rel.png");
        save_reliability_diagram(&p, "ECE 0.05", &bins).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (640, 600));
        // some blue bar pixels are drawn
        assert!(img.pixels().any(|px| px.0[2] > 150 && px.0[0] < 100));
        let q = dir.path().join("hist.png");
        let a: Vec<f64> = (0..200).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..100).map(|i| 1.0 + (i as f64 * 0.11).cos()).collect();
        save_histograms(&q, "log p(x)", "log p(x)", &[("in", &a), ("out", &b)], 30).unwrap();
        assert_eq!(image::open(&q).unwrap().to_rgb8().dimensions(), (720, 480));
        assert!(save_histograms(&q, "t", "x", &[("e", &[])], 10).is_err());
    }
}
