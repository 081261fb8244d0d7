//! Out-of-distribution detection scores.

use crate::{MetricError, Result, check_finite};

/// Area under the ROC curve of a detector that calls a sample in-distribution when its score
/// is high: `scores_in` are the positives, `scores_out` the negatives. Ties between a positive
/// and a negative count one half, so this equals scikit-learn's
/// `roc_auc_score([1]*len(in) + [0]*len(out), in + out)` (the Mann-Whitney statistic).
pub fn auroc(scores_in: &[f64], scores_out: &[f64]) -> Result<f64> {
    if scores_in.is_empty() || scores_out.is_empty() {
        return Err(MetricError::Invalid(format!(
            "AUROC needs in- and out-of-distribution scores, got {} and {}",
            scores_in.len(),
            scores_out.len()
        )));
    }
    check_finite("in-distribution scores", scores_in)?;
    check_finite("out-of-distribution scores", scores_out)?;
    let mut all: Vec<(f64, bool)> = scores_in
        .iter()
        .map(|&s| (s, true))
        .chain(scores_out.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
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
    fn rejects_empty_and_non_finite_inputs() {
        assert!(auroc(&[], &[1.0]).is_err());
        let e = auroc(&[1.0], &[f64::INFINITY]).unwrap_err().to_string();
        assert!(e.contains("out-of-distribution scores[0]"), "{e}");
    }
}
