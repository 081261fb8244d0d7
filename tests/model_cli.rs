//! End-to-end tests of `jem model ...`.

use std::process::Command;

fn jem(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jem"))
        .args(args)
        .output()
        .expect("run jem")
}

#[test]
fn summary_of_wrn_28_10() {
    let out = jem(&["model", "summary", "--arch", "wrn-28-10", "--classes", "10"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().last(), Some("36489290"));
    assert!(text.contains("f.layer3.0.shortcut.0") && text.contains("class_output"));
    let c100 = jem(&[
        "model",
        "summary",
        "--arch",
        "wrn-28-10",
        "--classes",
        "100",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&c100.stdout).lines().last(),
        Some("36546980")
    );
    let gray = jem(&[
        "model",
        "summary",
        "--arch",
        "wrn-10-2",
        "--in-channels",
        "1",
    ]);
    assert!(gray.status.success());
}

#[test]
fn bad_architectures_are_errors() {
    for arch in ["resnet-18", "wrn-12-2", "wrn-28"] {
        let out = jem(&["model", "summary", "--arch", arch]);
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("--arch") || e.contains("6n + 4"), "{arch}: {e}");
    }
}

/// The conventions every command shares: `--json` prints one JSON object, completions for
/// the usual shells, typo suggestions, `$JEM_DATA_DIR` / `$JEM_CACHE_DIR` shown in help.
#[test]
fn json_output_completions_suggestions_and_env_bindings() {
    let out = jem(&["model", "summary", "--arch", "wrn-10-2", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["params"], 304394);
    assert!(v["layers"].as_array().unwrap().len() > 10);

    let out = jem(&["data", "list", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sets = v["datasets"].as_array().unwrap();
    assert!(
        sets.iter()
            .any(|s| s["name"] == "fashion-mnist-quick" && s["state"] == "embedded")
    );

    for shell in ["bash", "zsh", "fish"] {
        let out = jem(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("jem") && script.contains("checkpoint"),
            "{shell}"
        );
    }

    let out = jem(&["data", "lst"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("similar subcommand exists: 'list'"));

    let out = jem(&["eval", "ood", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "[env: JEM_DATA_DIR",
        "[env: JEM_CACHE_DIR",
        "--json",
        "-q, --quiet",
    ] {
        assert!(help.contains(needle), "`{needle}` not in eval ood --help");
    }
}

/// A checkpoint saved by the reference's own code under torch (`torch.save({"model_state_dict":
/// ..., "replay_buffer": ...})`, `crates/jem-models/tests/golden/make_golden.py`) imports
/// into a checkpoint that `jem eval` reads, and `jem eval` reads the `.pt` itself.
#[test]
fn reference_pt_checkpoints_import_and_evaluate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let pt = format!("{root}/crates/jem-models/tests/golden/reference_ckpt.pt");
    // the golden network is a 3-channel WRN-10-1: the quick preset with RGB-expanded images
    let preset = format!("{root}/configs/fashion-mnist-quick/sadajem.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ref.safetensors");
    let out_s = out.to_str().unwrap();
    let rgb = "data.gray_to_rgb=true";
    let o = jem(&[
        "model",
        "import",
        "--checkpoint",
        &pt,
        "--config",
        &preset,
        "--set",
        rgb,
        "--out",
        out_s,
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("48 model tensors and replay buffer [4, 3, 32, 32]"),
        "{text}"
    );
    assert!(
        text.contains("ignored: energy_output.bias, energy_output.weight"),
        "{text}"
    );

    let o = jem(&["eval", "accuracy", "--checkpoint", out_s, "--json", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n"], 2000);

    let eval_dir = dir.path().join("eval");
    let o = jem(&[
        "eval",
        "accuracy",
        "--checkpoint",
        &pt,
        "--config",
        &preset,
        "--set",
        rgb,
        "--out",
        eval_dir.to_str().unwrap(),
        "--json",
        "-q",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let w: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(w["accuracy"], v["accuracy"], "the same model either way");

    // a preset of another network, or none, is a clear error
    let o = jem(&[
        "model",
        "import",
        "--checkpoint",
        &pt,
        "--config",
        &preset,
        "--set",
        rgb,
        "--set",
        "model.width=2",
        "--out",
        out_s,
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("has shape") && e.contains("WRN-10-2"),
        "{e}"
    );
    let o = jem(&["eval", "accuracy", "--checkpoint", &pt]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("give --config PRESET"),
        "{e}"
    );
}
