//! End-to-end tests of `jem eval`: a tiny run trained here, then each task on its checkpoint
//! (JSON fields, PNG files that decode, errors that name the input). The numerical checks of
//! PGD and of the landscape are in jem-eval's own tests.

use std::path::Path;
use std::process::{Command, Output};

fn jem(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jem"))
        .args(args)
        .env("JEM_CACHE_DIR", cache)
        .output()
        .expect("run jem")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const PRESET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/configs/fashion-mnist-quick/sadajem.toml"
);

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn decodes(path: &Path) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(img.width() > 100 && img.height() > 100);
}

#[test]
fn accuracy_calibration_and_ood_on_a_tiny_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    let mut args = vec!["train", "--config", PRESET, "--out", run_s, "--quiet"];
    for set in [
        "data.px_batch_size=8",
        "data.clf_batch_size=8",
        "sampler.steps=1",
        "sampler.buffer_size=100",
        "eval.ood=[]",
        "data.valid_size=200",
        "run.eval_every_iters=0",
        "run.max_iters=2",
    ] {
        args.extend(["--set", set]);
    }
    let out = jem(&args, tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let ck = run.join("last.safetensors");
    let ck_s = ck.to_str().unwrap();
    let eval_dir = run.join("eval");

    let out = jem(&["eval", "accuracy", "--checkpoint", ck_s], tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    plain_progress(&stderr(&out), "classify test: 2000/2000 images", "images");
    let acc = json(&eval_dir.join("accuracy.json"));
    assert_eq!(acc["n"], 2000);
    let per_class = acc["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 10);
    assert_eq!(per_class[0]["name"], "T-shirt/top");
    let mean: f64 = per_class
        .iter()
        .map(|c| c["accuracy"].as_f64().unwrap())
        .sum::<f64>()
        / 10.0;
    // balanced test split: the mean of the per-class accuracies is the accuracy
    assert!((mean - acc["accuracy"].as_f64().unwrap()).abs() < 1e-12);

    let out = jem(
        &["eval", "calibration", "-q", "--checkpoint", ck_s],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "--quiet writes nothing on stderr");
    let cal = json(&eval_dir.join("calibration.json"));
    assert_eq!(cal["reference"]["bins"].as_array().unwrap().len(), 20);
    assert_eq!(cal["torchmetrics"]["bins"].as_array().unwrap().len(), 16);
    assert_eq!(cal["accuracy"], acc["accuracy"]);
    decodes(&eval_dir.join("calibration.png"));

    let out = jem(
        &["eval", "ood", "--checkpoint", ck_s, "--max-images", "64"],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let ood = json(&eval_dir.join("ood.json"));
    let sets = ood["sets"].as_array().unwrap();
    let names: Vec<&str> = sets.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mnist-quick", "uniform", "constant"]);
    for s in sets {
        assert_eq!(s["n"], 64);
        for score in ["px", "py", "pxgrad"] {
            let a = s[score]["auroc"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{score}: {a}");
        }
        decodes(&eval_dir.join(format!("ood-hist-{}.png", s["name"].as_str().unwrap())));
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("mnist-quick") && table.contains("AUROC"),
        "{table}"
    );
    // the interpolation set (pairs mixed in model space), into another folder
    let interp_dir = tmp.path().join("interp");
    let out = jem(
        &[
            "eval",
            "ood",
            "--checkpoint",
            ck_s,
            "--sets",
            "fashion-mnist-quick-interp",
            "--max-images",
            "40",
            "--out",
            interp_dir.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let set = &json(&interp_dir.join("ood.json"))["sets"][0];
    assert_eq!(set["name"], "fashion-mnist-quick-interp");
    assert_eq!(set["n"], 40);
    assert!((0.0..=1.0).contains(&set["px"]["auroc"].as_f64().unwrap()));

    let out = jem(
        &[
            "eval",
            "robustness",
            "--checkpoint",
            ck_s,
            "--images",
            "10",
            "--steps",
            "2",
            "--eps",
            "2,8",
            "--norm",
            "linf,l2",
            "--l2-eps",
            "64,128,255",
            "--l2-step-size",
            "64",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    plain_progress(&stderr(&out), "pgd ", "batches");
    let rob = json(&eval_dir.join("robustness.json"));
    let rows = rob.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        let points = r["result"]["points"].as_array().unwrap();
        // each norm its own radii and step
        let (radii, step) = if r["norm"] == "l_2" {
            (3, 64.0)
        } else {
            (2, 2.0)
        };
        assert_eq!(points.len(), radii, "{r}");
        let got = r["result"]["config"]["step_size"].as_f64().unwrap() * 255.0;
        assert!((got - step).abs() < 1e-9, "{r}");
        for p in points {
            let (robust, last, clean) = (
                p["robust_accuracy"].as_f64().unwrap(),
                p["last_iterate_accuracy"].as_f64().unwrap(),
                p["clean_accuracy"].as_f64().unwrap(),
            );
            assert!(robust <= last && last <= clean + 1e-12, "{p}");
            assert_eq!(p["n"], 10);
        }
    }
    assert_eq!(rows[1]["result"]["points"][2]["eps"], 1.0);
    // two norms, two figures (their radii are not on one scale)
    decodes(&eval_dir.join("robustness-linf.png"));
    decodes(&eval_dir.join("robustness-l2.png"));

    // BPDA+EOT through a 2-step purification defence, into another folder
    let eot_dir = tmp.path().join("eot");
    let eot_s = eot_dir.to_str().unwrap();
    let base = [
        "eval",
        "robustness",
        "--checkpoint",
        ck_s,
        "--out",
        eot_s,
        "--images",
        "4",
        "--steps",
        "1",
        "--eps",
        "8",
        "--bpda-eot",
        "2",
        "--defense-reps",
        "3",
    ];
    let out = jem(&[&base[..], &["--eot-reps", "2"]].concat(), tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let rob = json(&eot_dir.join("robustness.json"));
    let cfg = &rob[0]["result"]["config"]["bpda_eot"];
    assert_eq!(cfg["langevin_steps"], 2, "{rob}");
    assert_eq!(cfg["attack_reps"], 2);
    assert_eq!(cfg["defense_reps"], 3);
    let p = &rob[0]["result"]["points"][0];
    assert!(p["robust_accuracy"].as_f64().unwrap() <= p["clean_accuracy"].as_f64().unwrap());
    let out = jem(&[&base[..], &["--eot-reps", "0"]].concat(), tmp.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("attack_reps"), "{}", stderr(&out));

    let out = jem(
        &[
            "eval",
            "landscape",
            "--checkpoint",
            ck_s,
            "--samples",
            "8",
            "--points",
            "5",
            "--two-d",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    plain_progress(&stderr(&out), "landscape 2-D: 25/25 points", "points");
    let land = json(&eval_dir.join("landscape.json"));
    let c = &land["checkpoints"][0];
    assert_eq!(c["one_d"]["energies"].as_array().unwrap().len(), 5);
    assert_eq!(c["two_d"]["energies"].as_array().unwrap().len(), 5);
    // the centre of the 2-D scan is the centre of the 1-D scan: the model itself
    let mid1 = c["one_d"]["energies"][2].as_f64().unwrap();
    let mid2 = c["two_d"]["energies"][2][2].as_f64().unwrap();
    assert!((mid1 - mid2).abs() < 1e-9, "{mid1} vs {mid2}");
    decodes(&eval_dir.join("landscape-1d.png"));
    decodes(&eval_dir.join("landscape-2d.png"));

    let out = jem(
        &[
            "eval",
            "generate",
            "--checkpoint",
            ck_s,
            "--chains",
            "4",
            "--steps",
            "3",
            "--per-class",
            "2",
            "--cond-steps",
            "3",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    plain_progress(&stderr(&out), "generate unconditional: 3/3 steps", "steps");
    for png in ["buffer.png", "chains.png", "conditional.png"] {
        let img = image::open(eval_dir.join(png)).unwrap();
        assert!(img.width() >= 32 && img.height() >= 32, "{png}");
    }
    // one row of 32-pixel cells per class
    let cond = image::open(eval_dir.join("conditional.png")).unwrap();
    assert!(cond.height() >= 10 * 32, "{}", cond.height());
    let chains = jem_metrics::npy::read_npy(&eval_dir.join("chains.npy")).unwrap();
    assert_eq!(chains.shape, vec![4, 1, 32, 32]);

    // FID / IS: without the Inception weights, instructions and no number
    let out = jem(
        &["eval", "fid", "--checkpoint", ck_s, "--data-dir", run_s],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("jem data fetch inception"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    // with stand-in weights and pre-made real statistics (computing those is tested in
    // metric_cli), on a few buffer images
    let weights = tmp.path().join("w.safetensors");
    let tensors = jem_metrics::inception::synthetic::formula_weights().unwrap();
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let stats_dir = tmp.path().join("fid-stats");
    std::fs::create_dir_all(&stats_dir).unwrap();
    let real = jem_metrics::fid::GaussianStats {
        mu: vec![0.1; 2048],
        sigma: (0..2048 * 2048)
            .map(|i| if i % 2049 == 0 { 0.01 } else { 0.0 })
            .collect(),
        n: 0,
    };
    jem_metrics::stats_io::save_stats(
        &stats_dir.join("fashion-mnist-quick-test-w.safetensors"),
        &real,
        &[],
    )
    .unwrap();
    let w = weights.to_str().unwrap();
    for task in ["fid", "is"] {
        let args = [
            "eval",
            task,
            "--checkpoint",
            ck_s,
            "--weights",
            w,
            "--real-splits",
            "test",
            "--ratio",
            "0.05",
        ];
        let out = jem(&args, tmp.path());
        assert!(out.status.success(), "{task}: {}", stderr(&out));
        let q = json(&eval_dir.join(format!("{task}.json")));
        assert_eq!(q["n_source"], 100);
        if task == "fid" {
            assert!(q["fid"]["fid"].as_f64().unwrap() > 0.0, "{q}");
            assert!(q["n_fid"].as_u64().unwrap() >= 2);
            // the times: the generated images' Inception pass; the real statistics were cached
            let t = &q["seconds"];
            assert_eq!(t["inception_images"], q["n_fid"], "{q}");
            assert!(t["inception"].as_f64().unwrap() > 0.0, "{q}");
            assert_eq!(t["real_images"], 0, "{q}");
            assert_eq!(t["real_stats"], 0.0, "{q}");
        } else {
            assert!(q["is"]["mean"].as_f64().unwrap() >= 1.0, "{q}");
        }
    }
    // the second task did not overwrite the first one's result
    assert!(json(&eval_dir.join("fid.json"))["fid"]["fid"].is_number());

    // fresh chains: their own files beside the buffer's, every chain's image kept
    for task in ["fid", "is"] {
        let args = [
            "eval",
            task,
            "--checkpoint",
            ck_s,
            "--weights",
            w,
            "--real-splits",
            "test",
            "--source",
            "chains",
            "--chains",
            "6",
            "--chain-steps",
            "2",
        ];
        let out = jem(&args, tmp.path());
        assert!(out.status.success(), "{task} chains: {}", stderr(&out));
        let q = json(&eval_dir.join(format!("{task}-chains.json")));
        assert_eq!(q["n_source"], 6, "{q}");
        assert_eq!(q[format!("n_{task}")], 6, "{q}");
        assert_eq!(q["source"]["kind"], "chains");
        assert_eq!(q["chain_init"], "informative");
        let protocol = q["protocol"].as_str().unwrap();
        assert_eq!(
            protocol,
            "6 fresh chains from the informative init, 2 steps of the reference's eval sampler \
             (step size 1, no noise), seed 1, all kept"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("protocol: {protocol}")),
            "{stdout}"
        );
        assert_eq!(q["seconds"]["inception_images"], 6, "{q}");
        assert!(q["seconds"]["source"].as_f64().unwrap() > 0.0, "{q}");
        assert!(stdout.contains("s per 1,000)"), "{stdout}");
    }
    // the buffer's results are still there and still of the buffer
    let fid = json(&eval_dir.join("fid.json"));
    assert_eq!(fid["source"]["kind"], "buffer");
    assert_eq!(fid["n_source"], 100);
    assert!(
        fid["protocol"]
            .as_str()
            .unwrap()
            .starts_with("replay buffer (100 images), top 5 %")
    );
    // without options: the reference's protocol, 10 % of each predicted class for IS
    let default_dir = tmp.path().join("default-is");
    let args = [
        "eval",
        "is",
        "--checkpoint",
        ck_s,
        "--weights",
        w,
        "--out",
        default_dir.to_str().unwrap(),
    ];
    let out = jem(&args, tmp.path());
    assert!(out.status.success(), "is: {}", stderr(&out));
    let q = json(&default_dir.join("is.json"));
    assert_eq!(
        q["protocol"],
        "replay buffer (100 images), top 10 % per predicted class by confidence, as the reference"
    );
    assert_eq!(q["options"]["is_ratio"], 0.1);
    assert!((10..=19).contains(&q["n_is"].as_u64().unwrap()), "{q}");
    assert!(q["chain_init"].is_null());
    // chain options are checked before any loading, by flag
    for (bad, flag) in [
        (&["--source", "chains", "--chains", "0"][..], "--chains"),
        (
            &["--source", "chains", "--chain-steps", "0"][..],
            "--chain-steps",
        ),
        (&["--chains", "5"][..], "--chains"),
    ] {
        let args = [
            &["eval", "fid", "--checkpoint", ck_s, "--weights", w][..],
            bad,
        ]
        .concat();
        let out = jem(&args, tmp.path());
        assert!(!out.status.success(), "{bad:?}");
        assert!(stderr(&out).contains(flag), "{bad:?}: {}", stderr(&out));
    }

    // errors name the input
    let out = jem(&["eval", "accuracy", "--checkpoint", run_s], tmp.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains(run_s), "{}", stderr(&out));
    let out = jem(
        &["eval", "ood", "--checkpoint", ck_s, "--sets", "imagenet"],
        tmp.path(),
    );
    assert!(!out.status.success() && stderr(&out).contains("imagenet"));
}

/// Progress on a stderr that is not a terminal: plain lines with the count and the rate, no
/// carriage returns, no bar.
fn plain_progress(err: &str, expected: &str, unit: &str) {
    assert!(!err.contains('\r'), "a carriage return in a log: {err:?}");
    assert!(err.contains(expected), "no `{expected}` line in {err}");
    assert!(
        err.contains(&format!(" {unit}/s")) || err.contains(" s/"),
        "no rate in {err}"
    );
    assert!(!err.contains("[="), "a bar in a log: {err}");
}
