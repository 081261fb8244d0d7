//! Figures written at the end of a run: the replay buffer and the learning curves.

use std::path::Path;

use candle_core::Tensor;
use jem_plot::{LineChart, Series};
use jem_sampler::ReplayBuffer;

use crate::Result;
use crate::log::JsonLines;

/// `samples/buffer-final.png`: 10 chains from each of `classes` equal segments of the
/// buffer (the informative initialization fills segment `c` from class `c`), one row each.
pub fn buffer_grid(run_dir: &Path, buffer: &ReplayBuffer, classes: usize) -> Result<()> {
    let n = buffer.len();
    let per_row = 10.min(n);
    let rows = classes.clamp(1, 10).min(n / per_row.max(1)).max(1);
    let seg = n / rows;
    let idx: Vec<u32> = (0..rows)
        .flat_map(|r| (0..per_row).map(move |j| (r * seg + j * (seg / per_row).max(1)) as u32))
        .map(|i| i.min(n as u32 - 1))
        .collect();
    let ids = Tensor::from_vec(idx.clone(), idx.len(), buffer.data().device())?;
    let x = buffer.data().index_select(&ids, 0)?;
    jem_plot::save_grid(&run_dir.join("samples/buffer-final.png"), &x, per_row)?;
    Ok(())
}

fn series(records: &[serde_json::Value], x: &str, y: &str, name: &str) -> Series {
    Series::new(
        name,
        records
            .iter()
            .filter_map(|r| Some((r.get(x)?.as_f64()?, r.get(y)?.as_f64()?)))
            .collect(),
    )
}

/// `curves/*.png` from `train.jsonl` and `eval.jsonl` (which span every session of a
/// resumed run).
pub fn curves(run_dir: &Path) -> Result<()> {
    let train: Vec<_> = JsonLines::read(&run_dir.join("train.jsonl"))
        .into_iter()
        .filter(|r| r.get("event").is_none())
        .collect();
    let evals = JsonLines::read(&run_dir.join("eval.jsonl"));
    let dir = run_dir.join("curves");
    std::fs::create_dir_all(&dir).map_err(|e| crate::TrainError::io(&dir, e))?;
    let mut charts = vec![
        (
            "loss.png",
            LineChart::new("Training loss", "iteration", "loss")
                .with(series(&train, "iteration", "loss", "loss"))
                .with(series(&train, "iteration", "ce", "cross-entropy")),
        ),
        (
            "energy.png",
            LineChart::new(
                "Energies of the training batches",
                "iteration",
                "E(x) = -LSE f(x)",
            )
            .with(series(&train, "iteration", "e_pos", "E(x+) data"))
            .with(series(&train, "iteration", "e_neg", "E(x-) samples")),
        ),
        (
            "accuracy.png",
            LineChart::new("Accuracy", "iteration", "accuracy")
                .with(series(
                    &train,
                    "iteration",
                    "acc",
                    "train batch (augmented)",
                ))
                .with(series(&evals, "iteration", "test_acc", "test"))
                .with(series(&evals, "iteration", "valid_acc", "validation")),
        ),
        (
            "ece.png",
            LineChart::new("Test calibration error", "iteration", "ECE").with(series(
                &evals,
                "iteration",
                "test_ece",
                "ECE",
            )),
        ),
    ];
    let ood_names: Vec<String> = evals
        .last()
        .and_then(|r| r.get("ood")?.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|o| Some(o.get("dataset")?.as_str()?.to_string()))
        .collect();
    if !ood_names.is_empty() {
        let mut chart = LineChart::new("OOD detection (test set positive)", "iteration", "AUROC");
        for name in &ood_names {
            for (key, label) in [("log_px", "log p(x)"), ("max_py", "max p(y|x)")] {
                let pts = evals
                    .iter()
                    .filter_map(|r| {
                        let o =
                            r.get("ood")?.as_array()?.iter().find(|o| {
                                o.get("dataset").and_then(|d| d.as_str()) == Some(name)
                            })?;
                        Some((r.get("iteration")?.as_f64()?, o.get(key)?.as_f64()?))
                    })
                    .collect();
                chart = chart.with(Series::new(format!("{name}: {label}"), pts));
            }
        }
        charts.push(("ood.png", chart));
    }
    // a chart without data is not drawn (the energies of a softmax run are logged as null)
    for (file, mut chart) in charts {
        chart.series.retain(|s| !s.points.is_empty());
        if !chart.series.is_empty() {
            chart.save(&dir.join(file))?;
        }
    }
    Ok(())
}
