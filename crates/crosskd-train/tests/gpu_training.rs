//! GPU against CPU for a whole training run: 20 steps of the same config and seed on `cuda` and
//! on `cpu`, the losses of the first 10 steps within 1e-3 relative.
//!
//! Opt-in (`cargo test --features cuda -p crosskd-train --test gpu_training -- --ignored gpu`):
//! it needs a `cuda` build and a GPU, and fails saying which is missing when asked to run
//! without them; it never passes without having trained on a GPU.

use crosskd_train::config::Config;
use crosskd_train::metrics_log::{read_records, Record};
use crosskd_train::train::{run_training_with, RunOptions};

fn losses(device: &str) -> Vec<(u64, f64)> {
    let text = format!(
        "task = \"depth\"\nseed = 4\nthreads = 1\ndevice = \"{device}\"\n\
         [student.architecture]\narch = \"unet\"\nbase-width = 8\ndepth = 3\nout-channels = 8\n\
         [teacher]\nkind = \"random\"\n\
         [data]\nimage-size = 32\ntrain-samples = 64\nval-samples = 16\ntest-samples = 16\n\
         [train]\nsteps = 20\nbatch-size = 8\nlog-interval = 1\neval-interval = 10\n"
    );
    let config = Config::from_toml_str(&text, &[], None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    run_training_with(&config, dir.path(), &RunOptions::default())
        .unwrap_or_else(|e| panic!("NOT RUN on {device}: {e}"));
    read_records(&dir.path().join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Train(t) => Some((t.step, t.total_loss)),
            _ => None,
        })
        .collect()
}

#[test]
#[ignore = "needs a `--features cuda` build and a GPU"]
fn gpu_training_matches_cpu_over_the_first_10_steps() {
    let gpu = losses("cuda");
    let cpu = losses("cpu");
    assert_eq!(gpu.len(), 20);
    for ((step, g), (_, c)) in gpu.iter().zip(&cpu).take(10) {
        let rel = (g - c).abs() / c.abs().max(1e-12);
        assert!(
            rel <= 1e-3,
            "step {step}: cuda {g} vs cpu {c} (relative {rel:.2e})"
        );
    }
    eprintln!("first 10 losses agree: cpu {cpu:?}\ncuda {gpu:?}");
}
