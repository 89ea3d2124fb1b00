//! One row of `cargo xtask bench students`, measured inside its own process so that its peak
//! resident memory is its own: the crosskd step timed phase by phase, or the trainer's own loop.
//!
//! The parent ([`super::students`]) runs `cargo xtask bench students --row NAME --part PART` and
//! reads the JSON line this module prints last.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use crosskd_losses::methods::DistillInputs;
use crosskd_train::optim::{trainable_vars, Optimiser};
use crosskd_train::schedule::learning_rate;
use crosskd_train::session::Session;
use crosskd_train::task::{task_loss, Batch};
use crosskd_train::train::{run_training_with, RunOptions};
use crosskd_train::{Config, Task};
use serde::{Deserialize, Serialize};

use crate::reproduce::grid::{self, Inputs, Knob, Profile, TeacherKind, Variant};

/// Warm-up steps before the timed ones (first-touch allocations, thread-pool start).
pub const WARMUP_STEPS: usize = 3;
/// Timed steps of the bench loop; every reported time is their median.
pub const TIMED_STEPS: usize = 20;
/// Steps of the trainer run (one epoch) and how often it logs `samples_per_s`.
const TRAINER_STEPS: usize = 24;
const TRAINER_LOG_INTERVAL: u64 = 4;

/// One row: a student of the reproduction at one input size, with or without distillation.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The name `--row` takes.
    pub name: &'static str,
    /// The task (segmentation for the U-Net rows, classification for the small ResNet).
    pub task: Task,
    /// Input side.
    pub size: usize,
    /// Batch size.
    pub batch: usize,
    /// With the random teacher and the inverted projector (FitNets, α = 1).
    pub teacher: bool,
}

/// The rows, in table order.
pub const ROWS: [Row; 6] = [
    Row::new("unet-32", Task::Segmentation, 32, 16, false),
    Row::new("unet-32-kd", Task::Segmentation, 32, 16, true),
    Row::new("unet-64", Task::Segmentation, 64, 16, false),
    Row::new("unet-64-kd", Task::Segmentation, 64, 16, true),
    Row::new("resnet-28", Task::Classification, 28, 64, false),
    Row::new("resnet-28-kd", Task::Classification, 28, 64, true),
];

impl Row {
    const fn new(name: &'static str, task: Task, size: usize, batch: usize, teacher: bool) -> Self {
        Row {
            name,
            task,
            size,
            batch,
            teacher,
        }
    }

    /// The row called `name`.
    pub fn by_name(name: &str) -> anyhow::Result<Row> {
        ROWS.iter()
            .find(|r| r.name == name)
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = ROWS.iter().map(|r| r.name).collect();
                anyhow::anyhow!("unknown row `{name}`: expected one of {}", names.join(", "))
            })
    }

    /// How the table names the row.
    pub fn label(&self) -> String {
        let net = match self.task {
            Task::Classification => "small ResNet 8/16/32".to_string(),
            _ => "U-Net w8 d3".to_string(),
        };
        let kd = if self.teacher {
            "random teacher + inverted projector"
        } else {
            "no KD"
        };
        format!(
            "{net}, {}×{}, batch {}, {kd}",
            self.size, self.size, self.batch
        )
    }

    /// The reproduction's config of this row (quick profile, seed 1, `α = 1`) with its size,
    /// `train_samples` training samples and `epochs` epochs.
    fn config(&self, threads: usize, train_samples: usize, epochs: u64) -> anyhow::Result<Config> {
        let mut budget = Profile::Quick.budget();
        budget.image_size = self.size;
        let inputs = Inputs {
            threads,
            pretrained_weights: None,
            fashion_root: Some(fashion_root()?.0),
        };
        let variant = if self.teacher {
            Variant::with_teacher(
                TeacherKind::Random,
                crosskd_train::config::Direction::Inverted,
            )
        } else {
            Variant::NO_KD
        };
        let knob = if self.teacher {
            Knob::Alpha(1.0)
        } else {
            Knob::WeightDecay(grid::WEIGHT_DECAY)
        };
        let mut config = grid::cell_config(self.task, &variant, knob, 1, &budget, &inputs, None)?;
        config.data.train_samples = train_samples;
        config.data.val_samples = self.batch;
        config.data.test_samples = self.batch;
        config.train.epochs = Some(epochs);
        config.train.log_interval = TRAINER_LOG_INTERVAL;
        Ok(config)
    }
}

/// The Fashion-MNIST folder the classification rows read, and whether it holds synthetic files:
/// the installed data set when present, else IDX files of random images and labels of the same
/// shapes written once to the temporary folder (the speed of a step does not depend on pixels).
pub fn fashion_root() -> anyhow::Result<(PathBuf, bool)> {
    use crosskd_data::sources::fashion_mnist::FashionMnist;
    let installed = PathBuf::from(FashionMnist::DEFAULT_DIR);
    if installed.exists() {
        return Ok((installed, false));
    }
    let dir = std::env::temp_dir().join("crosskd-bench-fashion-mnist");
    write_synthetic_idx(&dir).with_context(|| format!("writing {}", dir.display()))?;
    Ok((dir, true))
}

/// Writes `{train,t10k}-{images-idx3,labels-idx1}-ubyte` with seeded random content.
fn write_synthetic_idx(dir: &Path) -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    std::fs::create_dir_all(dir)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(28);
    for (prefix, count) in [("train", 4096u32), ("t10k", 1024u32)] {
        let images = dir.join(format!("{prefix}-images-idx3-ubyte"));
        let labels = dir.join(format!("{prefix}-labels-idx1-ubyte"));
        if images.exists() && labels.exists() {
            continue;
        }
        let mut img = Vec::with_capacity(16 + count as usize * 784);
        for v in [0x0803u32, count, 28, 28] {
            img.extend_from_slice(&v.to_be_bytes());
        }
        img.extend((0..count as usize * 784).map(|_| rng.gen::<u8>()));
        let mut lab = Vec::with_capacity(8 + count as usize);
        for v in [0x0801u32, count] {
            lab.extend_from_slice(&v.to_be_bytes());
        }
        lab.extend((0..count).map(|_| rng.gen_range(0..10u8)));
        // Written under a temporary name and renamed, so that parallel rows never read half a file.
        for (path, bytes) in [(images, img), (labels, lab)] {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(())
}

/// Median times of the step's phases, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phases {
    /// Loading the batch: rendering or decoding the samples and collating them.
    pub data: f64,
    /// Student, head, task loss, projector and distillation loss (the loss values read back).
    pub forward: f64,
    /// The frozen teacher's forward pass.
    pub teacher: f64,
    /// `backward()` of the total loss.
    pub backward: f64,
    /// The gradient check, the optimiser update and the projector's post-step retraction.
    pub optimiser: f64,
}

/// What one side of one row measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    /// Median step time.
    pub step_ms: f64,
    /// Median time of each phase.
    pub phases_ms: Phases,
    /// Loading the samples that stay in memory (rendered scenes) before the first step, as the
    /// trainer does when a run opens, ms (crosskd only: the twin's tensors are made untimed).
    #[serde(default)]
    pub preload_ms: f64,
    /// Batch size over the median step time.
    pub samples_per_s: f64,
    /// Trainable parameters (student, head and projector).
    pub parameters: usize,
    /// Peak resident memory of the process, MB.
    pub peak_rss_mb: f64,
    /// Total loss of the last step.
    pub final_loss: f64,
}

/// What the trainer's own loop logged on the row's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerMeasured {
    /// Median of the logged `samples_per_s` over the run's logging intervals.
    pub samples_per_s: f64,
    /// Logging intervals the median is over.
    pub intervals: usize,
    /// Peak resident memory of the run (its `summary.json`), MB.
    pub peak_rss_mb: f64,
}

/// Runs `part` (`crosskd` or `trainer`) of row `name` and prints its JSON line.
pub fn run_part(name: &str, part: &str, threads: usize) -> anyhow::Result<()> {
    let row = Row::by_name(name)?;
    let line = match part {
        "crosskd" => {
            // On a compute thread, as `run_training_with` runs the trainer's loop.
            crosskd_train::threads::apply(threads);
            let measured = crosskd_train::threads::on_compute_pool(|| {
                bench_steps(&row, threads, WARMUP_STEPS, TIMED_STEPS)
            })?;
            serde_json::to_string(&measured)?
        }
        "trainer" => serde_json::to_string(&trainer_loop(&row, threads)?)?,
        other => anyhow::bail!("unknown part `{other}`: expected crosskd or trainer"),
    };
    println!("{line}");
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

fn scalar(t: &candle_core::Tensor) -> anyhow::Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

/// Loads the training samples `indices` as the trainer's data phase does.
fn load(session: &Session, indices: &[usize]) -> anyhow::Result<Batch> {
    Ok(crosskd_train::train::load_training_batch(session, indices)?)
}

/// The step of `Trainer::step` with a clock between its phases: the same calls as
/// `Session::losses` (split so that the teacher is timed alone), the finite checks, backward and
/// the optimiser. `warmup` untimed steps come first; the medians are over `timed` steps.
fn bench_steps(row: &Row, threads: usize, warmup: usize, timed: usize) -> anyhow::Result<Measured> {
    // Every step reads samples not seen before, as in the trainer's first epoch; the samples
    // that stay in memory once loaded are loaded before the first step, as the trainer does.
    let train_samples = (warmup + timed) * row.batch;
    let config = row.config(threads, train_samples, 1)?;
    crosskd_train::threads::apply(config.threads);
    let session = Session::build(&config)?;
    let preload_started = Instant::now();
    crosskd_train::train::preload_training_data(&session)?;
    let preload_ms = preload_started.elapsed().as_secs_f64() * 1e3;
    let vars = trainable_vars(&session.var_groups());
    let parameters = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let mut optimiser = Optimiser::new(&config.optimiser, vars);
    let total_steps = (warmup + timed) as u64;
    let mut phases: [Vec<f64>; 5] = Default::default();
    let mut steps = Vec::new();
    let mut final_loss = f64::NAN;
    for step in 0..warmup + timed {
        let start = (step * row.batch) % train_samples;
        let indices: Vec<usize> = (start..start + row.batch).collect();
        let t0 = Instant::now();
        let batch = load(&session, &indices)?;
        let t1 = Instant::now();
        let pass = session.student.forward(&batch.images, true)?;
        let mut total = task_loss(&session.config, &pass.prediction, &batch)?;
        let t2 = Instant::now();
        let z_t = match &session.teacher {
            // No cache keys: the teacher runs every step, as in the PyTorch twin.
            Some(t) => Some(t.target(&batch.images, None, pass.feature.rank())?),
            None => None,
        };
        let t3 = Instant::now();
        let mut values = vec![scalar(&total)?];
        if let (Some(z_t), Some(m)) = (&z_t, &session.method) {
            let logits = (row.task == Task::Classification).then_some(&pass.prediction);
            let inputs = DistillInputs {
                student_features: std::slice::from_ref(&pass.feature),
                teacher_features: std::slice::from_ref(z_t),
                student_logits: logits,
                teacher_logits: None,
            };
            let sum = m.forward(&inputs)?.total()?;
            values.push(scalar(&sum)?);
            total = (total + sum)?;
        }
        final_loss = scalar(&total)?;
        anyhow::ensure!(
            values.iter().all(|v| v.is_finite()) && final_loss.is_finite(),
            "row {}: non-finite loss at step {step}",
            row.name
        );
        let t4 = Instant::now();
        let grads = total.backward()?;
        let t5 = Instant::now();
        if config.train.check_gradients {
            if let Some((name, v)) = optimiser.first_non_finite_gradient(&grads)? {
                anyhow::bail!("row {}: gradient of {name} is {v}", row.name);
            }
        }
        let lr = learning_rate(
            &config.schedule,
            config.optimiser.lr,
            step as u64,
            total_steps,
        );
        optimiser.step(&grads, lr)?;
        if let Some(m) = &session.method {
            m.after_step()?;
        }
        let t6 = Instant::now();
        if step >= warmup {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            phases[0].push(ms(t0, t1));
            phases[1].push(ms(t1, t2) + ms(t3, t4));
            phases[2].push(ms(t2, t3));
            phases[3].push(ms(t4, t5));
            phases[4].push(ms(t5, t6));
            steps.push(ms(t0, t6));
        }
    }
    let [data, forward, teacher, backward, optimiser_ms] = phases.map(median);
    let step_ms = median(steps);
    Ok(Measured {
        step_ms,
        phases_ms: Phases {
            data,
            forward,
            teacher,
            backward,
            optimiser: optimiser_ms,
        },
        samples_per_s: row.batch as f64 * 1e3 / step_ms,
        preload_ms,
        parameters,
        peak_rss_mb: crosskd_train::memory::peak_resident_mb().unwrap_or(f64::NAN),
        final_loss,
    })
}

/// Trains the row's config for one epoch of [`TRAINER_STEPS`] steps with the trainer's own loop
/// (`run_training_with`: its data path, checks, logging and checkpoints) in a temporary folder
/// and returns the median of the `samples_per_s` it logged. Evaluation runs only after the last
/// logged interval, so no interval includes it.
fn trainer_loop(row: &Row, threads: usize) -> anyhow::Result<TrainerMeasured> {
    let mut config = row.config(threads, TRAINER_STEPS * row.batch, 1)?;
    // Like for like with the bench's step and the PyTorch twin, which run the teacher every
    // step; the cache's effect has its own section (`cargo xtask bench distill`).
    config.train.cache_teacher = crosskd_train::config::CacheTeacher::Off;
    let dir = std::env::temp_dir().join(format!(
        "crosskd-bench-students-{}-{}",
        row.name,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let summary = run_training_with(&config, &dir, &RunOptions::default())?;
    let log = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .with_context(|| format!("reading {}", dir.join("metrics.jsonl").display()))?;
    let rates: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("samples_per_s").and_then(|s| s.as_f64()))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        !rates.is_empty(),
        "row {}: the trainer logged no samples_per_s",
        row.name
    );
    Ok(TrainerMeasured {
        intervals: rates.len(),
        samples_per_s: median(rates),
        peak_rss_mb: summary.peak_resident_mb.unwrap_or(f64::NAN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_name_resolves_and_unknown_ones_are_refused() {
        for row in ROWS {
            assert_eq!(Row::by_name(row.name).unwrap().name, row.name);
        }
        let err = Row::by_name("unet-128").unwrap_err().to_string();
        assert!(err.contains("unet-32-kd"), "{err}");
    }

    /// The distillation rows of both students run the timed step to the end with finite losses
    /// and phases that add up to no more than the step.
    #[test]
    fn distillation_rows_time_a_finite_step() {
        for name in ["unet-32-kd", "resnet-28-kd"] {
            let row = Row::by_name(name).unwrap();
            let m = bench_steps(&row, 2, 1, 2).unwrap();
            let p = &m.phases_ms;
            let parts = p.data + p.forward + p.teacher + p.backward + p.optimiser;
            assert!(m.final_loss.is_finite(), "{name}: {m:?}");
            assert!(p.teacher > 0.0 && p.backward > 0.0, "{name}: {m:?}");
            assert!(parts <= m.step_ms * 1.01 + 1e-3, "{name}: {m:?}");
            assert!(m.parameters > 0 && m.peak_rss_mb > 0.0, "{name}: {m:?}");
        }
    }

    #[test]
    fn synthetic_fashion_files_load_as_fashion_mnist() {
        use crosskd_data::sources::fashion_mnist::{FashionMnist, FashionMnistOptions};
        use crosskd_data::{Dataset, Split};
        let dir = tempfile::tempdir().unwrap();
        write_synthetic_idx(dir.path()).unwrap();
        let ds =
            FashionMnist::load(dir.path(), Split::Test, FashionMnistOptions::default()).unwrap();
        assert_eq!(ds.len(), 1024);
    }
}
