//! The training loop as named phases: open (fresh or resumed), next batch, step, advance, log,
//! evaluate, checkpoint, stop check and finish. [`super::run_training_with`] calls them in order;
//! a new concern is a new phase here, not a longer loop.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use candle_core::Tensor;
use crosskd_data::{DataLoader, EpochBatches};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{checkpoint_path, write_atomic, Checkpoint, RngState, TrainingPosition};
use crate::config::Config;
use crate::error::{Result, TrainError};
use crate::metrics_log::{EvalRecord, MetricsLog, Record, TrainRecord};
use crate::optim::{non_finite_sum, trainable_vars, Optimiser};
use crate::progress::Progress;
use crate::schedule::learning_rate;
use crate::session::Session;
use crate::task::{component, Batch};

use super::batches::{epoch_jobs, epoch_order, loader, on_device};
use super::eval::{evaluate_session, first_val_batch, spectra, write_plots};
use super::resume::{find_resume_point, ResumePoint, PREVIOUS};
use super::{scalar, RunOptions, RunSummary, StopReason};

/// Seed offset of the trainer's own generator (the whole-batch flips of `data.augment = true`).
const TRAIN_RNG_OFFSET: u64 = 0x5452_4e47;

/// Running sums of one logging interval (kept in checkpoints so a resumed run logs the same).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct LogAccumulator {
    steps: u64,
    task: f64,
    distill: f64,
    transfer: Option<f64>,
    spectral: Option<f64>,
    #[serde(default)]
    logit_kd: Option<f64>,
    regulariser: f64,
    total: f64,
}

impl LogAccumulator {
    fn add(&mut self, losses: &StepValues) {
        fn add_opt(slot: &mut Option<f64>, v: Option<f64>) {
            if let Some(v) = v {
                *slot = Some(slot.unwrap_or(0.0) + v);
            }
        }
        self.steps += 1;
        self.task += losses.task;
        self.distill += losses.distill;
        add_opt(&mut self.transfer, losses.transfer);
        add_opt(&mut self.spectral, losses.spectral);
        add_opt(&mut self.logit_kd, losses.logit_kd);
        self.regulariser += losses.regulariser;
        self.total += losses.total;
    }
}

/// The loss values of one applied step.
struct StepValues {
    task: f64,
    distill: f64,
    transfer: Option<f64>,
    spectral: Option<f64>,
    logit_kd: Option<f64>,
    regulariser: f64,
    total: f64,
    lr: f64,
    samples: usize,
}

/// The state of a run between steps.
pub(super) struct Trainer<'a> {
    pub(super) session: Session,
    run_dir: &'a Path,
    optimiser: Optimiser,
    rng: ChaCha8Rng,
    /// The generator as it was before the current step's batch drew from it.
    rng_before_batch: RngState,
    pub(super) position: TrainingPosition,
    acc: LogAccumulator,
    log: MetricsLog,
    hash: String,
    /// Builds training batches (workers, per-sample augmentation).
    train_loader: DataLoader,
    /// The batches left in the current epoch, being built ahead by the loader's workers.
    stream: EpochBatches,
    total_steps: u64,
    steps_per_epoch: u64,
    batch_size: usize,
    interval_start: Instant,
    interval_samples: usize,
    primary: crosskd_heads::PrimaryMetric,
    pub(super) last_val: BTreeMap<String, f64>,
    progress: Progress,
}

impl<'a> Trainer<'a> {
    /// Open phase: builds the session, creates the run folder, and starts fresh or from the
    /// checkpoint a resumed run continues (see [`find_resume_point`]).
    pub(super) fn open(config: &Config, run_dir: &'a Path, options: &RunOptions) -> Result<Self> {
        crate::threads::apply(config.threads);
        config.validate()?;
        std::fs::create_dir_all(run_dir.join("checkpoints"))
            .map_err(|e| TrainError::io(run_dir, e))?;
        let mut session = Session::build(config)?;
        preload_samples(&session)?;
        let load = |s: &Session, indices: &[usize]| {
            super::batches::load_batch(s, "training", &s.data.train, indices)
        };
        if let Some((dir, status)) = crate::teacher_cache::attach(&mut session, run_dir, load)? {
            let how = match status {
                crosskd_models::cache::CacheStatus::Built => "computed once into",
                crosskd_models::cache::CacheStatus::Hit => "read from",
            };
            tracing::info!("teacher features {how} the cache {}", dir.display());
        }
        let hash = session.config.hash();
        let cfg = &session.config;
        // The hash of the resolved config (teacher tap filled in): the one checkpoints carry and
        // `crosskd inspect` shows.
        tracing::info!(
            "training {} (config hash {hash}) into {}",
            cfg.task.name(),
            run_dir.display()
        );
        let train_len = session.data.train.len();
        if train_len == 0 {
            return Err(TrainError::config(
                "data.train-samples",
                "expected at least one training sample, found none",
            ));
        }
        let mut optimiser = Optimiser::new(&cfg.optimiser, trainable_vars(&session.var_groups()));
        let metrics_path = run_dir.join("metrics.jsonl");
        let restored = if options.resume {
            restore(&session, &mut optimiser, run_dir, &hash)?
        } else {
            None
        };
        let (rng, position, acc, log) = match restored {
            Some((rng, position, acc)) => {
                let log = MetricsLog::resume(&metrics_path, position.step)?;
                (rng, position, acc, log)
            }
            None => {
                let rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ TRAIN_RNG_OFFSET);
                let position = TrainingPosition {
                    step: 0,
                    epoch: 0,
                    batch_in_epoch: 0,
                    rng: RngState::capture(&rng),
                    best: None,
                };
                let log = MetricsLog::create(&metrics_path)?;
                (rng, position, LogAccumulator::default(), log)
            }
        };
        write_atomic(&run_dir.join("config.toml"), cfg.to_toml().as_bytes())?;
        if let Some(warning) = crate::threads::oversubscription(cfg.data.workers, cfg.threads) {
            tracing::warn!("{warning}");
        }
        let total_steps = cfg.total_steps(train_len);
        let steps_per_epoch = cfg.steps_per_epoch(train_len);
        let batch_size = cfg.train.batch_size.min(train_len);
        let train_loader = loader(&session, &session.data.train, true)?;
        let stream = epoch_stream(
            &train_loader,
            cfg.seed,
            position.epoch,
            position.batch_in_epoch,
            steps_per_epoch,
            batch_size,
        );
        Ok(Trainer {
            train_loader,
            stream,
            progress: Progress::new(options.progress, total_steps, position.step),
            total_steps,
            steps_per_epoch,
            batch_size,
            primary: session.student.head.new_metrics().primary(),
            session,
            run_dir,
            optimiser,
            rng_before_batch: RngState::capture(&rng),
            rng,
            position,
            acc,
            log,
            hash,
            interval_start: Instant::now(),
            interval_samples: 0,
            last_val: BTreeMap::new(),
        })
    }

    /// Whether steps remain.
    pub(super) fn has_steps_left(&self) -> bool {
        self.position.step < self.total_steps
    }

    /// Data phase: the next batch in the epoch's order from the loader (augmented per sample
    /// when `data.augment` is a table), mirrored whole when `data.augment = true` draws it.
    pub(super) fn next_batch(&mut self) -> Result<Batch> {
        self.rng_before_batch = RngState::capture(&self.rng);
        let next = self.stream.next().ok_or_else(|| {
            TrainError::Component(format!(
                "training data: no batch {} in epoch {}",
                self.position.batch_in_epoch, self.position.epoch
            ))
        })?;
        let mut batch = on_device(&self.session, "training", next)?;
        // Keys name the un-augmented sample; with per-sample augmentation the teacher must see
        // the batch itself (the cache is not attached then, see teacher_cache::blocker).
        if crate::teacher_cache::blocker(&self.session.config).is_none() {
            batch.teacher_keys = Some(
                batch
                    .indices
                    .iter()
                    .map(|&i| crate::teacher_cache::key(i, false))
                    .collect(),
            );
        }
        if self.session.config.data.augment.flips_whole_batches() && self.rng.gen_bool(0.5) {
            batch = batch.flipped()?;
        }
        Ok(batch)
    }

    /// Step phase: losses, finite checks, backward, gradient check, update and the method's
    /// post-step projection. A non-finite loss or gradient applies nothing: the run stops with
    /// the state of the previous step saved (see [`Trainer::stop_on_non_finite`]).
    pub(super) fn step(&mut self, batch: &Batch) -> Result<()> {
        let step_no = self.position.step + 1;
        let (losses, _) = self.session.losses(batch)?;
        let task = scalar(&losses.task)?;
        let (distill, diagnostics) = match &losses.distill {
            Some((t, d)) => (scalar(t)?, d.clone()),
            None => (0.0, Vec::new()),
        };
        let regulariser = match &losses.regulariser {
            Some((t, _)) => scalar(t)?,
            None => 0.0,
        };
        let total = scalar(&losses.total)?;
        for (term, value) in [
            ("task", task),
            ("distill", distill),
            ("regulariser", regulariser),
            ("total", total),
        ] {
            if !value.is_finite() {
                return self.stop_on_non_finite(step_no, "loss", term.to_string(), value);
            }
        }
        let grads = losses.total.backward()?;
        if self.session.config.train.check_gradients {
            if let Some((name, v)) = self.optimiser.first_non_finite_gradient(&grads)? {
                return self.stop_on_non_finite(step_no, "gradient", name, v);
            }
        }
        let cfg = &self.session.config;
        let lr = learning_rate(
            &cfg.schedule,
            cfg.optimiser.lr,
            self.position.step,
            self.total_steps,
        );
        self.optimiser.step(&grads, lr)?;
        if let Some(m) = &self.session.method {
            m.after_step()
                .map_err(|e| component("projector retraction", e))?;
        }
        let find = |suffix: &str| {
            diagnostics
                .iter()
                .find(|(n, _)| n.ends_with(suffix))
                .map(|(_, v)| *v)
        };
        let values = StepValues {
            task,
            distill,
            transfer: find(".transfer"),
            spectral: find(".spectral"),
            logit_kd: find(crate::session::LOGIT_KD_DIAGNOSTIC),
            regulariser,
            total,
            lr,
            samples: batch.images.dim(0)?,
        };
        self.advance();
        self.acc.add(&values);
        self.interval_samples += values.samples;
        self.progress.step(self.position.epoch, total);
        self.log_if_due(values.lr)
    }

    /// Saves the state from before this step when it is finite (else the files keep the last
    /// finite state they hold), then fails naming the step and the term.
    fn stop_on_non_finite(
        &mut self,
        step: u64,
        what: &'static str,
        term: String,
        value: f64,
    ) -> Result<()> {
        // The checkpoint is of the state before this step, so its generator must be too: the
        // batch already drew from it.
        self.rng = self.rng_before_batch.restore();
        match self.save_checkpoint(&["last"]) {
            Ok(_) | Err(TrainError::NonFinite { .. }) => {}
            Err(other) => return Err(other),
        }
        Err(TrainError::NonFinite {
            step,
            what,
            term,
            value: format!("{value}"),
        })
    }

    /// Advance phase: one step further in the epoch; a new epoch reshuffles.
    fn advance(&mut self) {
        let p = &mut self.position;
        p.step += 1;
        p.batch_in_epoch += 1;
        if p.batch_in_epoch >= self.steps_per_epoch {
            p.batch_in_epoch = 0;
            p.epoch += 1;
            self.stream = epoch_stream(
                &self.train_loader,
                self.session.config.seed,
                p.epoch,
                0,
                self.steps_per_epoch,
                self.batch_size,
            );
        }
    }

    /// The epoch the last completed step belonged to.
    fn epoch_of_last_step(&self) -> u64 {
        if self.position.batch_in_epoch == 0 {
            self.position.epoch.saturating_sub(1)
        } else {
            self.position.epoch
        }
    }

    /// Log phase: averages of the interval's losses, every `log-interval` steps and at the end.
    fn log_if_due(&mut self, lr: f64) -> Result<()> {
        let step = self.position.step;
        if !(step.is_multiple_of(self.session.config.train.log_interval)
            || step == self.total_steps)
        {
            return Ok(());
        }
        let a = std::mem::take(&mut self.acc);
        let k = a.steps.max(1) as f64;
        let secs = self.interval_start.elapsed().as_secs_f64().max(1e-9);
        let record = TrainRecord {
            step,
            epoch: self.epoch_of_last_step(),
            task_loss: a.task / k,
            distill_total: a.distill / k,
            transfer: a.transfer.map(|v| v / k),
            spectral: a.spectral.map(|v| v / k),
            logit_kd: a.logit_kd.map(|v| v / k),
            regulariser: a.regulariser / k,
            total_loss: a.total / k,
            lr,
            samples_per_s: self.interval_samples as f64 / secs,
        };
        self.progress.interval(&record);
        self.log.write(&Record::Train(record))?;
        self.interval_start = Instant::now();
        self.interval_samples = 0;
        Ok(())
    }

    /// Evaluate phase: validation metrics and spectra when due (every `eval-interval` steps, else
    /// at each epoch's end, and at the last step), the best value so far, and the checkpoints
    /// (`best` too when improved; `last` alone every `checkpoint-interval` steps).
    pub(super) fn evaluate_if_due(&mut self) -> Result<()> {
        let step = self.position.step;
        let t = &self.session.config.train;
        let eval_due = if t.eval_interval > 0 {
            step.is_multiple_of(t.eval_interval)
        } else {
            self.position.batch_in_epoch == 0
        } || step == self.total_steps;
        if !eval_due {
            if t.checkpoint_interval > 0 && step.is_multiple_of(t.checkpoint_interval) {
                self.save_checkpoint(&["last"])?;
            }
            return Ok(());
        }
        let metrics = evaluate_session(&self.session, "val")?;
        let batch = first_val_batch(&self.session)?;
        let s = spectra(&self.session, &batch)?;
        self.log.write(&Record::Eval(EvalRecord {
            step,
            epoch: self.epoch_of_last_step(),
            split: "val".into(),
            metrics: metrics.clone(),
            projector_singular_values: s.projector,
            student_singular_values: s.student,
        }))?;
        let value = metrics.get(self.primary.name).copied();
        let improved = match (value, self.position.best) {
            (Some(v), Some((b, _))) => self.primary.improves(v, b),
            (Some(v), None) => v.is_finite(),
            _ => false,
        };
        if improved {
            self.position.best = value.map(|v| (v, step));
        }
        self.progress.message(&format!(
            "val {} {:.4}",
            self.primary.name,
            value.unwrap_or(f64::NAN)
        ));
        self.last_val = metrics;
        let which: &[&str] = if improved {
            &["last", "best"]
        } else {
            &["last"]
        };
        self.save_checkpoint(which)?;
        self.log.write_csv()
    }

    /// Stop phase: whether the run should end here (early stop or a signal), with a checkpoint.
    pub(super) fn stop_requested(&mut self, options: &RunOptions) -> Result<Option<StopReason>> {
        let step = self.position.step;
        if let Some(observer) = &options.on_step {
            (observer.0)(step);
        }
        let reason = if options.stop_after_step.is_some_and(|s| step >= s) && self.has_steps_left()
        {
            Some(StopReason::StoppedEarly)
        } else if options
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
        {
            Some(StopReason::Interrupted)
        } else {
            None
        };
        if reason.is_some() {
            self.save_checkpoint(&["last"])?;
        }
        Ok(reason)
    }

    /// Checkpoint phase: writes the state under each name in `which` (`last`, `best`). The state
    /// must be finite: a non-finite parameter or optimiser moment is an error and nothing is
    /// written, so the files on disk always hold the last finite state. Before `last` is
    /// replaced, the old one is kept as `previous`, the fallback when `last` is later found
    /// damaged.
    fn save_checkpoint(&self, which: &[&str]) -> Result<Vec<PathBuf>> {
        let mut tensors: HashMap<String, Tensor> =
            self.session.model_tensors().into_iter().collect();
        tensors.extend(self.optimiser.state_tensors()?);
        if let Some((name, value)) = first_non_finite_tensor(&tensors)? {
            return Err(TrainError::NonFinite {
                step: self.position.step,
                what: "parameter",
                term: name,
                value: format!("{value}"),
            });
        }
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
        if which[0] == "last" && first.exists() {
            let previous = checkpoint_path(self.run_dir, PREVIOUS);
            std::fs::rename(&first, &previous).map_err(|e| TrainError::io(&previous, e))?;
        }
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

    /// Finish phase: test metrics of the best checkpoint (finished runs), plots and spectra of
    /// the last weights, and `summary.json`.
    pub(super) fn finish(mut self, stop: StopReason, started: Instant) -> Result<RunSummary> {
        self.progress.finish();
        let mut test = BTreeMap::new();
        let session = &self.session;
        if stop == StopReason::Finished {
            let best_path = checkpoint_path(self.run_dir, "best");
            if best_path.exists() {
                let ck = Checkpoint::load(&best_path, &session.device)?;
                session.load_weights(&ck, &best_path)?;
            }
            test = evaluate_session(session, "test")?;
            self.log.write(&Record::Eval(EvalRecord {
                step: self.position.step,
                epoch: self.position.epoch,
                split: "test".into(),
                metrics: test.clone(),
                projector_singular_values: Vec::new(),
                student_singular_values: Vec::new(),
            }))?;
            // Back to the last weights for the spectra and the pictures of the end of training.
            let last_path = checkpoint_path(self.run_dir, "last");
            let ck = Checkpoint::load(&last_path, &session.device)?;
            session.load_weights(&ck, &last_path)?;
        }
        self.log.write_csv()?;
        let files = write_plots(session, self.run_dir)?;
        let batch = first_val_batch(session)?;
        let s = spectra(session, &batch)?;
        let summary = RunSummary {
            run_dir: self.run_dir.to_path_buf(),
            config_hash: self.hash.clone(),
            stop,
            steps: self.position.step,
            wall_time_s: started.elapsed().as_secs_f64(),
            primary_metric: self.primary.name.to_string(),
            primary_higher_is_better: self.primary.higher_is_better,
            best: self.position.best,
            last_val: self.last_val.clone(),
            test,
            projector_singular_values: s.projector,
            projector_effective_rank: s.projector_effective_rank,
            student_singular_values: s.student,
            peak_resident_mb: crate::memory::peak_resident_mb(),
            files,
        };
        let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
        write_atomic(&self.run_dir.join("summary.json"), json.as_bytes())?;
        Ok(summary)
    }
}

/// Data phase of the open: samples that stay in memory once loaded are loaded now, all together.
fn preload_samples(session: &Session) -> Result<()> {
    let started = Instant::now();
    let loaded = super::batches::preload(session)?;
    if loaded > 0 {
        tracing::info!(
            "{loaded} samples loaded ahead of the first epoch in {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// The batches of `epoch` from batch `first` on, in the epoch's order; the loader's workers
/// start building them at once.
fn epoch_stream(
    loader: &DataLoader,
    seed: u64,
    epoch: u64,
    first: u64,
    steps_per_epoch: u64,
    batch_size: usize,
) -> EpochBatches {
    let order = epoch_order(seed, epoch, loader.dataset().len());
    loader.batches(
        epoch,
        epoch_jobs(&order, first, steps_per_epoch, batch_size),
    )
}

/// Loads weights and optimiser state from the resume point and returns the generator, position
/// and log accumulator to continue with; `None` when there is no checkpoint yet (the run starts
/// from step 0).
fn restore(
    session: &Session,
    optimiser: &mut Optimiser,
    run_dir: &Path,
    hash: &str,
) -> Result<Option<(ChaCha8Rng, TrainingPosition, LogAccumulator)>> {
    let (ck, path) = match find_resume_point(run_dir, &session.device, hash)? {
        ResumePoint::FromScratch => return Ok(None),
        ResumePoint::From { checkpoint, path } => (checkpoint, path),
    };
    session.load_weights(&ck, &path)?;
    optimiser.load_state(&ck.tensors)?;
    let acc = match ck.extra.get("log_accumulator") {
        Some(a) => serde_json::from_str(a).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            message: format!("metadata entry `log_accumulator`: {e}"),
        })?,
        None => LogAccumulator::default(),
    };
    Ok(Some((ck.position.rng.restore(), ck.position.clone(), acc)))
}

/// The first tensor (in name order) holding a NaN or an infinity, with its sum.
fn first_non_finite_tensor(tensors: &HashMap<String, Tensor>) -> Result<Option<(String, f64)>> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        if let Some(sum) = non_finite_sum(&tensors[name])? {
            return Ok(Some((name.clone(), sum)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::batches::load_batch;

    fn config(data_extra: &str) -> Config {
        let text = format!(
            "task = \"segmentation\"\nseed = 2\nthreads = 1\n[student.architecture]\narch = \"unet\"\n\
             base-width = 4\ndepth = 2\nout-channels = 4\n[data]\nimage-size = 16\ntrain-samples = 12\n\
             val-samples = 4\ntest-samples = 4\n{data_extra}\n[train]\nsteps = 8\nbatch-size = 4\n"
        );
        Config::from_toml_str(&text, &[], None).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.to_dtype(candle_core::DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// Indices, images and targets of a batch.
    type Fingerprint = (Vec<usize>, Vec<f32>, Vec<f32>);

    fn fingerprint(b: &Batch) -> Fingerprint {
        (b.indices.clone(), flat(&b.images), flat(&b.target))
    }

    /// The training batches of the first `n` steps (over epoch boundaries), with the plain
    /// (un-augmented) batch of the same samples.
    fn batches(config: &Config, n: usize) -> Vec<(Fingerprint, Batch)> {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Trainer::open(config, dir.path(), &RunOptions::default()).unwrap();
        (0..n)
            .map(|_| {
                let b = t.next_batch().unwrap();
                t.advance();
                let plain =
                    load_batch(&t.session, "training", &t.session.data.train, &b.indices).unwrap();
                (fingerprint(&b), plain)
            })
            .collect()
    }

    #[test]
    fn augment_true_still_mirrors_whole_batches() {
        let mut flipped = 0;
        for (got, plain) in batches(&config("augment = true"), 8) {
            if got == fingerprint(&plain) {
                continue;
            }
            // Otherwise exactly the mirrored batch, targets mirrored with the images.
            assert_eq!(got, fingerprint(&plain.flipped().unwrap()));
            flipped += 1;
        }
        assert!(flipped > 0 && flipped < 8, "{flipped} of 8 batches flipped");
        // And without augmentation, every batch is the plain one.
        for (got, plain) in batches(&config(""), 4) {
            assert_eq!(got, fingerprint(&plain));
        }
    }

    #[test]
    fn per_sample_augmentation_gives_the_same_batches_for_any_worker_count() {
        let augment =
            "augment = { flip = true, crop-scale = [0.5, 1.0], brightness = 0.3, saturation = 0.3 }";
        let runs: Vec<Vec<Fingerprint>> = [0, 1, 3]
            .iter()
            .map(|w| {
                batches(&config(&format!("workers = {w}\n{augment}")), 7)
                    .into_iter()
                    .map(|(f, _)| f)
                    .collect()
            })
            .collect();
        assert_eq!(runs[0], runs[1]);
        assert_eq!(runs[0], runs[2]);
        // The samples are augmented (not the plain batches), and stay in [0, 1].
        let plain = batches(&config(""), 7);
        assert!(runs[0]
            .iter()
            .zip(&plain)
            .all(|(a, (p, _))| a.0 == p.0 && a.1 != p.1));
        assert!(runs[0]
            .iter()
            .all(|f| f.1.iter().all(|v| (0.0..=1.0).contains(v))));
    }
}
