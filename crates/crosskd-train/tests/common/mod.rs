//! Helpers shared by the integration tests (each test file is its own crate and uses a part).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Runs the `crosskd` binary with `set` added to and `unset` removed from its environment
/// (`RUST_BACKTRACE` always removed, so errors read as users see them): exit code, stdout,
/// stderr.
pub fn crosskd_env(args: &[&str], set: &[(&str, &OsStr)], unset: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crosskd"));
    command.args(args).env_remove("RUST_BACKTRACE");
    for (key, value) in set {
        command.env(key, value);
    }
    for key in unset {
        command.env_remove(key);
    }
    let out = command.output().expect("running crosskd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A run's `metrics.jsonl` lines without the machine-dependent throughput: equal for two runs
/// exactly when they logged the same numbers.
pub fn comparable_metrics(dir: &Path) -> Vec<String> {
    crosskd_train::metrics_log::read_records(&dir.join("metrics.jsonl"))
        .expect("reading metrics.jsonl")
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(&r).expect("a record as JSON");
            v.as_object_mut()
                .expect("a record is an object")
                .remove("samples_per_s");
            v.to_string()
        })
        .collect()
}

/// Writes a tiny Fashion-MNIST look-alike in the IDX format of the real files (`train` with
/// `train_n` images, `t10k` with `test_n`): 28×28 images whose class (0–3) is their bright
/// quadrant, so a small network learns it in a few steps.
pub fn write_fake_fashion_mnist(dir: &Path, train_n: usize, test_n: usize) {
    let write = |name: &str, n: usize| {
        let mut images = vec![0u8, 0, 8, 3];
        let mut labels = vec![0u8, 0, 8, 1];
        for v in [n as u32, 28, 28] {
            images.extend_from_slice(&v.to_be_bytes());
        }
        labels.extend_from_slice(&(n as u32).to_be_bytes());
        for i in 0..n {
            let class = (i * 7 + 3) % 4;
            labels.push(class as u8);
            for y in 0..28 {
                for x in 0..28 {
                    let quadrant = (y / 14) * 2 + x / 14;
                    let noise = ((i * 31 + y * 7 + x * 13) % 40) as u8;
                    images.push(if quadrant == class {
                        200 + noise / 4
                    } else {
                        noise
                    });
                }
            }
        }
        std::fs::create_dir_all(dir).expect("creating the IDX folder");
        for (kind, bytes) in [("images-idx3", &images), ("labels-idx1", &labels)] {
            std::fs::File::create(dir.join(format!("{name}-{kind}-ubyte")))
                .and_then(|mut f| f.write_all(bytes))
                .expect("writing an IDX fixture");
        }
    };
    write("train", train_n);
    write("t10k", test_n);
}
