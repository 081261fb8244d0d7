//! Every preset in `configs/` parses, validates and builds its model.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::Device;
use jem_train::{TrainConfig, build_model};

fn presets(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            presets(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml")
            // the published numbers of the reproduction report, not a preset
            && !p.ends_with("paper-numbers.toml")
        {
            out.push(p);
        }
    }
}

/// What the model sees of each data set: `[C, H, W]` and the classes.
fn geometry(cfg: &TrainConfig) -> ([usize; 3], usize) {
    match cfg.data.dataset.as_str() {
        "cifar10" => ([3, 32, 32], 10),
        "cifar100" => ([3, 32, 32], 100),
        "fashion-mnist" | "fashion-mnist-quick" => {
            let s = cfg.data.pad_to.unwrap_or(28);
            ([1, s, s], 10)
        }
        other => panic!("no geometry for {other}"),
    }
}

#[test]
fn every_preset_parses_and_builds_its_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut files = Vec::new();
    presets(&root, &mut files);
    files.sort();
    assert!(files.len() >= 39, "only {} presets", files.len());
    let mut names = BTreeSet::new();
    let mut built = BTreeSet::new();
    for f in &files {
        let cfg = TrainConfig::load(f, &[]).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(
            names.insert(cfg.name.clone()),
            "{}: duplicate name {}",
            f.display(),
            cfg.name
        );
        // `<dataset>/` or `<dataset>/ablation/`
        let mut dir = f.parent().unwrap();
        if dir.file_name().unwrap() == "ablation" {
            dir = dir.parent().unwrap();
        }
        let folder = dir.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            folder,
            cfg.data.dataset,
            "{}: preset in the wrong folder",
            f.display()
        );
        let (shape, classes) = geometry(&cfg);
        let key = format!("{:?} {shape:?} {classes}", cfg.model);
        if built.insert(key) {
            let m = build_model(&cfg, shape, classes, &Device::Cpu)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(m.store.num_params() > 0);
        }
    }
    // the paper's rows are there
    for want in [
        "cifar10-sadajem",
        "cifar10-sadajem-k20",
        "cifar10-sadajem-code",
        "cifar10-jem",
        "cifar10-jempp-m5",
        "cifar10-jempp-m20",
        "cifar10-ablation-jempp-noda-l2",
        "cifar10-ablation-sadajem-asam-rho8",
        "cifar10-jempp",
        "cifar10-softmax",
        "cifar10-softmax-sam",
        "cifar100-sadajem",
        "fmnist-sadajem-wrn10-2",
        "fmnist-softmax-wrn10-2",
    ] {
        assert!(names.contains(want), "missing preset {want}");
    }
}
