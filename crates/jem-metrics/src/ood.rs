//! Out-of-distribution detection scores.

use serde::{Deserialize, Serialize};

use crate::{MetricError, Result, check_finite};

/// The points of a ROC curve, as scikit-learn's `roc_curve(..., drop_intermediate=False)`:
/// one point per distinct score, from the highest threshold down, after a first point
/// `(0, 0)` at threshold `+inf`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    /// False positive rates (OOD samples scored at or above the threshold).
    pub fpr: Vec<f64>,
    /// True positive rates (in-distribution samples at or above the threshold).
    pub tpr: Vec<f64>,
    /// The thresholds, decreasing.
    pub thresholds: Vec<f64>,
}

/// All the usual OOD-detection numbers for one pair of score sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodReport {
    /// Area under the ROC curve, in-distribution positive.
    pub auroc: f64,
    /// Average precision with the in-distribution samples as positives (AUPR-In).
    pub aupr_in: f64,
    /// Average precision with the OOD samples as positives, scores negated (AUPR-Out).
    pub aupr_out: f64,
    /// False positive rate at the first threshold reaching 95 % true positive rate.
    pub fpr_at_95_tpr: f64,
}

/// [`auroc`], both AUPRs and the FPR at 95 % TPR.
pub fn ood_report(scores_in: &[f64], scores_out: &[f64]) -> Result<OodReport> {
    let neg_in: Vec<f64> = scores_in.iter().map(|s| -s).collect();
    let neg_out: Vec<f64> = scores_out.iter().map(|s| -s).collect();
    Ok(OodReport {
        auroc: auroc(scores_in, scores_out)?,
        aupr_in: average_precision(scores_in, scores_out)?,
        aupr_out: average_precision(&neg_out, &neg_in)?,
        fpr_at_95_tpr: fpr_at_tpr(scores_in, scores_out, 0.95)?,
    })
}

/// Counts of positives and negatives at or above each distinct score, highest first.
fn cumulative_counts(scores_in: &[f64], scores_out: &[f64]) -> Result<Vec<(f64, usize, usize)>> {
    let mut all = labelled_sorted(scores_in, scores_out)?;
    all.reverse();
    let mut out: Vec<(f64, usize, usize)> = Vec::new();
    let (mut tp, mut fp) = (0, 0);
    for (i, &(s, pos)) in all.iter().enumerate() {
        if pos {
            tp += 1;
        } else {
            fp += 1;
        }
        if i + 1 == all.len() || all[i + 1].0 != s {
            out.push((s, tp, fp));
        }
    }
    Ok(out)
}

/// The ROC curve of a detector that calls high scores in-distribution.
pub fn roc_curve(scores_in: &[f64], scores_out: &[f64]) -> Result<RocCurve> {
    let counts = cumulative_counts(scores_in, scores_out)?;
    let (np, nn) = (scores_in.len() as f64, scores_out.len() as f64);
    let mut curve = RocCurve {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f64::INFINITY],
    };
    for (s, tp, fp) in counts {
        curve.fpr.push(fp as f64 / nn);
        curve.tpr.push(tp as f64 / np);
        curve.thresholds.push(s);
    }
    Ok(curve)
}

/// Average precision with the in-distribution samples as positives, as scikit-learn's
/// `average_precision_score`: `sum_k (R_k - R_{k-1}) P_k` over the distinct thresholds.
pub fn average_precision(scores_in: &[f64], scores_out: &[f64]) -> Result<f64> {
    let counts = cumulative_counts(scores_in, scores_out)?;
    let np = scores_in.len() as f64;
    let (mut ap, mut prev_recall) = (0.0, 0.0);
    for (_, tp, fp) in counts {
        let recall = tp as f64 / np;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Ok(ap)
}

/// False positive rate at the highest threshold whose true positive rate reaches `tpr`
/// (`fpr[searchsorted(tpr_curve, tpr)]` on scikit-learn's `roc_curve`).
pub fn fpr_at_tpr(scores_in: &[f64], scores_out: &[f64], tpr: f64) -> Result<f64> {
    if !(tpr > 0.0 && tpr <= 1.0) {
        return Err(MetricError::Invalid(format!("tpr: {tpr} is not in (0, 1]")));
    }
    let curve = roc_curve(scores_in, scores_out)?;
    let k = curve.tpr.partition_point(|&t| t < tpr);
    Ok(curve.fpr[k.min(curve.fpr.len() - 1)])
}

/// Every score with `true` for in-distribution, sorted increasing (after the input checks).
fn labelled_sorted(scores_in: &[f64], scores_out: &[f64]) -> Result<Vec<(f64, bool)>> {
    check_inputs(scores_in, scores_out)?;
    let mut all: Vec<(f64, bool)> = scores_in
        .iter()
        .map(|&s| (s, true))
        .chain(scores_out.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(all)
}

fn check_inputs(scores_in: &[f64], scores_out: &[f64]) -> Result<()> {
    if scores_in.is_empty() || scores_out.is_empty() {
        return Err(MetricError::Invalid(format!(
            "OOD detection needs in- and out-of-distribution scores, got {} and {}",
            scores_in.len(),
            scores_out.len()
        )));
    }
    check_finite("in-distribution scores", scores_in)?;
    check_finite("out-of-distribution scores", scores_out)
}

/// Area under the ROC curve of a detector that calls a sample in-distribution when its score
/// is high: `scores_in` are the positives, `scores_out` the negatives. Ties between a positive
/// and a negative count one half, so this equals scikit-learn's
/// `roc_auc_score([1]*len(in) + [0]*len(out), in + out)` (the Mann-Whitney statistic).
pub fn auroc(scores_in: &[f64], scores_out: &[f64]) -> Result<f64> {
    let all = labelled_sorted(scores_in, scores_out)?;
    // sum of the (1-based, tie-averaged) ranks of the positives
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * all[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    let (np, nn) = (scores_in.len() as f64, scores_out.len() as f64);
    Ok((rank_sum - np * (np + 1.0) / 2.0) / (np * nn))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct pair counting: the definition.
    fn by_pairs(a: &[f64], b: &[f64]) -> f64 {
        let mut s = 0.0;
        for &x in a {
            for &y in b {
                s += if x > y {
                    1.0
                } else if x == y {
                    0.5
                } else {
                    0.0
                };
            }
        }
        s / (a.len() * b.len()) as f64
    }

    #[test]
    fn equals_pair_counting_with_many_ties() {
        let a = [0.1, 0.4, 0.4, 0.35, 0.8, 0.4, 0.0];
        let b = [0.4, 0.1, 0.2, 0.4, 0.0, 0.9];
        assert!((auroc(&a, &b).unwrap() - by_pairs(&a, &b)).abs() < 1e-15);
        // sklearn: roc_auc_score([1,1,0,0], [0.1,0.4,0.35,0.8]) = 0.25
        assert_eq!(auroc(&[0.1, 0.4], &[0.35, 0.8]).unwrap(), 0.25);
    }

    #[test]
    fn curve_ap_and_fpr_on_a_small_case() {
        // sklearn: roc_curve([1,1,0,0], [0.9,0.4,0.4,0.1], drop_intermediate=False)
        let (a, b) = ([0.9, 0.4], [0.4, 0.1]);
        let c = roc_curve(&a, &b).unwrap();
        assert_eq!(c.tpr, vec![0.0, 0.5, 1.0, 1.0]);
        assert_eq!(c.fpr, vec![0.0, 0.0, 0.5, 1.0]);
        assert_eq!(c.thresholds[1..], [0.9, 0.4, 0.1]);
        // average_precision_score: 0.5 * 1 + 0.5 * 2/3
        assert!((average_precision(&a, &b).unwrap() - (0.5 + 1.0 / 3.0)).abs() < 1e-15);
        assert_eq!(fpr_at_tpr(&a, &b, 0.95).unwrap(), 0.5);
        assert!(fpr_at_tpr(&a, &b, 0.0).is_err());
    }

    #[test]
    fn rejects_empty_and_non_finite_inputs() {
        assert!(auroc(&[], &[1.0]).is_err());
        let e = auroc(&[1.0], &[f64::INFINITY]).unwrap_err().to_string();
        assert!(e.contains("out-of-distribution scores[0]"), "{e}");
    }
}
