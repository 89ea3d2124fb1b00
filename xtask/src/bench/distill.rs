//! `cargo xtask bench distill`: what distillation adds to a training step of the reproduction's
//! dense student, with the teacher recomputed every step and with the teacher-feature cache.
//!
//! Three short runs through the real trainer (`run_training_with`, so the step is the one users
//! get: batch, student forward, teacher or cache, losses, backward, AdamW, projector retraction):
//! no teacher; a random U-Net w16 teacher with the inverted FitNets projector and
//! `train.cache-teacher = "off"`; the same with `"on"`. A step's time is the interval between two
//! step callbacks; evaluation runs only after the last step, and the median over all steps of all
//! rounds (rounds interleave the variants, so drifting machine load hits all three alike) drops
//! the first epoch's scene rendering. On a shared machine the median still moves with the load of
//! other processes, so the fastest step of each variant (the least disturbed one) is reported
//! too, and the overheads are given for both. Opening the run (and filling the cache) happens
//! before the first step and is reported separately.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use crosskd_train::config::{CacheTeacher, Config, TeacherConfig};
use crosskd_train::train::{run_training_with, RunOptions, StepObserver};
use crosskd_train::Task;

use super::report::{machine_description, write_section};
use crate::reproduce::grid::dense_teacher_arch;

/// Steps per run; training samples are a few batches so that most steps read cached renders.
const STEPS: u64 = 40;
const TRAIN_SAMPLES: usize = 64;
const BATCH: usize = 16;
const SIZE: usize = 32;
const ROUNDS: usize = 3;

/// One configuration timed.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    NoKd,
    KdRecomputed,
    KdCached,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::NoKd, Variant::KdRecomputed, Variant::KdCached];

    fn label(self) -> &'static str {
        match self {
            Variant::NoKd => "no KD (student only)",
            Variant::KdRecomputed => "KD, teacher every step (cache-teacher = off)",
            Variant::KdCached => "KD, teacher-feature cache (cache-teacher = on)",
        }
    }

    fn config(self, threads: usize) -> Config {
        // The reproduction's dense cell: default student (U-Net w8 d3), 32 px, batch 16.
        let mut c = Config::for_task(Task::Depth);
        c.seed = 0;
        c.threads = threads;
        c.data.image_size = SIZE;
        c.data.train_samples = TRAIN_SAMPLES;
        c.data.val_samples = BATCH;
        c.data.test_samples = BATCH;
        c.train.batch_size = BATCH;
        c.train.steps = Some(STEPS);
        c.train.epochs = None;
        c.train.log_interval = STEPS;
        c.train.eval_interval = STEPS;
        c.train.cache_teacher = match self {
            Variant::KdCached => CacheTeacher::On,
            _ => CacheTeacher::Off,
        };
        if self != Variant::NoKd {
            c.teacher = TeacherConfig::Random {
                architecture: Some(dense_teacher_arch()),
                seed: Some(1000),
                tap: String::new(),
                input_normalization: Default::default(),
            };
        }
        c
    }
}

/// Step intervals (ms) and time to the first step (ms) of one run.
fn time_run(config: &Config, name: &str) -> anyhow::Result<(Vec<f64>, f64)> {
    let dir = std::env::temp_dir().join(format!(
        "crosskd-bench-distill-{}-{name}",
        std::process::id()
    ));
    // A fresh folder: a cache left from another round would skip the fill being timed.
    let _ = std::fs::remove_dir_all(&dir);
    let marks: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = marks.clone();
    let options = RunOptions {
        on_step: Some(StepObserver(Arc::new(move |_| {
            if let Ok(mut m) = sink.lock() {
                m.push(Instant::now());
            }
        }))),
        ..RunOptions::default()
    };
    let start = Instant::now();
    let result = run_training_with(config, &dir, &options).context("benchmark run");
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    let marks = marks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let first = marks
        .first()
        .map(|m| m.duration_since(start).as_secs_f64() * 1e3)
        .unwrap_or(f64::NAN);
    // The last interval includes the final evaluation: left out.
    let steps = marks
        .windows(2)
        .take(marks.len().saturating_sub(2))
        .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1e3)
        .collect();
    Ok((steps, first))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs the benchmark and writes the `distill-step` section of `docs/benchmarks.md`.
pub fn run(threads: usize) -> anyhow::Result<()> {
    let mut steps: Vec<Vec<f64>> = vec![Vec::new(); Variant::ALL.len()];
    let mut firsts: Vec<Vec<f64>> = vec![Vec::new(); Variant::ALL.len()];
    for round in 0..ROUNDS {
        for (i, v) in Variant::ALL.iter().enumerate() {
            let (s, first) = time_run(&v.config(threads), &format!("{round}-{i}"))?;
            println!(
                "round {}/{ROUNDS} {}: median {:.1} ms/step",
                round + 1,
                v.label(),
                median(s.clone())
            );
            steps[i].extend(s);
            firsts[i].push(first);
        }
    }
    let ms: Vec<f64> = steps.iter().map(|s| median(s.clone())).collect();
    let fastest: Vec<f64> = steps
        .iter()
        .map(|s| s.iter().copied().fold(f64::INFINITY, f64::min))
        .collect();
    let mut md = format!(
        "Distillation overhead on the reproduction's dense student: U-Net w8 d3 at {SIZE}×{SIZE}, \
         batch {BATCH}, depth task, random U-Net w16 d3 teacher at its bottleneck through the \
         inverted FitNets projector; {ROUNDS} interleaved rounds of {STEPS}-step runs of the real \
         trainer, median and fastest step (batch, forward, losses, backward, AdamW), `cargo xtask`'s \
         optimised dev profile, command `cargo xtask bench distill --threads {threads}` \
         (`xtask/src/bench/distill.rs`).\n\nMachine: {}.\n\n\
         | variant | median ms/step | overhead | fastest ms/step | overhead | open to first step, ms (median) |\n|---|---|---|---|---|---|\n",
        machine_description(threads)
    );
    for (i, v) in Variant::ALL.iter().enumerate() {
        let overhead = |t: &[f64]| {
            if i == 0 {
                "—".to_string()
            } else {
                format!("{:+.1}%", (t[i] / t[0] - 1.0) * 100.0)
            }
        };
        md.push_str(&format!(
            "| {} | {:.1} | {} | {:.1} | {} | {:.0} |\n",
            v.label(),
            ms[i],
            overhead(&ms),
            fastest[i],
            overhead(&fastest),
            median(firsts[i].clone())
        ));
    }
    md.push_str(
        "\nEvery run's open renders its training and validation scenes once (the trainer's \
         preload), so open to first step is that rendering plus the first step for every \
         variant. With the cache, the teacher also runs once per training sample (and flip) \
         when the run opens, counted there too; every step then reads its features. \
         Medians on a shared machine move with other processes' load; the fastest step is the \
         least disturbed one. Target: overhead with the cache ≤ 15% of the no-KD step.\n",
    );
    print!("{md}");
    write_section("distill-step", &md)
}
