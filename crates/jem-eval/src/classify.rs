//! Classification on the test split: accuracy with a per-class table (reference 6.1) and
//! calibration (reference 6.4: ECE, 20 bins `(lo, hi]`; torchmetrics' 15 bins beside it).

use std::path::Path;

use jem_metrics::calibration::{Calibration, EceConvention, calibration};
use jem_metrics::confidences_and_hits;
use jem_plot::{ReliabilityBin, save_reliability_diagram};
use jem_train::eval::{Predictions, predict_with};
use serde::{Deserialize, Serialize};

use crate::output::{plot_err, write_json};
use crate::{EvalSession, Result};

/// Accuracy of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    /// Class index.
    pub class: usize,
    /// Class name, when the data set has names.
    pub name: Option<String>,
    /// Test images of the class.
    pub count: usize,
    /// Their accuracy.
    pub accuracy: f64,
}

/// `jem eval accuracy`: test accuracy in eval mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyResult {
    /// The checkpoint.
    pub checkpoint: String,
    /// Its training iterations.
    pub iteration: u64,
    /// Test images.
    pub n: usize,
    /// Top-1 accuracy.
    pub accuracy: f64,
    /// Per class.
    pub per_class: Vec<ClassAccuracy>,
}

/// `jem eval calibration`: calibration errors in both conventions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibrationResult {
    /// The checkpoint.
    pub checkpoint: String,
    /// Test accuracy.
    pub accuracy: f64,
    /// The reference's `ECELoss(20)`: 20 bins `(lo, hi]` (the paper's numbers and figure).
    pub reference: Calibration,
    /// torchmetrics' `multiclass_calibration_error`, 15 bins `[lo, hi)`.
    pub torchmetrics: Calibration,
}

/// Model predictions on the test split (eval-mode BatchNorm).
pub fn test_predictions(s: &EvalSession, batch: usize) -> Result<Predictions> {
    let progress = s.progress("classify test", s.data.test.len() as u64, "images");
    Ok(predict_with(
        &s.model,
        &s.data,
        s.data.test.clone(),
        batch,
        &s.device,
        &progress,
    )?)
}

/// Accuracy and the per-class table; written to `out/accuracy.json`.
pub fn accuracy(s: &EvalSession, batch: usize, out: &Path) -> Result<AccuracyResult> {
    let p = test_predictions(s, batch)?;
    let (_, hits) = confidences_and_hits(&p.probs, p.classes, &p.labels)?;
    let names = s.config.dataset().ok().and_then(|d| d.class_names());
    let mut count = vec![0usize; p.classes];
    let mut right = vec![0usize; p.classes];
    for (&y, &h) in p.labels.iter().zip(&hits) {
        count[y as usize] += 1;
        right[y as usize] += usize::from(h);
    }
    let per_class = (0..p.classes)
        .map(|c| ClassAccuracy {
            class: c,
            name: names.and_then(|n| n.get(c)).map(|n| n.to_string()),
            count: count[c],
            accuracy: if count[c] > 0 {
                right[c] as f64 / count[c] as f64
            } else {
                0.0
            },
        })
        .collect();
    let result = AccuracyResult {
        checkpoint: s.checkpoint.display().to_string(),
        iteration: s.iteration,
        n: hits.len(),
        accuracy: hits.iter().filter(|&&h| h).count() as f64 / hits.len().max(1) as f64,
        per_class,
    };
    write_json(out, "accuracy.json", &result)?;
    Ok(result)
}

/// ECE in both conventions; writes `out/calibration.json` and the reliability diagram of the
/// reference's 20 bins, `out/calibration.png` (the paper's Figure 4).
pub fn calibrate(s: &EvalSession, batch: usize, out: &Path) -> Result<CalibrationResult> {
    let p = test_predictions(s, batch)?;
    let (conf, hits) = confidences_and_hits(&p.probs, p.classes, &p.labels)?;
    let reference = calibration(&conf, &hits, 20, EceConvention::Reference)?;
    let torchmetrics = calibration(&conf, &hits, 15, EceConvention::Torchmetrics)?;
    let accuracy = hits.iter().filter(|&&h| h).count() as f64 / hits.len().max(1) as f64;
    let bins: Vec<ReliabilityBin> = reference
        .bins
        .iter()
        .map(|b| ReliabilityBin {
            lo: b.lo,
            hi: b.hi,
            count: b.count,
            confidence: b.confidence,
            accuracy: b.accuracy,
        })
        .collect();
    crate::output::ensure_dir(out)?;
    let title = format!(
        "ECE {:.2}%  (accuracy {:.2}%)",
        100.0 * reference.ece,
        100.0 * accuracy
    );
    save_reliability_diagram(&out.join("calibration.png"), &title, &bins).map_err(plot_err)?;
    let result = CalibrationResult {
        checkpoint: s.checkpoint.display().to_string(),
        accuracy,
        reference,
        torchmetrics,
    };
    write_json(out, "calibration.json", &result)?;
    Ok(result)
}
