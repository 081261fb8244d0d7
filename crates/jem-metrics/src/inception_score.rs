//! Inception Score: `exp(E_x KL(p(y|x) || p(y)))`, averaged over splits.

use serde::{Deserialize, Serialize};

use crate::{MetricError, Result, check_finite};

/// An Inception Score: mean and (population) standard deviation over the splits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InceptionScore {
    /// Mean of the per-split scores.
    pub mean: f64,
    /// Standard deviation of the per-split scores (`np.std`, divides by the split count).
    pub std: f64,
    /// The score of each split.
    pub splits: Vec<f64>,
}

/// The split count of the SADA-JEM reference: `max(1, n / 5000)`.
pub fn reference_splits(n: usize) -> usize {
    (n / 5000).max(1)
}

/// Inception Score of `n` rows of class probabilities (`probs`, row-major, `classes` per
/// row), in the convention of the original TF code and torch-fidelity: no shuffling, split
/// `i` holds rows `i * n / splits .. (i + 1) * n / splits`, and `0 * log 0 = 0`.
///
/// Uniform rows give 1; one-hot rows of distinct classes give the class count:
/// ```
/// use jem_metrics::inception_score::inception_score;
/// let one_hot = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
/// let is = inception_score(&one_hot, 3, 1)?;
/// assert!((is.mean - 3.0).abs() < 1e-12 && is.std == 0.0);
/// # Ok::<(), jem_metrics::MetricError>(())
/// ```
pub fn inception_score(probs: &[f64], classes: usize, splits: usize) -> Result<InceptionScore> {
    let n = rows(probs.len(), classes, "probabilities")?;
    check_finite("probabilities", probs)?;
    for (r, row) in probs.chunks_exact(classes).enumerate() {
        if let Some(p) = row.iter().find(|p| !(0.0..=1.0).contains(*p)) {
            return Err(MetricError::Invalid(format!(
                "probabilities: row {r} has {p}, outside [0, 1]"
            )));
        }
        let s: f64 = row.iter().sum();
        if (s - 1.0).abs() > 1e-3 {
            return Err(MetricError::Invalid(format!(
                "probabilities: row {r} sums to {s}, not 1 (for logits use \
                 inception_score_from_logits, `jem metric is --logits`)"
            )));
        }
    }
    let logs: Vec<f64> = probs
        .iter()
        .map(|&p| if p > 0.0 { p.ln() } else { f64::NEG_INFINITY })
        .collect();
    score(probs, &logs, n, classes, splits)
}

/// Inception Score from logits (softmax taken here, in f64, with log-sum-exp).
pub fn inception_score_from_logits(
    logits: &[f64],
    classes: usize,
    splits: usize,
) -> Result<InceptionScore> {
    let n = rows(logits.len(), classes, "logits")?;
    check_finite("logits", logits)?;
    let mut logs = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(classes) {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        logs.extend(row.iter().map(|v| v - lse));
    }
    let probs: Vec<f64> = logs.iter().map(|l| l.exp()).collect();
    score(&probs, &logs, n, classes, splits)
}

fn rows(len: usize, classes: usize, name: &str) -> Result<usize> {
    if classes == 0 || !len.is_multiple_of(classes) {
        return Err(MetricError::Invalid(format!(
            "{name}: {len} values do not make rows of {classes} classes"
        )));
    }
    Ok(len / classes)
}

fn score(
    probs: &[f64],
    logs: &[f64],
    n: usize,
    classes: usize,
    splits: usize,
) -> Result<InceptionScore> {
    if splits == 0 || splits > n {
        return Err(MetricError::Invalid(format!(
            "splits: {splits} splits of {n} samples; need 1 <= splits <= samples"
        )));
    }
    let mut scores = Vec::with_capacity(splits);
    for s in 0..splits {
        let (lo, hi) = (s * n / splits, (s + 1) * n / splits);
        let part = &probs[lo * classes..hi * classes];
        let part_logs = &logs[lo * classes..hi * classes];
        let k = (hi - lo) as f64;
        let mut marginal = vec![0.0f64; classes];
        for row in part.chunks_exact(classes) {
            marginal.iter_mut().zip(row).for_each(|(m, p)| *m += p);
        }
        let log_marginal: Vec<f64> = marginal.iter().map(|m| (m / k).ln()).collect();
        let mut kl_sum = 0.0;
        for (row, lrow) in part
            .chunks_exact(classes)
            .zip(part_logs.chunks_exact(classes))
        {
            for ((p, lp), lm) in row.iter().zip(lrow).zip(&log_marginal) {
                if *p > 0.0 {
                    kl_sum += p * (lp - lm);
                }
            }
        }
        scores.push((kl_sum / k).exp());
    }
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / splits as f64;
    Ok(InceptionScore {
        mean,
        std: var.sqrt(),
        splits: scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_rows_score_one() {
        let p = vec![0.25; 4 * 6];
        let is = inception_score(&p, 4, 2).unwrap();
        assert!((is.mean - 1.0).abs() < 1e-12 && is.std.abs() < 1e-12);
        let is = inception_score_from_logits(&[3.0; 24], 4, 3).unwrap();
        assert!((is.mean - 1.0).abs() < 1e-12);
    }

    #[test]
    fn splits_cut_without_shuffling_and_keep_the_remainder() {
        // 5 one-hot rows in 2 splits: rows 0..2 (classes 0, 1) and 2..5 (classes 2, 0, 1)
        let mut p = vec![0.0; 5 * 3];
        for (r, c) in [0, 1, 2, 0, 1].into_iter().enumerate() {
            p[r * 3 + c] = 1.0;
        }
        let is = inception_score(&p, 3, 2).unwrap();
        assert!((is.splits[0] - 2.0).abs() < 1e-12 && (is.splits[1] - 3.0).abs() < 1e-12);
        assert!((is.mean - 2.5).abs() < 1e-12 && (is.std - 0.5).abs() < 1e-12);
        assert_eq!(reference_splits(1000), 1);
        assert_eq!(reference_splits(10_000), 2);
    }

    #[test]
    fn rejects_bad_inputs() {
        assert!(inception_score(&[0.5, 0.5], 2, 2).is_err());
        assert!(inception_score(&[0.5, 0.6], 2, 1).is_err());
        assert!(inception_score(&[0.5, 0.5, 1.0], 2, 1).is_err());
        let e = inception_score_from_logits(&[f64::NAN, 0.0], 2, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("logits[0]"), "{e}");
    }
}
