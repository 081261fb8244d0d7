//! Line charts (learning curves, energies, robustness curves) with plotters.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::{PlotError, Result, write_png};

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

pub(crate) fn register_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "the embedded font is invalid".to_string())
    })
    .clone()
    .map_err(PlotError::Invalid)
}

/// The drawing area of a figure.
pub(crate) type Canvas<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// An error while drawing the figure `what`.
pub(crate) fn draw_err(what: &str, e: impl std::fmt::Display) -> PlotError {
    PlotError::Invalid(format!("drawing `{what}`: {e}"))
}

/// Draws a `w` x `h` figure on a white canvas with `draw` and returns its pixels (the
/// embedded font registered first); errors name the figure `what`.
pub(crate) fn render_figure(
    (w, h): (u32, u32),
    what: &str,
    draw: impl FnOnce(&Canvas<'_>) -> Result<()>,
) -> Result<image::RgbImage> {
    register_font()?;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(what, e))?;
        draw(&root)?;
        root.present().map_err(|e| draw_err(what, e))?;
    }
    image::RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| PlotError::Invalid(format!("figure `{what}`: buffer has the wrong size")))
}

/// The legend box of every chart, at `position`.
pub(crate) fn draw_legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
    position: SeriesLabelPosition,
    what: &str,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| draw_err(what, e))
}

/// One named line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points `(x, y)`; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series from a name and points.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

/// A chart of one or more series against a shared x axis.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Size in pixels.
    pub size: (u32, u32),
}

pub(crate) const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

impl LineChart {
    /// An empty chart of 800x500 pixels.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            size: (800, 500),
        }
    }

    /// Adds a series.
    pub fn with(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    fn ranges(&self) -> Option<((f64, f64), (f64, f64))> {
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        let mut any = false;
        for &(x, y) in pts {
            any = true;
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if !any {
            return None;
        }
        let pad = |a: f64, b: f64| {
            if b - a < 1e-12 {
                (a - 0.5, b + 0.5)
            } else {
                (a, b)
            }
        };
        let (x0, x1) = pad(x0, x1);
        let (y0, y1) = pad(y0, y1);
        let m = 0.05 * (y1 - y0);
        Some(((x0, x1), (y0 - m, y1 + m)))
    }

    /// Draws the chart into an RGB image.
    pub fn render(&self) -> Result<image::RgbImage> {
        let ((x0, x1), (y0, y1)) = self.ranges().ok_or_else(|| {
            PlotError::Invalid(format!("chart `{}` has no finite point", self.title))
        })?;
        let what = self.title.as_str();
        render_figure(self.size, what, |root| {
            let mut chart = ChartBuilder::on(root)
                .caption(&self.title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| draw_err(what, e))?;
            chart
                .configure_mesh()
                .x_desc(self.x_label.as_str())
                .y_desc(self.y_label.as_str())
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| draw_err(what, e))?;
            for (i, s) in self.series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect();
                let style = ShapeStyle::from(&color).stroke_width(2);
                if pts.len() == 1 {
                    chart
                        .draw_series(PointSeries::of_element(pts, 4, style, &|c, s, st| {
                            Circle::new(c, s, st.filled())
                        }))
                        .map_err(|e| draw_err(what, e))?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
                } else {
                    chart
                        .draw_series(LineSeries::new(pts, style))
                        .map_err(|e| draw_err(what, e))?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                }
            }
            if !self.series.is_empty() {
                let (xs, ys) = chart.plotting_area().get_pixel_range();
                let lines: Vec<&[(f64, f64)]> =
                    self.series.iter().map(|s| s.points.as_slice()).collect();
                let place = crate::legend::place(
                    &lines,
                    ((x0, x1), (y0, y1)),
                    ((xs.end - xs.start) as f64, (ys.end - ys.start) as f64),
                    crate::legend::box_size(self.series.iter().map(|s| s.name.as_str())),
                );
                draw_legend(&mut chart, place, what)?;
            }
            Ok(())
        })
    }

    /// Renders the chart and writes it to `path` as a PNG, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_png(path, &self.render()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_lines_and_text_into_a_png() {
        let chart = LineChart::new("accuracy", "iteration", "accuracy")
            .with(Series::new(
                "train",
                (0..50)
                    .map(|i| (i as f64, 1.0 - (-(i as f64) / 10.0).exp()))
                    .collect(),
            ))
            .with(Series::new("test", vec![(49.0, 0.9)]));
        let img = chart.render().unwrap();
        let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
        assert!(non_white > 2000, "{non_white} drawn pixels");
        let dir = tempfile::tempdir().unwrap();
        chart.save(&dir.path().join("c.png")).unwrap();
        assert!(image::open(dir.path().join("c.png")).is_ok());
        let empty = LineChart::new("e", "x", "y").with(Series::new("nan", vec![(0.0, f64::NAN)]));
        assert!(empty.render().unwrap_err().to_string().contains("`e`"));
    }
}
