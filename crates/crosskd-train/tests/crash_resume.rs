//! Real crashes: the `crosskd` binary is killed (SIGKILL) before its first checkpoint, mid-run and
//! inside a checkpoint write, or stopped by SIGINT/SIGTERM, then resumed with `--resume`; every
//! resumed run must end with exactly the files of an uninterrupted run (metrics bit for bit, the
//! machine-dependent `samples_per_s` aside) and the signals must give exit codes 130 and 143.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crosskd_train::checkpoint::PAUSE_HOOK_ENV;

const CONFIG: &str = r#"task = "depth"
seed = 3
threads = 1

[student.architecture]
arch = "unet"
base-width = 4
depth = 2
out-channels = 4

[teacher]
kind = "random"

[data]
image-size = 16
train-samples = 32
val-samples = 8
test-samples = 8
augment = true

[schedule]
kind = "constant"

[train]
steps = 120
batch-size = 4
log-interval = 2
eval-interval = 40
checkpoint-interval = 10
"#;

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("run.toml");
    std::fs::write(&path, CONFIG).unwrap();
    path
}

fn crosskd(config: &Path, out: &Path, resume: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crosskd"));
    cmd.arg("train")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--no-progress")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if resume {
        cmd.arg("--resume");
    }
    cmd
}

/// Runs to completion and returns the exit code and stderr.
fn run(mut cmd: Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `metrics.jsonl` without the throughput, plus the test metrics of `summary.json`.
fn final_state(dir: &Path) -> (Vec<String>, serde_json::Value) {
    let records = common::comparable_metrics(dir);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    (records, summary["test"].clone())
}

fn metrics_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Waits until `ready` holds, or panics after a minute (the child is killed first).
fn wait_for(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {what}");
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn reference(root: &Path, config: &Path) -> (Vec<String>, serde_json::Value) {
    let dir = root.join("reference");
    let (code, err) = run(crosskd(config, &dir, false));
    assert_eq!(code, 0, "{err}");
    final_state(&dir)
}

fn resume_and_compare(
    config: &Path,
    dir: &Path,
    expected: &(Vec<String>, serde_json::Value),
) -> String {
    let (code, err) = run(crosskd(config, dir, true));
    assert_eq!(code, 0, "resume failed: {err}");
    let got = final_state(dir);
    assert_eq!(got.1, expected.1, "test metrics differ after the resume");
    assert_eq!(got.0, expected.0, "metrics.jsonl differs after the resume");
    err
}

#[test]
fn sigkill_anywhere_then_resume_equals_an_uninterrupted_run() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path());
    let expected = reference(root.path(), &config);

    // Before the first checkpoint: the first log line exists, no checkpoint yet.
    let early = root.path().join("early");
    let mut child = crosskd(&config, &early, false).spawn().unwrap();
    wait_for(&mut child, "the first log line", || {
        metrics_lines(&early) >= 1
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let had_checkpoint = early.join("checkpoints/last.safetensors").exists();
    let err = resume_and_compare(&config, &early, &expected);
    if !had_checkpoint {
        assert!(err.contains("starting from step 0"), "{err}");
    }

    // Mid-run, between checkpoints.
    let mid = root.path().join("mid");
    let mut child = crosskd(&config, &mid, false).spawn().unwrap();
    wait_for(&mut child, "25 log lines", || metrics_lines(&mid) >= 25);
    child.kill().unwrap();
    child.wait().unwrap();
    resume_and_compare(&config, &mid, &expected);

    // Inside a checkpoint write: the hook pauses between the complete temporary file and its
    // rename, and announces it on stderr.
    for nth_write in [1, 3] {
        let torn = root.path().join(format!("in-write-{nth_write}"));
        let mut cmd = crosskd(&config, &torn, false);
        // Long enough for this test to read the announcement and kill, short enough that the
        // writes before the chosen one just run slowly.
        cmd.env(PAUSE_HOOK_ENV, "400");
        let mut child = cmd.spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = 0;
        let mut line = String::new();
        while seen < nth_write {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "no pause announced"
            );
            if line.contains("paused in checkpoint write") {
                seen += 1;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(torn.join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            leftovers.iter().any(|n| n.contains(".tmp-")),
            "the kill should leave the temporary file of the write: {leftovers:?}"
        );
        resume_and_compare(&config, &torn, &expected);
    }
}

#[test]
fn sigint_and_sigterm_checkpoint_exit_130_and_143_and_resume_identically() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path());
    let expected = reference(root.path(), &config);
    for (name, code) in [("INT", 130), ("TERM", 143)] {
        let dir = root.path().join(name);
        let mut child = crosskd(&config, &dir, false).spawn().unwrap();
        wait_for(&mut child, "10 log lines", || metrics_lines(&dir) >= 10);
        signal(&child, name);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "SIG{name}");
        assert!(dir.join("checkpoints/last.safetensors").exists());
        resume_and_compare(&config, &dir, &expected);
    }
}
