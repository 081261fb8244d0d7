//! Evaluation during training: accuracy, calibration and OOD detection with eval-mode
//! BatchNorm on whole data sets.

use jem_io::progress::Progress;
use std::sync::Arc;

use candle_core::{DType, Device};
use jem_data::ImageSet;
use jem_metrics::{EceConvention, auroc, calibration, confidences_and_hits};
use jem_models::{BnMode, WideResNet, jem};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::data::RunData;

/// Model outputs on a data set.
pub struct Predictions {
    /// Softmax probabilities, row-major `[N, classes]`.
    pub probs: Vec<f64>,
    /// `LSE(f(x))` = log p(x) + const, per image.
    pub log_px: Vec<f64>,
    /// Labels.
    pub labels: Vec<u32>,
    /// Classes.
    pub classes: usize,
}

impl Predictions {
    /// `max_y p(y|x)` per image.
    pub fn max_prob(&self) -> Vec<f64> {
        self.probs
            .chunks(self.classes)
            .map(|r| r.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            .collect()
    }
}

/// Runs the model (eval-mode BatchNorm) over every image of `set`.
pub fn predict(
    model: &WideResNet,
    data: &RunData,
    set: Arc<ImageSet>,
    batch: usize,
    device: &Device,
) -> Result<Predictions> {
    predict_with(model, data, set, batch, device, &Progress::hidden())
}

/// [`predict`], counting the images done on `progress`.
pub fn predict_with(
    model: &WideResNet,
    data: &RunData,
    set: Arc<ImageSet>,
    batch: usize,
    device: &Device,
    progress: &Progress,
) -> Result<Predictions> {
    let loader = data.eval_loader(set, batch, device)?;
    let (mut probs, mut log_px, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut classes = 0;
    for b in loader.epoch(0) {
        let b = b?;
        let logits = model.logits(&b.images, BnMode::Eval)?.detach();
        classes = logits.dim(1)?;
        let lse = jem::log_density(&logits)?;
        let p = candle_core::Tensor::exp(&logits.broadcast_sub(&lse.unsqueeze(1)?)?)?;
        probs.extend(p.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?);
        log_px.extend(lse.to_dtype(DType::F64)?.to_vec1::<f64>()?);
        labels.extend(b.labels.to_vec1::<u32>()?);
        progress.inc(b.labels.dim(0)? as u64);
    }
    progress.finish();
    Ok(Predictions {
        probs,
        log_px,
        labels,
        classes,
    })
}

/// AUROCs of one OOD set (in-distribution = the test set, positive).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OodScores {
    /// The OOD data set.
    pub dataset: String,
    /// AUROC of `log p(x)`.
    pub log_px: f64,
    /// AUROC of `max_y p(y|x)`.
    pub max_py: f64,
}

/// One evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Iterations completed.
    pub iteration: u64,
    /// Epoch (fractional: iterations / iterations per epoch).
    pub epoch: f64,
    /// Training minutes so far.
    pub train_minutes: f64,
    /// Test accuracy.
    pub test_acc: f64,
    /// Test ECE (torchmetrics convention).
    pub test_ece: f64,
    /// Mean `log p(x)` of the test images.
    pub test_log_px: f64,
    /// Validation accuracy, when there is a validation split.
    pub valid_acc: Option<f64>,
    /// OOD detection.
    pub ood: Vec<OodScores>,
    /// Seconds the evaluation took.
    pub seconds: f64,
}

/// Evaluates the model on the test set, the validation split and the OOD sets.
pub fn evaluate(
    model: &WideResNet,
    data: &RunData,
    ece_bins: usize,
    batch: usize,
    device: &Device,
) -> Result<EvalRecord> {
    let t0 = std::time::Instant::now();
    let test = predict(model, data, data.test.clone(), batch, device)?;
    let (conf, hits) = confidences_and_hits(&test.probs, test.classes, &test.labels)?;
    let test_acc = hits.iter().filter(|&&h| h).count() as f64 / hits.len() as f64;
    let cal = calibration(&conf, &hits, ece_bins, EceConvention::Torchmetrics)?;
    let valid_acc = match &data.valid {
        Some(v) => {
            let p = predict(model, data, v.clone(), batch, device)?;
            Some(jem_metrics::accuracy(&p.probs, p.classes, &p.labels)?)
        }
        None => None,
    };
    let mut ood = Vec::new();
    for (name, set) in &data.ood {
        let p = predict(model, data, set.clone(), batch, device)?;
        ood.push(OodScores {
            dataset: name.clone(),
            log_px: auroc(&test.log_px, &p.log_px)?,
            max_py: auroc(&test.max_prob(), &p.max_prob())?,
        });
    }
    Ok(EvalRecord {
        iteration: 0,
        epoch: 0.0,
        train_minutes: 0.0,
        test_acc,
        test_ece: cal.ece,
        test_log_px: test.log_px.iter().sum::<f64>() / test.log_px.len() as f64,
        valid_acc,
        ood,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
