//! The training loop: batches in a seeded order, losses, finite checks, optimiser steps, logging,
//! evaluation, checkpoints, resume, interruption and plots.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Tensor};
use crosskd_data::Dataset;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{checkpoint_path, write_atomic, Checkpoint, RngState, TrainingPosition};
use crate::config::Config;
use crate::error::{Result, TrainError};
use crate::metrics_log::{read_records, EvalRecord, MetricsLog, Record, TrainRecord};
use crate::optim::{trainable_vars, Optimiser};
use crate::progress::Progress;
use crate::schedule::learning_rate;
use crate::session::Session;
use crate::task::{collate, component, prediction_rows, Batch};

/// Seed offset of the per-epoch data order.
const ORDER_SEED_OFFSET: u64 = 0x4f52_4445;
/// Seed offset of the trainer's own generator (augmentation).
const TRAIN_RNG_OFFSET: u64 = 0x5452_4e47;
/// At most this many singular values are logged per spectrum.
const MAX_LOGGED_SINGULAR_VALUES: usize = 64;

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
    pub wall_time_s: f64,
    /// The primary metric's name and whether higher is better.
    pub primary_metric: String,
    /// Whether a larger primary metric is better (accuracy, mIoU, SSIM) or worse (AbsRel).
    #[serde(default)]
    pub primary_higher_is_better: bool,
    /// Best validation value of the primary metric and its step.
    pub best: Option<(f64, u64)>,
    /// Validation metrics of the last evaluation.
    pub last_val: BTreeMap<String, f64>,
    /// Test metrics of the best checkpoint (empty unless the run finished).
    pub test: BTreeMap<String, f64>,
    /// Singular values of the projector at the end (empty without a teacher).
    pub projector_singular_values: Vec<f64>,
    /// Effective rank `exp(H(σ/Σσ))` of the projector at the end (0 without a teacher).
    pub projector_effective_rank: f64,
    /// Singular values of the student's distilled feature on a validation batch at the end.
    pub student_singular_values: Vec<f64>,
    /// Files written into the run folder (plots, checkpoints).
    pub files: Vec<PathBuf>,
}

/// Running sums of one logging interval (kept in checkpoints so a resumed run logs the same).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct LogAccumulator {
    steps: u64,
    task: f64,
    distill: f64,
    transfer: Option<f64>,
    spectral: Option<f64>,
    regulariser: f64,
    total: f64,
}

impl LogAccumulator {
    fn add_opt(slot: &mut Option<f64>, v: Option<f64>) {
        if let Some(v) = v {
            *slot = Some(slot.unwrap_or(0.0) + v);
        }
    }
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

fn check_finite(step: u64, term: &str, value: f64) -> Result<()> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(TrainError::NonFinite {
            step,
            what: "loss",
            term: term.to_string(),
            value: format!("{value}"),
        })
    }
}

/// The order of training samples in `epoch`: a permutation seeded by `(seed, epoch)`, so any
/// position `(epoch, batch)` can be recomputed on resume.
fn epoch_order(seed: u64, epoch: u64, len: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ORDER_SEED_OFFSET);
    rng.set_stream(epoch);
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rng);
    order
}

fn load_batch(session: &Session, ds: &dyn Dataset, indices: &[usize]) -> Result<Batch> {
    let samples = indices
        .iter()
        .map(|&i| {
            ds.get(i)
                .map(|s| (i, s))
                .map_err(|e| component(&format!("sample {i}"), e))
        })
        .collect::<Result<Vec<_>>>()?;
    collate(session.config.task, &samples, &session.device)
}

/// Metrics of `split` (`val` or `test`) with the current weights, plus the task loss as `loss`.
pub fn evaluate_session(session: &Session, split: &str) -> Result<BTreeMap<String, f64>> {
    let ds: &dyn Dataset = match split {
        "val" => session.data.val.as_ref(),
        "test" => session.data.test.as_ref(),
        "train" => session.data.train.as_ref(),
        other => {
            return Err(TrainError::config(
                "split",
                format!("expected \"val\", \"test\" or \"train\", found \"{other}\""),
            ))
        }
    };
    let mut metrics = session.student.head.new_metrics();
    let bs = session.config.train.batch_size.max(1);
    let (mut loss_sum, mut n) = (0.0, 0usize);
    let indices: Vec<usize> = (0..ds.len()).collect();
    for chunk in indices.chunks(bs) {
        let batch = load_batch(session, ds, chunk)?;
        let pass = session.student.forward(&batch.images, false)?;
        let loss = crate::task::task_loss(&session.config, &pass.prediction, &batch)?;
        loss_sum += scalar(&loss)? * chunk.len() as f64;
        n += chunk.len();
        metrics
            .update(&pass.prediction, &batch.target, batch.valid.as_ref())
            .map_err(|e| component("metrics", e))?;
    }
    let mut out = metrics.compute();
    // Per-class IoUs make the log and the plots unreadable; mIoU summarises them.
    out.retain(|k, _| !k.starts_with("iou/"));
    if n > 0 {
        out.insert("loss".into(), loss_sum / n as f64);
    }
    Ok(out)
}

fn spectra(session: &Session, batch: &Batch) -> Result<(Vec<f64>, f64, Vec<f64>)> {
    let (mut proj, mut eff) = (Vec::new(), 0.0);
    if let Some(m) = &session.method {
        if let Some(p) = m.projectors().first() {
            let s = crosskd_losses::projector_spectrum(p)
                .map_err(|e| component("projector spectrum", e))?;
            eff = s.effective_rank;
            proj = s.singular_values;
        }
    }
    let pass = session.student.forward(&batch.images, false)?;
    let mut stud = crosskd_losses::feature_spectrum(&pass.feature)
        .map_err(|e| component("feature spectrum", e))?
        .singular_values;
    proj.truncate(MAX_LOGGED_SINGULAR_VALUES);
    stud.truncate(MAX_LOGGED_SINGULAR_VALUES);
    Ok((proj, eff, stud))
}

fn first_val_batch(session: &Session) -> Result<Batch> {
    let n = session
        .data
        .val
        .len()
        .min(session.config.train.batch_size.max(2));
    let idx: Vec<usize> = (0..n).collect();
    load_batch(session, session.data.val.as_ref(), &idx)
}

/// Writes the plots and the prediction grid of a run folder.
pub fn write_plots(session: &Session, run_dir: &Path) -> Result<Vec<PathBuf>> {
    let records = read_records(&run_dir.join("metrics.jsonl"))?;
    let mut files = crate::plots::plot_records(run_dir, &records)?;
    if session.config.task.is_dense() {
        let batch = first_val_batch(session)?;
        let pass = session.student.forward(&batch.images, false)?;
        let rows = prediction_rows(session.config.task, &batch, &pass.prediction, 4)?;
        let path = run_dir.join("predictions.png");
        let zoom = (128 / session.config.data.image_size.max(1)).max(1) as u32;
        crate::plots::save_image_grid(&path, &rows, zoom)?;
        files.push(path);
    }
    Ok(files)
}

struct Trainer<'a> {
    session: Session,
    run_dir: &'a Path,
    optimiser: Optimiser,
    rng: ChaCha8Rng,
    position: TrainingPosition,
    acc: LogAccumulator,
    log: MetricsLog,
    hash: String,
}

impl Trainer<'_> {
    fn save_checkpoint(&self, which: &[&str]) -> Result<Vec<PathBuf>> {
        let mut tensors: HashMap<String, Tensor> =
            self.session.model_tensors().into_iter().collect();
        tensors.extend(self.optimiser.state_tensors()?);
        let mut extra = self.session.model_metadata();
        extra.insert(
            "log_accumulator".into(),
            serde_json::to_string(&self.acc).unwrap_or_default(),
        );
        let ck = Checkpoint {
            tensors,
            position: TrainingPosition {
                rng: RngState::capture(&self.rng),
                ..self.position.clone()
            },
            config_hash: self.hash.clone(),
            extra,
        };
        let mut written = Vec::new();
        let first = checkpoint_path(self.run_dir, which[0]);
        ck.save(&first)?;
        written.push(first.clone());
        for w in &which[1..] {
            let bytes = std::fs::read(&first).map_err(|e| TrainError::io(&first, e))?;
            let p = checkpoint_path(self.run_dir, w);
            write_atomic(&p, &bytes)?;
            written.push(p);
        }
        Ok(written)
    }
}

/// Trains with full control over resuming, early stopping and interruption.
///
/// The run folder receives `config.toml` (the resolved config), `metrics.jsonl`,
/// `checkpoints/{last,best}.safetensors`, `loss_curves.png`, `metric_curves.png`, `spectra.png`,
/// `predictions.png` (dense tasks) and `summary.json`. The same config and seed give
/// bit-identical `metrics.jsonl` (apart from `samples_per_s`) on the same machine and thread
/// count, also across a stop and `resume`.
pub fn run_training_with(
    config: &Config,
    run_dir: &Path,
    options: &RunOptions,
) -> Result<RunSummary> {
    let started = Instant::now();
    crate::threads::apply(config.threads);
    config.validate()?;
    std::fs::create_dir_all(run_dir.join("checkpoints")).map_err(|e| TrainError::io(run_dir, e))?;
    let session = Session::build(config)?;
    let hash = session.config.hash();
    let cfg = session.config.clone();
    let train_len = session.data.train.len();
    if train_len == 0 {
        return Err(TrainError::config(
            "data.train-samples",
            "expected at least one training sample, found none",
        ));
    }
    let total = cfg.total_steps(train_len);
    let per_epoch = cfg.steps_per_epoch(train_len);
    let bs = cfg.train.batch_size.min(train_len);

    let vars = trainable_vars(&session.var_groups());
    let mut optimiser = Optimiser::new(&cfg.optimiser, vars);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ TRAIN_RNG_OFFSET);
    let mut position = TrainingPosition {
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        rng: RngState::capture(&rng),
        best: None,
    };
    let mut acc = LogAccumulator::default();
    let metrics_path = run_dir.join("metrics.jsonl");
    let log = if options.resume {
        let path = checkpoint_path(run_dir, "last");
        let ck = Checkpoint::load(&path, &session.device)?;
        if ck.config_hash != hash {
            return Err(TrainError::Checkpoint {
                path,
                message: format!(
                    "written by a run with config hash {}, but this config hashes to {hash}: resume with the run's own config.toml",
                    ck.config_hash
                ),
            });
        }
        session.load_weights(&ck, &path)?;
        optimiser.load_state(&ck.tensors)?;
        rng = ck.position.rng.restore();
        position = ck.position.clone();
        if let Some(a) = ck.extra.get("log_accumulator") {
            acc = serde_json::from_str(a).unwrap_or_default();
        }
        MetricsLog::resume(&metrics_path, position.step)?
    } else {
        MetricsLog::create(&metrics_path)?
    };
    write_atomic(&run_dir.join("config.toml"), cfg.to_toml().as_bytes())?;

    let primary = session.student.head.new_metrics().primary();
    let mut trainer = Trainer {
        session,
        run_dir,
        optimiser,
        rng,
        position,
        acc,
        log,
        hash: hash.clone(),
    };
    let progress = Progress::new(options.progress, total, trainer.position.step);
    let mut last_val = BTreeMap::new();
    let mut interval_start = Instant::now();
    let mut interval_samples = 0usize;
    let mut order = epoch_order(cfg.seed, trainer.position.epoch, train_len);
    let mut stop = StopReason::Finished;

    while trainer.position.step < total {
        let p = &trainer.position;
        let start = p.batch_in_epoch as usize * bs;
        let indices: Vec<usize> = order[start..(start + bs).min(train_len)].to_vec();
        let mut batch = load_batch(
            &trainer.session,
            trainer.session.data.train.as_ref(),
            &indices,
        )?;
        if cfg.data.augment && trainer.rng.gen_bool(0.5) {
            batch = batch.flipped()?;
        }
        let step_no = trainer.position.step + 1;
        let (losses, _) = trainer.session.losses(&batch)?;
        let task_v = scalar(&losses.task)?;
        check_finite(step_no, "task", task_v)?;
        let (distill_v, diagnostics) = match &losses.distill {
            Some((t, d)) => (scalar(t)?, d.clone()),
            None => (0.0, Vec::new()),
        };
        check_finite(step_no, "distill", distill_v)?;
        let reg_v = match &losses.regulariser {
            Some((t, _)) => scalar(t)?,
            None => 0.0,
        };
        check_finite(step_no, "regulariser", reg_v)?;
        let total_v = scalar(&losses.total)?;
        check_finite(step_no, "total", total_v)?;
        let grads = losses.total.backward()?;
        if cfg.train.check_gradients {
            if let Some((name, v)) = trainer.optimiser.first_non_finite_gradient(&grads)? {
                return Err(TrainError::NonFinite {
                    step: step_no,
                    what: "gradient",
                    term: name,
                    value: format!("{v}"),
                });
            }
        }
        let lr = learning_rate(
            &cfg.schedule,
            cfg.optimiser.lr,
            trainer.position.step,
            total,
        );
        trainer.optimiser.step(&grads, lr)?;
        if let Some(m) = &trainer.session.method {
            m.after_step()
                .map_err(|e| component("projector retraction", e))?;
        }

        // Advance the position.
        trainer.position.step = step_no;
        trainer.position.batch_in_epoch += 1;
        if trainer.position.batch_in_epoch >= per_epoch {
            trainer.position.batch_in_epoch = 0;
            trainer.position.epoch += 1;
            order = epoch_order(cfg.seed, trainer.position.epoch, train_len);
        }
        let epoch_of_step = if trainer.position.batch_in_epoch == 0 {
            trainer.position.epoch.saturating_sub(1)
        } else {
            trainer.position.epoch
        };

        let a = &mut trainer.acc;
        a.steps += 1;
        a.task += task_v;
        a.distill += distill_v;
        let find = |suffix: &str| {
            diagnostics
                .iter()
                .find(|(n, _)| n.ends_with(suffix))
                .map(|(_, v)| *v)
        };
        LogAccumulator::add_opt(&mut a.transfer, find(".transfer"));
        LogAccumulator::add_opt(&mut a.spectral, find(".spectral"));
        a.regulariser += reg_v;
        a.total += total_v;
        interval_samples += indices.len();
        progress.step(trainer.position.epoch, total_v);

        if step_no.is_multiple_of(cfg.train.log_interval) || step_no == total {
            let a = std::mem::take(&mut trainer.acc);
            let k = a.steps.max(1) as f64;
            let secs = interval_start.elapsed().as_secs_f64().max(1e-9);
            trainer.log.write(&Record::Train(TrainRecord {
                step: step_no,
                epoch: epoch_of_step,
                task_loss: a.task / k,
                distill_total: a.distill / k,
                transfer: a.transfer.map(|v| v / k),
                spectral: a.spectral.map(|v| v / k),
                regulariser: a.regulariser / k,
                total_loss: a.total / k,
                lr,
                samples_per_s: interval_samples as f64 / secs,
            }))?;
            interval_start = Instant::now();
            interval_samples = 0;
        }

        let eval_due = if cfg.train.eval_interval > 0 {
            step_no.is_multiple_of(cfg.train.eval_interval)
        } else {
            trainer.position.batch_in_epoch == 0
        } || step_no == total;
        if eval_due {
            let metrics = evaluate_session(&trainer.session, "val")?;
            let batch = first_val_batch(&trainer.session)?;
            let (proj, _, stud) = spectra(&trainer.session, &batch)?;
            trainer.log.write(&Record::Eval(EvalRecord {
                step: step_no,
                epoch: epoch_of_step,
                split: "val".into(),
                metrics: metrics.clone(),
                projector_singular_values: proj,
                student_singular_values: stud,
            }))?;
            let value = metrics.get(primary.name).copied();
            let improved = match (value, trainer.position.best) {
                (Some(v), Some((b, _))) => primary.improves(v, b),
                (Some(_), None) => true,
                _ => false,
            };
            if improved {
                trainer.position.best = value.map(|v| (v, step_no));
            }
            progress.message(&format!(
                "val {} {:.4}",
                primary.name,
                value.unwrap_or(f64::NAN)
            ));
            last_val = metrics;
            let which: &[&str] = if improved {
                &["last", "best"]
            } else {
                &["last"]
            };
            trainer.save_checkpoint(which)?;
        } else if cfg.train.checkpoint_interval > 0
            && step_no.is_multiple_of(cfg.train.checkpoint_interval)
        {
            trainer.save_checkpoint(&["last"])?;
        }

        if options.stop_after_step.is_some_and(|s| step_no >= s) && step_no < total {
            trainer.save_checkpoint(&["last"])?;
            stop = StopReason::StoppedEarly;
            break;
        }
        if options
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
        {
            trainer.save_checkpoint(&["last"])?;
            stop = StopReason::Interrupted;
            break;
        }
    }
    progress.finish();

    let mut files = Vec::new();
    let mut test = BTreeMap::new();
    let session = &trainer.session;
    if stop == StopReason::Finished {
        let best_path = checkpoint_path(run_dir, "best");
        if best_path.exists() {
            let ck = Checkpoint::load(&best_path, &session.device)?;
            session.load_weights(&ck, &best_path)?;
        }
        test = evaluate_session(session, "test")?;
        trainer.log.write(&Record::Eval(EvalRecord {
            step: trainer.position.step,
            epoch: trainer.position.epoch,
            split: "test".into(),
            metrics: test.clone(),
            projector_singular_values: Vec::new(),
            student_singular_values: Vec::new(),
        }))?;
        // Back to the last weights for the spectra and the pictures of the end of training.
        let last_path = checkpoint_path(run_dir, "last");
        let ck = Checkpoint::load(&last_path, &session.device)?;
        session.load_weights(&ck, &last_path)?;
    }
    files.extend(write_plots(session, run_dir)?);
    let batch = first_val_batch(session)?;
    let (proj, eff, stud) = spectra(session, &batch)?;
    let summary = RunSummary {
        run_dir: run_dir.to_path_buf(),
        config_hash: hash,
        stop,
        steps: trainer.position.step,
        wall_time_s: started.elapsed().as_secs_f64(),
        primary_metric: primary.name.to_string(),
        primary_higher_is_better: primary.higher_is_better,
        best: trainer.position.best,
        last_val,
        test,
        projector_singular_values: proj,
        projector_effective_rank: eff,
        student_singular_values: stud,
        files,
    };
    let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
    write_atomic(&run_dir.join("summary.json"), json.as_bytes())?;
    Ok(summary)
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

/// Rebuilds a run from its folder with the weights of its best checkpoint (else the last).
pub fn load_run(run_dir: &Path) -> Result<Session> {
    let config = load_run_config(run_dir)?;
    crate::threads::apply(config.threads);
    let session = Session::build(&config)?;
    let mut path = checkpoint_path(run_dir, "best");
    if !path.exists() {
        path = checkpoint_path(run_dir, "last");
    }
    let ck = Checkpoint::load(&path, &session.device)?;
    session.load_weights(&ck, &path)?;
    Ok(session)
}

/// Evaluates a finished run's best checkpoint on `split` (`val` or `test`) and returns every
/// metric (and the task loss as `loss`).
pub fn evaluate(run_dir: &Path, split: &str) -> Result<BTreeMap<String, f64>> {
    let session = load_run(run_dir)?;
    evaluate_session(&session, split)
}
