//! Memory stays flat in the number of steps: 2,000 small steps with a teacher and an inverted
//! projector, resident memory read after a warm-up and at the end. Before the optimiser detached
//! its moments from the autograd graph, every step's graph stayed alive and this grew by
//! megabytes per step. Its own test binary (one test), so no other test's allocations interfere.

use std::sync::{Arc, Mutex};

use crosskd_train::config::Config;
use crosskd_train::memory::resident_mb;
use crosskd_train::train::{run_training_with, RunOptions, StepObserver};

/// After the first evaluation (step 500), so its buffers are part of the baseline.
const WARM_UP_STEPS: u64 = 600;
const STEPS: u64 = 2_000;
const ALLOWED_GROWTH_MB: f64 = 10.0;

#[test]
fn resident_memory_is_flat_over_2000_steps() {
    assert!(
        resident_mb().is_some(),
        "/proc/self/status is not readable here, so memory cannot be measured: this test did not run"
    );
    let text = format!(
        "task = \"depth\"\nseed = 5\nthreads = 1\n\
         [student.architecture]\narch = \"unet\"\nbase-width = 4\ndepth = 2\nout-channels = 4\n\
         [teacher]\nkind = \"random\"\n\
         [data]\nimage-size = 16\ntrain-samples = 64\nval-samples = 8\ntest-samples = 8\naugment = true\n\
         [train]\nsteps = {STEPS}\nbatch-size = 4\nlog-interval = 100\neval-interval = 500\n"
    );
    let config = Config::from_toml_str(&text, &[], None).unwrap();
    let samples: Arc<Mutex<Vec<(u64, f64)>>> = Arc::default();
    let record = samples.clone();
    let options = RunOptions {
        on_step: Some(StepObserver(Arc::new(move |step| {
            if step == WARM_UP_STEPS || step.is_multiple_of(250) {
                if let Some(mb) = resident_mb() {
                    record.lock().unwrap().push((step, mb));
                }
            }
        }))),
        ..RunOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let summary = run_training_with(&config, dir.path(), &options).unwrap();
    assert_eq!(summary.steps, STEPS);
    let samples = samples.lock().unwrap().clone();
    let warm = samples
        .iter()
        .find(|(s, _)| *s == WARM_UP_STEPS)
        .map(|(_, mb)| *mb)
        .unwrap();
    let (last_step, last) = *samples.last().unwrap();
    assert_eq!(last_step, STEPS);
    let growth = last - warm;
    eprintln!("resident memory: {samples:?}; growth after warm-up {growth:.1} MB");
    assert!(
        growth <= ALLOWED_GROWTH_MB,
        "resident memory grew by {growth:.1} MB between step {WARM_UP_STEPS} and step {last_step} (allowed {ALLOWED_GROWTH_MB} MB): {samples:?}"
    );
}
