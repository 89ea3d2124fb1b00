//! `cargo xtask reproduce` end to end, as a user runs it: the binary in its own process (its
//! thread settings are process-wide, so it must not share a process with other runs), on the
//! hidden `smoke` profile's toy budget: pilot, grid, paired report and regime curves.

use std::process::Command;

#[test]
fn a_smoke_reproduction_writes_a_paired_report_beside_its_runs() {
    let out = tempfile::tempdir().expect("temp folder");
    let status = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "reproduce",
            "--profile",
            "smoke",
            "--tasks",
            "depth",
            "--threads",
            "1",
        ])
        .arg("--out")
        .arg(out.path())
        .args([
            "--pretrained-weights",
            "/nonexistent",
            "--fashion-mnist",
            "/nonexistent",
        ])
        .env_remove("RAYON_NUM_THREADS")
        .status()
        .expect("running xtask");
    assert!(status.success(), "xtask reproduce failed: {status}");
    let report = std::fs::read_to_string(out.path().join("results.md")).expect("results.md");
    for expected in [
        "**Not evidence.**",
        "## Regime of the baseline",
        "paired differences in test abs_rel",
        "random teacher, inverted − no KD",
        "cross-task teacher: inverted − standard",
        "Power: the widest 95% half-width",
        "teacher for depth: test miou",
    ] {
        assert!(
            report.contains(expected),
            "missing `{expected}` in:\n{report}"
        );
    }
    assert!(out.path().join("img/results-baseline-curves.png").exists());
    // Every trained cell records the code it ran at.
    let runs: Vec<_> = std::fs::read_dir(out.path().join("runs"))
        .expect("runs folder")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(!runs.is_empty());
    for run in runs {
        assert!(run.join("provenance.json").exists(), "{}", run.display());
    }
}
