//! Where a line chart's legend goes: the place among the nine of plotters'
//! `SeriesLabelPosition` where the box would hide the fewest stretches of line (a fixed
//! corner hides the curves of some chart: robustness curves fall to the lower right,
//! energy landscapes bend through the middle).

use plotters::chart::SeriesLabelPosition;

/// Places in order of preference; ties go to the earlier (the right side first, where a
/// legend has always been).
const PLACES: [SeriesLabelPosition; 9] = [
    SeriesLabelPosition::MiddleRight,
    SeriesLabelPosition::UpperRight,
    SeriesLabelPosition::LowerRight,
    SeriesLabelPosition::LowerLeft,
    SeriesLabelPosition::UpperLeft,
    SeriesLabelPosition::LowerMiddle,
    SeriesLabelPosition::UpperMiddle,
    SeriesLabelPosition::MiddleLeft,
    SeriesLabelPosition::MiddleMiddle,
];

/// Samples per segment between two consecutive points of a line.
const SAMPLES: usize = 32;

/// The legend's place for `lines` (points in data units, non-finite ones skipped) drawn on
/// the plot area `ranges` (`(x0, x1), (y0, y1)`) of `area` pixels, with a legend box of
/// `legend` pixels (width, height).
pub(crate) fn place(
    lines: &[&[(f64, f64)]],
    ranges: ((f64, f64), (f64, f64)),
    area: (f64, f64),
    legend: (f64, f64),
) -> SeriesLabelPosition {
    let ((x0, x1), (y0, y1)) = ranges;
    let unit = |(x, y): (f64, f64)| ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0));
    let mut samples = Vec::new();
    for line in lines {
        let pts: Vec<(f64, f64)> = line
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(unit)
            .collect();
        samples.extend(pts.first().copied());
        for w in pts.windows(2) {
            for k in 1..=SAMPLES {
                let t = k as f64 / SAMPLES as f64;
                samples.push((
                    w[0].0 + t * (w[1].0 - w[0].0),
                    w[0].1 + t * (w[1].1 - w[0].1),
                ));
            }
        }
    }
    // the box in plot units, capped so that a long legend still has places to choose from
    let w = (legend.0 / area.0.max(1.0)).min(0.9);
    let h = (legend.1 / area.1.max(1.0)).min(0.9);
    let hidden = |p: &SeriesLabelPosition| {
        let (u0, v0) = corner(p, w, h);
        samples
            .iter()
            .filter(|(u, v)| *u >= u0 && *u <= u0 + w && *v >= v0 && *v <= v0 + h)
            .count()
    };
    // min_by_key keeps the first of equal counts: the preferred place
    PLACES
        .iter()
        .min_by_key(|p| hidden(p))
        .cloned()
        .unwrap_or(SeriesLabelPosition::MiddleRight)
}

/// The lower-left corner of a `w` x `h` box at place `p`, in plot units (y upwards).
fn corner(p: &SeriesLabelPosition, w: f64, h: f64) -> (f64, f64) {
    use SeriesLabelPosition as P;
    let u = match p {
        P::UpperLeft | P::MiddleLeft | P::LowerLeft => 0.0,
        P::UpperMiddle | P::MiddleMiddle | P::LowerMiddle => 0.5 - w / 2.0,
        _ => 1.0 - w,
    };
    let v = match p {
        P::LowerLeft | P::LowerMiddle | P::LowerRight => 0.0,
        P::MiddleLeft | P::MiddleMiddle | P::MiddleRight => 0.5 - h / 2.0,
        _ => 1.0 - h,
    };
    (u, v)
}

/// The legend box's size in pixels for these labels at the charts' 13-pixel font: a line
/// sample, the longest label and padding wide, a row per label high.
pub(crate) fn box_size<'a>(labels: impl Iterator<Item = &'a str>) -> (f64, f64) {
    let (mut n, mut longest) = (0usize, 0usize);
    for l in labels {
        n += 1;
        longest = longest.max(l.chars().count());
    }
    (longest as f64 * 7.5 + 60.0, n as f64 * 18.0 + 20.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AREA: (f64, f64) = (700.0, 400.0);
    const LEGEND: (f64, f64) = (200.0, 90.0);

    fn at(lines: &[&[(f64, f64)]]) -> SeriesLabelPosition {
        place(lines, ((0.0, 1.0), (0.0, 1.0)), AREA, LEGEND)
    }

    #[test]
    fn an_empty_middle_right_keeps_the_legend_there() {
        // a line along the bottom leaves the middle right free
        let p = at(&[&[(0.0, 0.05), (1.0, 0.05)]]);
        assert!(matches!(p, SeriesLabelPosition::MiddleRight), "{p:?}");
    }

    #[test]
    fn falling_curves_send_the_legend_to_the_lower_left() {
        // robustness curves: high on the left, falling through the middle and lower right
        let a: &[(f64, f64)] = &[(0.0, 0.95), (0.5, 0.5), (1.0, 0.0)];
        let b: &[(f64, f64)] = &[(0.0, 0.9), (1.0, 0.8)];
        let c: &[(f64, f64)] = &[(0.0, 0.9), (1.0, 0.45)];
        let p = at(&[a, b, c]);
        assert!(matches!(p, SeriesLabelPosition::LowerLeft), "{p:?}");
    }

    #[test]
    fn an_arch_sends_the_legend_below_its_middle() {
        // a landscape: one curve low at both ends and high in the middle, one flat and high
        let a: &[(f64, f64)] = &[(0.0, 0.0), (0.5, 1.0), (1.0, 0.0)];
        let b: &[(f64, f64)] = &[(0.0, 0.9), (1.0, 0.9)];
        let p = at(&[a, b]);
        assert!(matches!(p, SeriesLabelPosition::LowerMiddle), "{p:?}");
    }

    #[test]
    fn non_finite_points_and_empty_lines_are_ignored() {
        let a: &[(f64, f64)] = &[(f64::NAN, 0.5), (0.0, 0.05), (1.0, 0.05)];
        let p = at(&[a, &[]]);
        assert!(matches!(p, SeriesLabelPosition::MiddleRight), "{p:?}");
    }

    #[test]
    fn the_box_grows_with_labels() {
        let (w, h) = box_size(["a", "longer label"].into_iter());
        assert_eq!(w, 12.0 * 7.5 + 60.0);
        assert_eq!(h, 2.0 * 18.0 + 20.0);
    }
}
