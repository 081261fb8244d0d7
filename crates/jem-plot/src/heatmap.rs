//! Heatmaps with contour lines (iso-lines by marching squares) of a scalar field on a
//! rectilinear grid, such as an energy landscape over two parameter-space directions.

use std::path::Path;

use plotters::prelude::*;

use crate::chart::{draw_err, render_figure};
use crate::{PlotError, Result, write_png};

/// A scalar field `z` on the grid `xs` x `ys`, drawn as coloured cells (viridis), iso-lines
/// and a colour bar.
#[derive(Clone, Debug)]
pub struct Heatmap {
    /// Title above the plot.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Grid abscissae, strictly increasing, at least 2.
    pub xs: Vec<f64>,
    /// Grid ordinates, strictly increasing, at least 2.
    pub ys: Vec<f64>,
    /// `z[i][j]` is the value at `(xs[i], ys[j])`. Non-finite values are drawn grey and
    /// interrupt the iso-lines.
    pub z: Vec<Vec<f64>>,
    /// Number of iso-lines, equally spaced strictly between the smallest and the largest
    /// finite value (0: none).
    pub levels: usize,
    /// Points marked with a red cross (e.g. the trained parameters at the origin).
    pub markers: Vec<(f64, f64)>,
    /// Size in pixels.
    pub size: (u32, u32),
}

/// A line segment of an iso-line.
pub type Segment = [(f64, f64); 2];

impl Heatmap {
    /// A heatmap of 760x620 pixels with 12 iso-lines and no marker.
    pub fn new(
        title: &str,
        x_label: &str,
        y_label: &str,
        xs: Vec<f64>,
        ys: Vec<f64>,
        z: Vec<Vec<f64>>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            xs,
            ys,
            z,
            levels: 12,
            markers: Vec::new(),
            size: (760, 620),
        }
    }

    /// Sets the number of iso-lines.
    pub fn with_levels(mut self, levels: usize) -> Self {
        self.levels = levels;
        self
    }

    /// Adds a marked point.
    pub fn with_marker(mut self, x: f64, y: f64) -> Self {
        self.markers.push((x, y));
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(PlotError::Invalid(format!("heatmap `{}`: {m}", self.title)));
        for (name, axis) in [("xs", &self.xs), ("ys", &self.ys)] {
            if axis.len() < 2 {
                return bad(format!(
                    "{name} needs at least 2 values, got {}",
                    axis.len()
                ));
            }
            if !axis.iter().all(|v| v.is_finite()) || axis.windows(2).any(|w| w[1] <= w[0]) {
                return bad(format!("{name} must be finite and strictly increasing"));
            }
        }
        if self.z.len() != self.xs.len() || self.z.iter().any(|r| r.len() != self.ys.len()) {
            return bad(format!(
                "z must be {} rows (xs) of {} values (ys)",
                self.xs.len(),
                self.ys.len()
            ));
        }
        if self.size.0 < 300 || self.size.1 < 200 {
            return bad(format!("size {:?} is below 300x200", self.size));
        }
        Ok(())
    }

    /// The smallest and largest finite value, if any.
    pub fn value_range(&self) -> Option<(f64, f64)> {
        let mut it = self.z.iter().flatten().copied().filter(|v| v.is_finite());
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
    }

    /// The iso-line levels: `levels` values equally spaced strictly inside the value range.
    pub fn level_values(&self) -> Vec<f64> {
        match self.value_range() {
            Some((lo, hi)) if hi > lo => (1..=self.levels)
                .map(|k| lo + (hi - lo) * k as f64 / (self.levels + 1) as f64)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Draws the heatmap into an RGB image.
    pub fn render(&self) -> Result<image::RgbImage> {
        self.validate()?;
        let title = self.title.as_str();
        let (lo, hi) = match self.value_range() {
            Some((lo, hi)) if hi - lo > 1e-12 * (1.0 + lo.abs()) => (lo, hi),
            Some((lo, _)) => (lo - 0.5, lo + 0.5),
            None => (0.0, 1.0),
        };
        let levels = self.level_values();
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let (x0, x1) = (self.xs[0], self.xs[nx - 1]);
        let (y0, y1) = (self.ys[0], self.ys[ny - 1]);
        let w = self.size.0;
        render_figure(self.size, title, |root| {
            let root = root
                .titled(title, ("sans-serif", 20))
                .map_err(|e| draw_err(title, e))?;
            let (main, bar) = root.split_horizontally(w.saturating_sub(120));
            let mut chart = ChartBuilder::on(&main)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| draw_err(title, e))?;
            // cell (i, j) spans the midpoints to its neighbours, clamped to the grid's ends
            let edges = |a: &[f64]| -> Vec<f64> {
                let mut e = vec![a[0]];
                e.extend(a.windows(2).map(|p| 0.5 * (p[0] + p[1])));
                e.push(a[a.len() - 1]);
                e
            };
            let (ex, ey) = (edges(&self.xs), edges(&self.ys));
            let cells = (0..nx).flat_map(|i| (0..ny).map(move |j| (i, j)));
            chart
                .draw_series(cells.map(|(i, j)| {
                    let v = self.z[i][j];
                    let color = if v.is_finite() {
                        viridis((v - lo) / (hi - lo))
                    } else {
                        RGBColor(190, 190, 190)
                    };
                    Rectangle::new([(ex[i], ey[j]), (ex[i + 1], ey[j + 1])], color.filled())
                }))
                .map_err(|e| draw_err(title, e))?;
            let line = BLACK.mix(0.85).stroke_width(1);
            for &level in &levels {
                let segs = contour_segments(&self.xs, &self.ys, &self.z, level);
                chart
                    .draw_series(
                        segs.into_iter()
                            .map(|[a, b]| PathElement::new(vec![a, b], line)),
                    )
                    .map_err(|e| draw_err(title, e))?;
            }
            let red = RGBColor(214, 39, 40);
            chart
                .draw_series(
                    self.markers
                        .iter()
                        .map(|&p| Cross::new(p, 7, red.stroke_width(3))),
                )
                .map_err(|e| draw_err(title, e))?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc(self.x_label.as_str())
                .y_desc(self.y_label.as_str())
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| draw_err(title, e))?;
            // colour bar with the iso-line levels as ticks
            let mut cb = ChartBuilder::on(&bar)
                .margin_top(12)
                .margin_bottom(52)
                .margin_left(8)
                .right_y_label_area_size(80)
                .build_cartesian_2d(0f64..1f64, lo..hi)
                .map_err(|e| draw_err(title, e))?;
            cb.configure_mesh()
                .disable_mesh()
                .disable_x_axis()
                .label_style(("sans-serif", 12))
                .draw()
                .map_err(|e| draw_err(title, e))?;
            let steps = 100;
            cb.draw_series((0..steps).map(|k| {
                let a = lo + (hi - lo) * k as f64 / steps as f64;
                let b = lo + (hi - lo) * (k + 1) as f64 / steps as f64;
                let c = viridis((k as f64 + 0.5) / steps as f64);
                Rectangle::new([(0.0, a), (1.0, b)], c.filled())
            }))
            .map_err(|e| draw_err(title, e))?;
            cb.draw_series(
                levels
                    .iter()
                    .map(|&l| PathElement::new(vec![(0.0, l), (1.0, l)], line)),
            )
            .map_err(|e| draw_err(title, e))?;
            Ok(())
        })
    }

    /// Renders the heatmap and writes it to `path` as a PNG, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_png(path, &self.render()?)
    }
}

/// The viridis colour map at `t` in [0, 1] (clamped), interpolated between 9 anchors.
fn viridis(t: f64) -> RGBColor {
    const A: [(f64, f64, f64); 9] = [
        (68.0, 1.0, 84.0),
        (71.0, 45.0, 123.0),
        (59.0, 82.0, 139.0),
        (44.0, 114.0, 142.0),
        (33.0, 145.0, 140.0),
        (39.0, 173.0, 129.0),
        (92.0, 200.0, 99.0),
        (170.0, 220.0, 50.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let s = t * (A.len() - 1) as f64;
    let k = (s.floor() as usize).min(A.len() - 2);
    let f = s - k as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round().clamp(0.0, 255.0) as u8;
    let (p, q) = (A[k], A[k + 1]);
    RGBColor(mix(p.0, q.0), mix(p.1, q.1), mix(p.2, q.2))
}

/// The iso-line `z = level` of a field on a rectilinear grid (`z[i][j]` at `(xs[i], ys[j])`)
/// as line segments, by marching squares with linear interpolation along cell edges.
/// Saddle cells are resolved by the mean of their corners; cells with a non-finite corner
/// are skipped. `z` must have `xs.len()` rows of `ys.len()` values (shorter rows are cut).
pub fn contour_segments(xs: &[f64], ys: &[f64], z: &[Vec<f64>], level: f64) -> Vec<Segment> {
    let mut out = Vec::new();
    let nx = xs.len().min(z.len());
    for i in 0..nx.saturating_sub(1) {
        let ny = ys.len().min(z[i].len()).min(z[i + 1].len());
        for j in 0..ny.saturating_sub(1) {
            // corners counter-clockwise from the lower left
            let p = [
                (xs[i], ys[j]),
                (xs[i + 1], ys[j]),
                (xs[i + 1], ys[j + 1]),
                (xs[i], ys[j + 1]),
            ];
            let v = [z[i][j], z[i + 1][j], z[i + 1][j + 1], z[i][j + 1]];
            if v.iter().any(|x| !x.is_finite()) {
                continue;
            }
            let above = v.map(|x| x >= level);
            // crossing on edge e (corner e to corner e + 1), if any
            let cross = |e: usize| -> Option<(f64, f64)> {
                let (a, b) = (e, (e + 1) % 4);
                if above[a] == above[b] {
                    return None;
                }
                let t = (level - v[a]) / (v[b] - v[a]);
                Some((
                    p[a].0 + t * (p[b].0 - p[a].0),
                    p[a].1 + t * (p[b].1 - p[a].1),
                ))
            };
            let c: Vec<(usize, (f64, f64))> =
                (0..4).filter_map(|e| cross(e).map(|q| (e, q))).collect();
            match c.len() {
                2 => out.push([c[0].1, c[1].1]),
                4 => {
                    let center_above = v.iter().sum::<f64>() / 4.0 >= level;
                    let e = |k: usize| c[k].1;
                    if center_above == above[0] {
                        // corners 0 and 2 connect: cut off corners 1 and 3
                        out.push([e(0), e(1)]);
                        out.push([e(2), e(3)]);
                    } else {
                        // cut off corners 0 and 2
                        out.push([e(3), e(0)]);
                        out.push([e(1), e(2)]);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bowl(n: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
        let xs: Vec<f64> = (0..n)
            .map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64)
            .collect();
        let z = xs
            .iter()
            .map(|x| xs.iter().map(|y| x * x + y * y).collect())
            .collect();
        (xs, z)
    }

    #[test]
    fn contours_of_a_bowl_are_circles() {
        let (xs, z) = bowl(41);
        let segs = contour_segments(&xs, &xs, &z, 0.5);
        assert!(segs.len() > 40, "{} segments", segs.len());
        for s in &segs {
            for (x, y) in s {
                let r = (x * x + y * y).sqrt();
                assert!((r - 0.5f64.sqrt()).abs() < 2e-3, "radius {r}");
            }
        }
        assert!(contour_segments(&xs, &xs, &z, 3.0).is_empty());
        // saddle: z = x * y, level 0 passes through the centre cell's corners' signs
        let s = contour_segments(
            &[0.0, 1.0],
            &[0.0, 1.0],
            &[vec![1.0, -1.0], vec![-1.0, 1.0]],
            0.1,
        );
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn renders_cells_lines_and_colour_bar_into_a_png() {
        let (xs, mut z) = bowl(21);
        z[3][4] = f64::NAN;
        let map = Heatmap::new("bowl", "alpha", "beta", xs.clone(), xs.clone(), z)
            .with_levels(8)
            .with_marker(0.0, 0.0);
        assert_eq!(map.level_values().len(), 8);
        let img = map.render().unwrap();
        assert_eq!(img.dimensions(), (760, 620));
        // dark (viridis low end) and bright yellow (high end) pixels are both drawn
        assert!(
            img.pixels()
                .any(|p| p.0[0] < 80 && p.0[2] > 70 && p.0[1] < 20)
        );
        assert!(
            img.pixels()
                .any(|p| p.0[0] > 240 && p.0[1] > 220 && p.0[2] < 60)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("h.png");
        map.save(&path).unwrap();
        assert!(image::open(&path).is_ok());
        let bad = Heatmap::new("b", "x", "y", vec![0.0, 0.0], xs.clone(), vec![]);
        let err = bad.render().unwrap_err().to_string();
        assert!(err.contains("`b`") && err.contains("xs"), "{err}");
        let flat = Heatmap::new(
            "f",
            "x",
            "y",
            vec![0.0, 1.0],
            vec![0.0, 1.0],
            vec![vec![1.0; 2]; 2],
        );
        assert!(flat.level_values().is_empty());
        flat.render().unwrap();
    }
}
