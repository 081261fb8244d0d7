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
