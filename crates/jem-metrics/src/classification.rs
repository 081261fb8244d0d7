//! Accuracy from per-class scores.

use crate::{MetricError, Result, check_finite};

/// For each row of `scores` (`n` rows of `classes` probabilities, row-major), the largest
/// score (the confidence, when the scores are probabilities) and whether its class (the first
/// one on ties) is the label.
pub fn confidences_and_hits(
    scores: &[f64],
    classes: usize,
    labels: &[u32],
) -> Result<(Vec<f64>, Vec<bool>)> {
    if classes == 0 || scores.len() != labels.len() * classes {
        return Err(MetricError::Invalid(format!(
            "scores: {} values do not make {} rows of {classes} classes",
            scores.len(),
            labels.len()
        )));
    }
    check_finite("scores", scores)?;
    let mut conf = Vec::with_capacity(labels.len());
    let mut hits = Vec::with_capacity(labels.len());
    for (row, &y) in scores.chunks(classes).zip(labels) {
        if y as usize >= classes {
            return Err(MetricError::Invalid(format!(
                "labels: {y} is not a class of {classes}"
            )));
        }
        let (arg, max) = row
            .iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |(a, m), (i, &v)| {
                    if v > m { (i, v) } else { (a, m) }
                },
            );
        conf.push(max);
        hits.push(arg == y as usize);
    }
    Ok((conf, hits))
}

/// Fraction of rows whose top-scoring class is the label.
pub fn accuracy(scores: &[f64], classes: usize, labels: &[u32]) -> Result<f64> {
    if labels.is_empty() {
        return Err(MetricError::Invalid("labels: no samples".into()));
    }
    let (_, hits) = confidences_and_hits(scores, classes, labels)?;
    Ok(hits.iter().filter(|&&h| h).count() as f64 / hits.len() as f64)
}

/// Fraction of rows whose label is among the `k` top-scoring classes. A tie is broken towards
/// the lower class index (as [`accuracy`], which this equals for `k = 1`).
pub fn top_k_accuracy(scores: &[f64], classes: usize, labels: &[u32], k: usize) -> Result<f64> {
    if labels.is_empty() {
        return Err(MetricError::Invalid("labels: no samples".into()));
    }
    if k == 0 || k > classes {
        return Err(MetricError::Invalid(format!(
            "k: {k} is not in 1..={classes}"
        )));
    }
    // checks the shapes, values and labels
    confidences_and_hits(scores, classes, labels)?;
    let hits = scores
        .chunks(classes)
        .zip(labels)
        .filter(|(row, y)| {
            let y = **y as usize;
            let sy = row[y];
            let rank = row
                .iter()
                .enumerate()
                .filter(|&(j, &s)| s > sy || (s == sy && j < y))
                .count();
            rank < k
        })
        .count();
    Ok(hits as f64 / labels.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hits_and_takes_the_first_of_tied_classes() {
        let scores = [0.1, 0.9, 0.5, 0.5, 0.7, 0.3];
        let (conf, hits) = confidences_and_hits(&scores, 2, &[1, 1, 1]).unwrap();
        assert_eq!(conf, vec![0.9, 0.5, 0.7]);
        assert_eq!(hits, vec![true, false, false]);
        assert!((accuracy(&scores, 2, &[1, 1, 1]).unwrap() - 1.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn top_k_counts_labels_among_the_best_k() {
        let scores = [0.1, 0.6, 0.3, 0.5, 0.2, 0.3, 0.2, 0.2, 0.6];
        // row 0: label 2 is 2nd; row 1: label 2 is 2nd; row 2: label 1 ties class 0, ranked 3rd
        let labels = [2, 2, 1];
        assert_eq!(top_k_accuracy(&scores, 3, &labels, 1).unwrap(), 0.0);
        assert!((top_k_accuracy(&scores, 3, &labels, 2).unwrap() - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(top_k_accuracy(&scores, 3, &labels, 3).unwrap(), 1.0);
        assert!(top_k_accuracy(&scores, 3, &labels, 4).is_err());
        assert_eq!(
            top_k_accuracy(&scores, 3, &[1, 0, 2], 1).unwrap(),
            accuracy(&scores, 3, &[1, 0, 2]).unwrap()
        );
    }

    #[test]
    fn rejects_bad_shapes_labels_and_nans() {
        assert!(accuracy(&[0.5; 3], 2, &[0, 1]).is_err());
        let e = accuracy(&[0.5, 0.5], 2, &[2]).unwrap_err().to_string();
        assert!(e.contains("labels"), "{e}");
        let e = accuracy(&[f64::NAN, 0.5], 2, &[0]).unwrap_err().to_string();
        assert!(e.contains("scores[0]"), "{e}");
    }
}
