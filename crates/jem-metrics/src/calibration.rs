//! Calibration: expected / maximum / RMS calibration error over equal-width confidence bins.

use serde::{Deserialize, Serialize};

use crate::{MetricError, Result, check_finite};

/// Which samples a bin `[lo, hi]` holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EceConvention {
    /// torchmetrics (`binary/multiclass_calibration_error`, usually 15 bins): `[lo, hi)`, and
    /// a confidence of exactly 1 goes to an extra bin `[1, 1]` of its own (so the table has
    /// `n_bins + 1` rows).
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
    let edges = torch_linspace_edges(n_bins);
    // torchmetrics keeps a confidence of exactly 1 in an extra bin [1, 1]
    let table_bins = match convention {
        EceConvention::Torchmetrics => n_bins + 1,
        EceConvention::Reference => n_bins,
    };
    let mut count = vec![0usize; table_bins];
    let mut conf_sum = vec![0.0f64; table_bins];
    let mut hit_sum = vec![0usize; table_bins];
    for (&c, &h) in confidences.iter().zip(hits) {
        // both tools compare float32 confidences with float32 edges
        let c32 = c as f32;
        let bin = match convention {
            // torch.bucketize(c, edges, right=True) - 1: the last edge <= c
            EceConvention::Torchmetrics => Some(edges.partition_point(|&e| e <= c32) - 1),
            // (lo, hi]: the first upper edge >= c; c = 0 is in no bin
            EceConvention::Reference => {
                (c32 > 0.0).then(|| edges[1..].partition_point(|&e| e < c32))
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
    let bins = (0..table_bins)
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
                lo: f64::from(edges[b]),
                hi: f64::from(edges[(b + 1).min(n_bins)]),
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

/// The `n_bins + 1` bin edges of `torch.linspace(0, 1, n_bins + 1)` in float32, bit for bit
/// (torch computes `step * k` from the start for the first half and `1 - step * (n_bins - k)`
/// from the end for the second, each with one rounding), so that confidences on an edge go to
/// the same bin as in torchmetrics and the reference.
pub fn torch_linspace_edges(n_bins: usize) -> Vec<f32> {
    let steps = n_bins + 1;
    let step = 1.0f32 / n_bins as f32;
    (0..steps)
        .map(|k| {
            if k < steps / 2 {
                (f64::from(step) * k as f64) as f32
            } else {
                (1.0 - f64::from(step) * (steps - k - 1) as f64) as f32
            }
        })
        .collect()
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
        // [0,.25): 0.0   [.25,.5): 0.25   [.5,.75): 0.5   [.75,1): none   [1,1]: 1.0
        assert_eq!(counts, vec![1, 1, 1, 0, 1]);
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
    fn edges_are_torch_linspace_float32() {
        // torch.linspace(0, 1, 16)[3] is 0x3e4cccce, one ulp above float32(0.2) = 0x3e4ccccd
        let e = torch_linspace_edges(15);
        assert_eq!(e.len(), 16);
        assert_eq!(e[3].to_bits(), 0x3e4c_ccce);
        assert_eq!(e[9].to_bits(), 0x3f19_9999);
        assert_eq!((e[0], e[15]), (0.0, 1.0));
        // so a confidence of float32(0.2) is below that edge: bin 2 in [lo, hi)
        let c = calibration(
            &[f64::from(0.2f32)],
            &[true],
            15,
            EceConvention::Torchmetrics,
        )
        .unwrap();
        assert_eq!(c.bins[2].count, 1);
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
