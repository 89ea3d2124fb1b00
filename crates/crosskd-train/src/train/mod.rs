//! Training runs: the public entry points, what a run reports, and how a finished run is loaded
//! again. The loop itself is a sequence of named phases in [`trainer`] (data in [`batches`],
//! evaluation in [`eval`], the choice of checkpoint to resume from in [`resume`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{checkpoint_path, Checkpoint};
use crate::config::Config;
use crate::error::{Result, TrainError};
use crate::session::Session;

mod batches;
mod eval;
mod resume;
mod trainer;

pub use eval::{evaluate_session, write_plots};

/// The training samples `indices` as one un-augmented batch on the session's device, built by the
/// run's data loader exactly as the trainer's data phase builds one (the benchmarks time it).
pub fn load_training_batch(session: &Session, indices: &[usize]) -> Result<crate::task::Batch> {
    batches::load_batch(session, "training", &session.data.train, indices)
}

/// Brings the training and validation samples into memory ahead of the first epoch where their
/// data sets keep samples once loaded (rendered scenes), as the trainer does when a run opens;
/// returns how many it loaded (the benchmarks call it to time the same data phase).
pub fn preload_training_data(session: &Session) -> Result<usize> {
    batches::preload(session)
}

/// How a run is driven beyond its config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from `checkpoints/last.safetensors` of the run folder.
    pub resume: bool,
    /// Stop (with a checkpoint) once this many steps are done, as if interrupted; the run can be
    /// resumed later. Used by tests and for time-boxed runs.
    pub stop_after_step: Option<u64>,
    /// When set to true (by a Ctrl-C handler), the loop writes a checkpoint and stops.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Called after every step with the number of steps done (tests watch memory with it).
    pub on_step: Option<StepObserver>,
}

/// A function called after every training step with the number of steps done.
#[derive(Clone)]
pub struct StepObserver(pub Arc<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for StepObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepObserver")
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// All configured steps were done.
    Finished,
    /// `stop_after_step` was reached.
    StoppedEarly,
    /// The interrupt flag was raised (Ctrl-C).
    Interrupted,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Hash of the resolved config.
    pub config_hash: String,
    /// Why the run ended.
    pub stop: StopReason,
    /// Steps done.
    pub steps: u64,
    /// Seconds spent in this invocation (not counting earlier, resumed-from invocations).
    #[serde(with = "crate::json_float::plain")]
    pub wall_time_s: f64,
    /// The primary metric's name and whether higher is better.
    pub primary_metric: String,
    /// Whether a larger primary metric is better (accuracy, mIoU, SSIM) or worse (AbsRel).
    #[serde(default)]
    pub primary_higher_is_better: bool,
    /// Best validation value of the primary metric and its step.
    #[serde(with = "crate::json_float::best")]
    pub best: Option<(f64, u64)>,
    /// Validation metrics of the last evaluation.
    #[serde(with = "crate::json_float::map")]
    pub last_val: BTreeMap<String, f64>,
    /// Test metrics of the best checkpoint (empty unless the run finished).
    #[serde(with = "crate::json_float::map")]
    pub test: BTreeMap<String, f64>,
    /// Singular values of the projector at the end (empty without a teacher).
    #[serde(with = "crate::json_float::list")]
    pub projector_singular_values: Vec<f64>,
    /// Effective rank `exp(H(σ/Σσ))` of the projector at the end (0 without a teacher).
    #[serde(with = "crate::json_float::plain")]
    pub projector_effective_rank: f64,
    /// Singular values of the student's distilled feature on a validation batch at the end.
    #[serde(with = "crate::json_float::list")]
    pub student_singular_values: Vec<f64>,
    /// Peak resident memory of the process so far, in MB (Linux; absent elsewhere).
    #[serde(default, with = "crate::json_float::optional")]
    pub peak_resident_mb: Option<f64>,
    /// Files written into the run folder (plots, checkpoints).
    pub files: Vec<PathBuf>,
}

/// Trains the run a config describes into `run_dir` (created if needed); with `resume`,
/// continues from the folder's last checkpoint. See [`run_training_with`].
pub fn run_training(config: &Config, run_dir: &Path, resume: bool) -> Result<RunSummary> {
    run_training_with(
        config,
        run_dir,
        &RunOptions {
            resume,
            ..RunOptions::default()
        },
    )
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Trains with full control over resuming, early stopping and interruption.
///
/// The run folder receives `config.toml` (the resolved config), `metrics.jsonl`,
/// `checkpoints/{last,previous,best}.safetensors`, `loss_curves.png`, `metric_curves.png`,
/// `spectra.png`, `predictions.png` (dense tasks) and `summary.json`. The same config and seed
/// give bit-identical `metrics.jsonl` (apart from `samples_per_s`) on the same machine and thread
/// count, also across a stop, a crash and `resume`.
pub fn run_training_with(
    config: &Config,
    run_dir: &Path,
    options: &RunOptions,
) -> Result<RunSummary> {
    crate::threads::apply(config.threads);
    crate::threads::on_compute_pool(|| train_to_the_end(config, run_dir, options))
}

/// The loop of [`run_training_with`]: open, steps with their evaluations, finish.
fn train_to_the_end(config: &Config, run_dir: &Path, options: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let mut trainer = trainer::Trainer::open(config, run_dir, options)?;
    let mut stop = StopReason::Finished;
    while trainer.has_steps_left() {
        let batch = trainer.next_batch()?;
        trainer.step(&batch)?;
        trainer.evaluate_if_due()?;
        if let Some(reason) = trainer.stop_requested(options)? {
            stop = reason;
            break;
        }
    }
    trainer.finish(stop, started)
}

/// Reads a run folder's resolved config.
pub fn load_run_config(run_dir: &Path) -> Result<Config> {
    let path = run_dir.join("config.toml");
    if !path.exists() {
        return Err(TrainError::RunFolder {
            path,
            message: "no config.toml: not a crosskd run folder".into(),
        });
    }
    Config::from_file(&path, &[])
}

/// Rebuilds a run's student from its folder with the weights of its best checkpoint (else the
/// last); the teacher, projector and regulariser are left out, they play no part once trained.
pub fn load_run(run_dir: &Path) -> Result<Session> {
    load_run_on(run_dir, None)
}

/// [`load_run`] on another device than the run's own (`cpu`, `cuda`, `cuda:N`); the device is an
/// execution setting, so the run's checkpoints load anywhere.
///
/// `run_dir` may also be a student file written by `crosskd export`.
pub fn load_run_on(run_dir: &Path, device: Option<&str>) -> Result<Session> {
    if run_dir.is_file() {
        return load_export(run_dir, device);
    }
    let mut config = load_run_config(run_dir)?;
    if let Some(d) = device {
        config.device = d.to_string();
        config.validate()?;
    }
    crate::threads::apply(config.threads);
    // Only the student is rebuilt: its teacher's files need not be at hand (a hub teacher on
    // another machine, a checkpoint teacher's run folder moved away), and a large teacher is not
    // loaded only to sit unused.
    let session = Session::build(&crate::commands::student_only(&config))?;
    let mut path = checkpoint_path(run_dir, "best");
    if !path.exists() {
        path = checkpoint_path(run_dir, "last");
    }
    let ck = Checkpoint::load(&path, &session.device)?;
    session.load_weights(&ck, &path)?;
    Ok(session)
}

/// Rebuilds the student of an exported file on `device` (default: the run's own).
fn load_export(path: &Path, device: Option<&str>) -> Result<Session> {
    let (mut config, tensors) = crate::commands::read_export(path, &candle_core::Device::Cpu)?;
    if let Some(d) = device {
        config.device = d.to_string();
        config.validate()?;
    }
    crate::threads::apply(config.threads);
    let session = Session::build(&config)?;
    let tensors = tensors
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_device(&session.device)?)))
        .collect::<Result<std::collections::HashMap<_, _>>>()?;
    session.load_tensors(&tensors, path)?;
    Ok(session)
}

/// Evaluates a finished run's best checkpoint on `split` (`val` or `test`) and returns every
/// metric (and the task loss as `loss`).
pub fn evaluate(run_dir: &Path, split: &str) -> Result<BTreeMap<String, f64>> {
    let session = load_run(run_dir)?;
    evaluate_session(&session, split)
}
