//! The event files read by TensorBoard's own reader (PyPI `tensorboard`), not only by our code.
//!
//! Opt-in, because it needs Python with `tensorboard` installed:
//! `CROSSKD_PYTHON=/path/to/venv/bin/python cargo test -p crosskd-train --test tensorboard_reader -- --ignored`.
//! Run without that Python it fails saying so; it never passes without having read the files.

use std::process::Command;

use crosskd_train::config::Config;
use crosskd_train::train::{run_training_with, RunOptions};

const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0})
acc.Reload()
tags = acc.Tags()
out = {
    "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
    "histograms": {t: [[e.step, e.histogram_value.num] for e in acc.Histograms(t)] for t in tags["histograms"]},
}
print(json.dumps(out))
"#;

#[test]
#[ignore = "needs PyPI tensorboard: set CROSSKD_PYTHON to a python with `pip install tensorboard`"]
fn tensorboard_reads_every_scalar_and_histogram_we_write() {
    let python = std::env::var("CROSSKD_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import tensorboard"])
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "NOT RUN: `{python}` cannot import tensorboard (pip install tensorboard, then set CROSSKD_PYTHON)"
    );
    let text = "task = \"depth\"\nseed = 2\nthreads = 1\n\
        [student.architecture]\narch = \"unet\"\nbase-width = 4\ndepth = 2\nout-channels = 4\n\
        [teacher]\nkind = \"random\"\n\
        [data]\nimage-size = 16\ntrain-samples = 16\nval-samples = 4\ntest-samples = 4\n\
        [train]\nsteps = 8\nbatch-size = 4\nlog-interval = 2\neval-interval = 4\n";
    let config = Config::from_toml_str(text, &[], None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    run_training_with(&config, dir.path(), &RunOptions::default()).unwrap();
    let out = Command::new(&python)
        .args(["-c", READER, dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records =
        crosskd_train::metrics_log::read_records(&dir.path().join("metrics.jsonl")).unwrap();
    let train: Vec<(u64, f64)> = records
        .iter()
        .filter_map(|r| match r {
            crosskd_train::metrics_log::Record::Train(t) => Some((t.step, t.task_loss)),
            _ => None,
        })
        .collect();
    let seen = read["scalars"]["train/task_loss"].as_array().unwrap();
    assert_eq!(seen.len(), train.len(), "{read}");
    for (s, (step, loss)) in seen.iter().zip(&train) {
        assert_eq!(s[0].as_u64().unwrap(), *step);
        // Scalars are stored as f32.
        assert!(
            (s[1].as_f64().unwrap() - loss).abs() <= 1e-6 * loss.abs().max(1.0),
            "{s} vs {loss}"
        );
    }
    assert_eq!(
        read["scalars"]["val/abs_rel"].as_array().unwrap().len(),
        2,
        "{read}"
    );
    assert_eq!(
        read["scalars"]["test/abs_rel"].as_array().unwrap().len(),
        1,
        "{read}"
    );
    for tag in ["spectrum/projector", "spectrum/student"] {
        let h = read["histograms"][tag].as_array().unwrap();
        assert_eq!(h.len(), 2, "{tag}: {read}");
        assert!(h[0][1].as_f64().unwrap() > 0.0, "{tag}: {read}");
    }
}
