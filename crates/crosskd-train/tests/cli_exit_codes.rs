//! The `crosskd` binary's exit codes and messages for bad input: usage errors exit 2, every other
//! error exits 1 with one line naming the file or key at fault.

use std::process::Command;

fn crosskd(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crosskd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2() {
    let (code, err) = crosskd(&["train", "--no-such-option"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_broken_image_is_named_as_the_input_not_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let (code, err) = crosskd(&[
        "train",
        "--task",
        "depth",
        "--steps",
        "2",
        "--threads",
        "1",
        "--no-progress",
        "--set",
        "data.image-size=16",
        "--set",
        "data.train-samples=8",
        "--set",
        "data.val-samples=4",
        "--set",
        "data.test-samples=4",
        "--set",
        "train.batch-size=4",
        "--out",
        run_s,
    ]);
    assert_eq!(code, 0, "{err}");
    let broken = dir.path().join("broken.png");
    // A PNG signature and nothing else: what a truncated download looks like.
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\n").unwrap();
    let out = dir.path().join("out.png");
    let (code, err) = crosskd(&[
        "predict",
        "--run",
        run_s,
        "--input",
        broken.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("input ") && err.contains("broken.png") && !err.contains("run folder"),
        "{err}"
    );

    // CUDA asked of a CPU-only build (or of a machine without a GPU): one clear error.
    let (code, err) = crosskd(&["eval", "--run", run_s, "--device", "cuda:0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("device") && err.contains("cuda"), "{err}");
}
