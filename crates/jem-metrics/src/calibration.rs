//! Calibration: expected / maximum / RMS calibration error over equal-width confidence bins.

use serde::{Deserialize, Serialize};

use crate::{MetricError, Result, check_finite};

/// Which samples a bin `[lo, hi]` holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EceConvention {
    /// torchmetrics (`binary/multiclass_calibration_error`, usually 15 bins): `[lo, hi)`, and
    /// a confidence of exactly 1 goes to the last bin.
    #[default]
    Torchmetrics,
    /// The SADA-JEM reference (`Task/calibration.py`, 20 bins): `(lo, hi]`, so a confidence
    /// of exactly 0 is in no bin.
    Reference,
}

/// One bin of a reliability diagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Samples in the bin.
    pub count: usize,
    /// Mean confidence of those samples (0 when empty).
    pub confidence: f64,
    /// Their accuracy (0 when empty).
    pub accuracy: f64,
}

/// Calibration errors and the bins they come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Expected calibration error: `sum_b |acc_b - conf_b| * n_b / n`.
    pub ece: f64,
    /// Maximum calibration error over non-empty bins.
    pub mce: f64,
    /// Root of `sum_b (acc_b - conf_b)^2 * n_b / n`.
    pub rms: f64,
    /// The bins, from low to high confidence.
    pub bins: Vec<CalibrationBin>,
}

/// Bins `confidences` (in [0, 1]) of predictions that were right or wrong (`hits`) into
/// `n_bins` equal-width bins and measures the gap between confidence and accuracy.
///
/// ```
/// use jem_metrics::{EceConvention, calibration};
/// // 80 % confident and right 3 times out of 4: ECE 0.05
/// let c = calibration(&[0.8; 4], &[true, true, true, false], 10, EceConvention::Torchmetrics)?;
/// assert!((c.ece - 0.05).abs() < 1e-12);
/// # Ok::<(), jem_metrics::MetricError>(())
/// ```
pub fn calibration(
    confidences: &[f64],
    hits: &[bool],
    n_bins: usize,
    convention: EceConvention,
) -> Result<Calibration> {
    if n_bins == 0 {
        return Err(MetricError::Invalid("bins: must be at least 1".into()));
    }
    if confidences.is_empty() || confidences.len() != hits.len() {
        return Err(MetricError::Invalid(format!(
            "calibration needs as many confidences ({}) as predictions ({}), at least one",
            confidences.len(),
            hits.len()
        )));
    }
    check_finite("confidences", confidences)?;
    if let Some((i, c)) = confidences
        .iter()
        .enumerate()
        .find(|(_, c)| !(0.0..=1.0).contains(*c))
    {
        return Err(MetricError::Invalid(format!(
            "confidences[{i}] = {c} is not in [0, 1]"
        )));
    }
    let edge = |b: usize| b as f64 / n_bins as f64;
    let mut count = vec![0usize; n_bins];
    let mut conf_sum = vec![0.0f64; n_bins];
    let mut hit_sum = vec![0usize; n_bins];
    for (&c, &h) in confidences.iter().zip(hits) {
        let bin = match convention {
            EceConvention::Torchmetrics => {
                // the b with edge(b) <= c < edge(b + 1); c = 1 in the last bin
                let mut b = ((c * n_bins as f64).floor() as usize).min(n_bins - 1);
                while b > 0 && c < edge(b) {
                    b -= 1;
                }
                while b + 1 < n_bins && c >= edge(b + 1) {
                    b += 1;
                }
                Some(b)
            }
            EceConvention::Reference => {
                if c <= 0.0 {
                    None
                } else {
                    // the b with edge(b) < c <= edge(b + 1)
                    let mut b = ((c * n_bins as f64).ceil() as usize).clamp(1, n_bins) - 1;
                    while b > 0 && c <= edge(b) {
                        b -= 1;
                    }
                    while b + 1 < n_bins && c > edge(b + 1) {
                        b += 1;
                    }
                    Some(b)
                }
            }
        };
        if let Some(b) = bin {
            count[b] += 1;
            conf_sum[b] += c;
            hit_sum[b] += usize::from(h);
        }
    }
    let n = confidences.len() as f64;
    let (mut ece, mut mce, mut sq) = (0.0f64, 0.0f64, 0.0f64);
    let bins = (0..n_bins)
        .map(|b| {
            let (confidence, accuracy) = if count[b] > 0 {
                let k = count[b] as f64;
                (conf_sum[b] / k, hit_sum[b] as f64 / k)
            } else {
                (0.0, 0.0)
            };
            if count[b] > 0 {
                let gap = (accuracy - confidence).abs();
                ece += gap * count[b] as f64 / n;
                sq += gap * gap * count[b] as f64 / n;
                mce = mce.max(gap);
            }
            CalibrationBin {
                lo: edge(b),
                hi: edge(b + 1),
                count: count[b],
                confidence,
                accuracy,
            }
        })
        .collect();
    Ok(Calibration {
        ece,
        mce,
        rms: sq.sqrt(),
        bins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_go_to_the_bin_each_convention_says() {
        let conf = [0.0, 0.5, 1.0, 0.25];
        let hits = [true, false, true, true];
        let t = calibration(&conf, &hits, 4, EceConvention::Torchmetrics).unwrap();
        let counts: Vec<usize> = t.bins.iter().map(|b| b.count).collect();
        // [0,.25): 0.0   [.25,.5): 0.25   [.5,.75): 0.5   [.75,1]: 1.0
        assert_eq!(counts, vec![1, 1, 1, 1]);
        // gaps: |1-0| + |1-.25| + |0-.5| + |1-1| over 4
        assert!((t.ece - (1.0 + 0.75 + 0.5) / 4.0).abs() < 1e-12);
        assert!((t.mce - 1.0).abs() < 1e-12);
        let r = calibration(&conf, &hits, 4, EceConvention::Reference).unwrap();
        let counts: Vec<usize> = r.bins.iter().map(|b| b.count).collect();
        // (0,.25]: 0.25   (.25,.5]: 0.5   (.75,1]: 1.0; 0.0 in no bin
        assert_eq!(counts, vec![1, 1, 0, 1]);
        assert!((r.ece - (0.75 + 0.5) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn perfectly_calibrated_bins_have_zero_error() {
        let conf = [0.7; 10];
        let hits: Vec<bool> = (0..10).map(|i| i < 7).collect();
        let c = calibration(&conf, &hits, 15, EceConvention::Torchmetrics).unwrap();
        assert!(c.ece.abs() < 1e-12 && c.rms.abs() < 1e-12);
    }

    #[test]
    fn rejects_bad_inputs_by_name() {
        let e = calibration(&[1.5], &[true], 15, EceConvention::Torchmetrics)
            .unwrap_err()
            .to_string();
        assert!(e.contains("confidences[0]"), "{e}");
        assert!(calibration(&[0.5], &[], 15, EceConvention::Torchmetrics).is_err());
        assert!(calibration(&[0.5], &[true], 0, EceConvention::Torchmetrics).is_err());
    }
}
