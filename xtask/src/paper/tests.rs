use super::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

mod crosscheck;

fn paper() -> PaperFile {
    PaperFile::load(&root().join("configs/paper-numbers.toml")).unwrap()
}

fn value<'a>(p: &'a PaperFile, table: &str, row: &str, metric: &str) -> Option<&'a str> {
    let t = p.table.iter().find(|t| t.id == table).unwrap();
    let r = t.row.iter().find(|r| r.label == row).unwrap();
    r.values.get(metric).map(String::as_str)
}

#[test]
fn every_paper_preset_resolves_to_the_settings_of_its_row() {
    let p = paper();
    let bad = check_presets(&p, &root().join("configs"));
    assert!(
        bad.is_empty(),
        "presets that drift from their rows: {bad:#?}"
    );
    assert_eq!(p.preset.len(), 32);
}

/// The check fails when a preset drifts: K changed on the real K = 10 preset (as a file that
/// extends it, the way a user would change it), rho and the p(x) augmentation in memory.
#[test]
fn a_preset_that_drifts_from_its_row_is_caught() {
    let p = paper();
    let want = p
        .preset
        .iter()
        .find(|s| s.path == "cifar10/sadajem-k10")
        .unwrap();
    let dir = std::env::temp_dir().join(format!("xtask-paper-drift-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let real = root().join("configs/cifar10/sadajem-k10.toml");
    let drifted = dir.join("sadajem-k10.toml");
    std::fs::write(
        &drifted,
        format!(
            "extends = {:?}\n[sampler]\nsteps = 5\n",
            real.display().to_string()
        ),
    )
    .unwrap();
    let cfg = TrainConfig::load(&drifted, &[]).unwrap();
    assert_eq!(
        mismatches(&cfg, want),
        ["sampler.steps (K): 5, the paper's row: 10"]
    );
    let _ = std::fs::remove_dir_all(&dir);

    let mut cfg = TrainConfig::load(&real, &[]).unwrap();
    assert!(mismatches(&cfg, want).is_empty());
    cfg.optim.rho = 0.05;
    cfg.data.px_augment = true;
    let m = mismatches(&cfg, want);
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(m[0].starts_with("optim.rho: 0.05"), "{m:?}");
    assert!(m[1].starts_with("data.px_augment"), "{m:?}");
}

#[test]
fn every_cifar_preset_is_a_paper_preset_or_named_outside_the_tables() {
    let p = paper();
    let known: BTreeSet<&str> = p
        .preset
        .iter()
        .map(|s| s.path.as_str())
        .chain(p.outside.iter().map(String::as_str))
        .collect();
    let configs = root().join("configs");
    let mut found = Vec::new();
    let mut stack = vec![configs.join("cifar10"), configs.join("cifar100")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "toml") {
                let rel = path.strip_prefix(&configs).unwrap().with_extension("");
                found.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    for f in &found {
        assert!(
            known.contains(f.as_str()),
            "configs/{f}.toml is in no row and not in `outside`"
        );
    }
    for k in &known {
        assert!(
            found.iter().any(|f| f == k),
            "configs/{k}.toml does not exist"
        );
    }
}

/// The numbers that earlier versions of the file had wrong, and a few others, where the
/// paper prints them.
#[test]
fn the_numbers_are_the_papers() {
    let p = paper();
    assert_eq!(
        value(&p, "table1", "SADA-JEM (K=5)", "accuracy"),
        Some("95.5")
    );
    assert_eq!(value(&p, "table1", "SADA-JEM (K=5)", "fid"), Some("9.41"));
    assert_eq!(
        value(&p, "table1", "SADA-JEM (K=10)", "accuracy"),
        Some("96.0")
    );
    assert_eq!(
        value(&p, "table1", "SADA-JEM (K=20)", "accuracy"),
        Some("96.1")
    );
    assert_eq!(
        value(&p, "table1", "JEM++ (M=10) [48]", "accuracy"),
        Some("93.5")
    );
    assert_eq!(
        value(&p, "table1", "JEM++ (M=20) [48]", "accuracy"),
        Some("94.1")
    );
    assert_eq!(value(&p, "table1", "Softmax", "is"), None);
    assert_eq!(
        value(&p, "table2", "JEM++ (M=10)* [48]", "is"),
        Some("9.97")
    );
    assert_eq!(value(&p, "table2", "SADA-JEM (K=5)", "is"), Some("11.63"));
    // Table 3: the SADA-JEM K = 5 row (not K = 20's .98), JEM++'s log p(x) row (not its
    // max p(y|x) row)
    assert_eq!(
        value(&p, "table3-px", "SADA-JEM (K=5)", "ood:svhn:px"),
        Some(".91")
    );
    assert_eq!(
        value(&p, "table3-px", "SADA-JEM (K=20)", "ood:svhn:px"),
        Some(".98")
    );
    assert_eq!(
        value(&p, "table3-px", "JEM++ (M=20) [48]", "ood:svhn:px"),
        Some(".85")
    );
    assert_eq!(
        value(&p, "table3-py", "JEM++ (M=20) [48]", "ood:svhn:py"),
        Some(".94")
    );
    assert_eq!(
        value(&p, "table3-px", "WideResNet [35]", "ood:cifar10-interp:px"),
        None
    );
    assert_eq!(value(&p, "ece", "SADA-JEM (K=10)", "ece"), Some("2.04"));
    assert_eq!(value(&p, "table5", "JEM++ w/o DA + L2*", "fid"), None);
    assert_eq!(value(&p, "table6", "SAM (rho = 0.4)", "fid"), Some("14.1"));
    // every number as printed, and how many each table has
    let mut count = BTreeMap::new();
    for t in &p.table {
        for r in &t.row {
            assert!(r.source.starts_with("paper, "), "{}: {}", t.id, r.source);
            for v in r.values.values() {
                assert!(v.parse::<f64>().is_ok(), "{}: `{v}`", t.id);
            }
            *count.entry(t.id.as_str()).or_insert(0) += r.values.len();
        }
    }
    let want = [
        ("ece", 3),
        ("table1", 43),
        ("table2", 33),
        ("table3-px", 34),
        ("table3-py", 28),
        ("table5", 13),
        ("table6", 18),
    ];
    assert_eq!(count, want.into_iter().collect(), "numbers per table");
}

#[test]
fn each_target_plans_the_presets_of_its_rows() {
    let p = paper();
    let main = p.presets_of("cifar10", false);
    assert_eq!(
        main,
        [
            "cifar10/sadajem",
            "cifar10/sadajem-k10",
            "cifar10/sadajem-k20",
            "cifar10/jem",
            "cifar10/jempp-m5",
            "cifar10/jempp",
            "cifar10/jempp-m20",
            "cifar10/softmax",
            "cifar10/softmax-sam",
        ]
    );
    let all = p.presets_of("cifar10", true);
    assert_eq!(all.len(), 9 + 14);
    assert!(all[9..].iter().all(|x| x.starts_with("cifar10/ablation/")));
    assert_eq!(p.presets_of("cifar100", true).len(), 9);
    assert!(p.presets_of("quick", true).is_empty());
}

#[test]
fn a_row_naming_an_unlisted_preset_is_an_error() {
    let mut p = paper();
    p.table[0].row[0].preset = Some("cifar10/nonexistent".into());
    let e = format!("{:#}", p.check().unwrap_err());
    assert!(
        e.contains("cifar10/nonexistent") && e.contains("[[preset]]"),
        "{e}"
    );
    let mut p = paper();
    p.table[0].metrics.push("accuracy:top5".into());
    assert!(p.check().is_err());
}
