//! Tests of the configuration.

use jem_optim::Decay;
use jem_sampler::SgldRule;

use super::*;

#[test]
fn defaults_are_the_papers_sadajem_and_round_trip() {
    let c = TrainConfig::default();
    assert_eq!((c.model.depth, c.model.width, c.sampler.steps), (28, 10, 5));
    assert_eq!((c.optim.sam, c.optim.rho), (SamKind::Sam, 0.2));
    c.validate().unwrap();
    let back = TrainConfig::from_toml(&c.to_toml().unwrap(), "round trip").unwrap();
    assert_eq!(back, c);
    // the defaults are the paper's preset, up to its name and the loader's threads
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/cifar10/sadajem.toml");
    let mut preset = TrainConfig::load(&file, &[]).unwrap();
    preset.name = c.name.clone();
    preset.description = c.description.clone();
    preset.data.workers = c.data.workers;
    assert_eq!(preset, c);
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let e = TrainConfig::from_toml("[sampler]\nstepz = 3", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sampler.stepz") || e.contains("stepz"), "{e}");
    let e = TrainConfig::from_toml("[optim]\nlr = \"fast\"", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("optim.lr"), "{e}");
    let e = TrainConfig::from_toml("[model]\ndepth = 12", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.depth"), "{e}");
    let e = TrainConfig::from_toml("[data]\ndataset = \"imagenet\"", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.dataset"), "{e}");
}

#[test]
fn values_that_size_memory_have_limits_named_by_key() {
    for (key, limit) in LIMITS {
        let (table, field) = key.split_once('.').unwrap();
        // (a depth must also be 6n + 4)
        let value = if key == "model.depth" {
            1006
        } else {
            limit + 1
        };
        let text = format!("[{table}]\n{field} = {value}");
        let e = TrainConfig::from_toml(&text, "t.toml")
            .and_then(|c| c.validate())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(key) && e.contains(&format!("limit of {limit}")),
            "{key}: {e}"
        );
    }
}

#[test]
fn overrides_parse_toml_values_or_strings() {
    let mut t = toml::Table::new();
    apply_override(&mut t, "sampler.steps=10").unwrap();
    apply_override(&mut t, "data.dataset=fashion-mnist").unwrap();
    apply_override(&mut t, "schedule.decay={ kind = \"constant\" }").unwrap();
    apply_override(&mut t, "run.select_on=test").unwrap();
    let c = TrainConfig::from_table(t, "overrides").unwrap();
    assert_eq!(c.sampler.steps, 10);
    assert_eq!(c.data.dataset, "fashion-mnist");
    assert_eq!(c.schedule.decay, Decay::Constant);
    assert!(apply_override(&mut toml::Table::new(), "novalue").is_err());
    let mut t = toml::Table::new();
    apply_override(&mut t, "optim.sam=adam-w").unwrap();
    let e = TrainConfig::from_table(t, "x").unwrap_err().to_string();
    assert!(e.contains("optim.sam"), "{e}");
}

#[test]
fn extends_merges_tables_and_reports_cycles() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("base.toml"),
        "name = \"base\"\n[sampler]\nsteps = 10\nreinit_freq = 0.1\n\
         rule = { kind = \"clipped\", step = 1.0, clip = 1.0, noise = 0.0 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("child.toml"),
        "extends = \"base.toml\"\nname = \"child\"\n[sampler]\nsteps = 20\n\
         rule = { kind = \"langevin\", step = 1.0, noise = 0.01 }\n",
    )
    .unwrap();
    let c = TrainConfig::load(&dir.path().join("child.toml"), &[]).unwrap();
    assert_eq!((c.name.as_str(), c.sampler.steps), ("child", 20));
    assert_eq!(c.sampler.reinit_freq, 0.1);
    // a variant replaces the parent's variant instead of merging fields into it
    assert_eq!(c.sampler.rule, SgldRule::JEM);
    std::fs::write(dir.path().join("loop.toml"), "extends = \"loop.toml\"\n").unwrap();
    let e = TrainConfig::load(&dir.path().join("loop.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cycle"), "{e}");
}
