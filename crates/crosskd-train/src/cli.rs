//! Command-line options shared by `crosskd` and the per-task binaries (`train-depth`, …), and the
//! code that turns them into a run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, Task};
use crate::error::Result;
use crate::train::{RunOptions, RunSummary, StopReason};

/// Options of a training run.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// The run's TOML config (see configs/ and docs/usage.md). Without it, the task's defaults
    /// are used (per-task binaries, or `crosskd train --task`).
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// The task, when no config file is given.
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// Override one config key, e.g. `--set distill.direction=inverted` or
    /// `--set train.steps=200`; the value is parsed as TOML (bare words are strings). Repeatable;
    /// applied after the shorthand options below.
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Run folder (config.toml, metrics.jsonl, checkpoints/, plots). Default:
    /// `runs/<task>-<config hash>`.
    #[arg(long, value_name = "RUN_DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint, bit-identically to an uninterrupted run.
    #[arg(long)]
    pub resume: bool,
    /// Shorthand for `teacher.kind`: none, random (frozen random network, the student's
    /// architecture by default), checkpoint (a crosskd run folder, see --teacher-path) or
    /// pretrained (needs a `[teacher.architecture]` table and `teacher.weights` in the config).
    #[arg(long, value_enum)]
    pub teacher: Option<TeacherArg>,
    /// Shorthand for `teacher.path` (checkpoint teachers: a run folder or checkpoint file).
    #[arg(long, value_name = "PATH")]
    pub teacher_path: Option<PathBuf>,
    /// Shorthand for `distill.direction`: standard (student → teacher, FitNets) or inverted
    /// (teacher → student, the paper's projector).
    #[arg(long, value_enum)]
    pub projector: Option<DirectionArg>,
    /// Shorthand for `distill.weight` (alpha in L = L_task + alpha · L_distill).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Shorthand for the teacher-free regulariser: tail or random-subspace (rank 8) or energy;
    /// `--set regulariser.weight=…` sets its weight (default 1).
    #[arg(long, value_enum)]
    pub regulariser: Option<RegulariserArg>,
    /// Shorthand for `train.steps` (overrides epochs).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Shorthand for `train.epochs`.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Shorthand for `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shorthand for `threads` (CPU threads; 0 = all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Shorthand for `device`: cpu, cuda (GPU 0) or cuda:N (needs a `--features cuda` build).
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// Hide the progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Task names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    /// Monocular depth on rendered scenes.
    Depth,
    /// Semantic segmentation on rendered scenes.
    Segmentation,
    /// Label map → photo translation on rendered scenes.
    Translation,
    /// Fashion-MNIST classification.
    Classification,
}

impl From<TaskArg> for Task {
    fn from(t: TaskArg) -> Task {
        match t {
            TaskArg::Depth => Task::Depth,
            TaskArg::Segmentation => Task::Segmentation,
            TaskArg::Translation => Task::Translation,
            TaskArg::Classification => Task::Classification,
        }
    }
}

/// Teacher kinds on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TeacherArg {
    /// No teacher.
    None,
    /// A frozen, randomly initialised network.
    Random,
    /// A network trained by crosskd (a run folder).
    Checkpoint,
    /// Published weights.
    Pretrained,
}

/// Projector directions on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// Student → teacher.
    Standard,
    /// Teacher → student.
    Inverted,
}

/// Regularisers on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegulariserArg {
    /// Energy outside the top-8 singular directions of the student feature.
    Tail,
    /// Energy outside an 8-dimensional random map of an early feature.
    RandomSubspace,
    /// Total feature energy.
    Energy,
}

impl TrainArgs {
    /// The `--set` overrides the shorthand options stand for, followed by the explicit ones.
    pub fn all_overrides(&self) -> Vec<String> {
        let mut o = Vec::new();
        if let Some(t) = self.teacher {
            let kind = match t {
                TeacherArg::None => "none",
                TeacherArg::Random => "random",
                TeacherArg::Checkpoint => "checkpoint",
                TeacherArg::Pretrained => "pretrained",
            };
            o.push(format!("teacher.kind={kind}"));
        }
        if let Some(p) = &self.teacher_path {
            o.push(format!(
                "teacher.path={}",
                toml_string(&p.display().to_string())
            ));
        }
        if let Some(d) = self.projector {
            let d = if d == DirectionArg::Inverted {
                "inverted"
            } else {
                "standard"
            };
            o.push(format!("distill.direction={d}"));
        }
        if let Some(a) = self.alpha {
            o.push(format!("distill.weight={a:?}"));
        }
        match self.regulariser {
            Some(RegulariserArg::Tail) => {
                o.extend(["regulariser.kind=tail".into(), "regulariser.rank=8".into()])
            }
            Some(RegulariserArg::RandomSubspace) => o.extend([
                "regulariser.kind=random-subspace".into(),
                "regulariser.rank=8".into(),
            ]),
            Some(RegulariserArg::Energy) => o.push("regulariser.kind=energy".into()),
            None => {}
        }
        if let Some(s) = self.steps {
            o.push(format!("train.steps={s}"));
        }
        if let Some(e) = self.epochs {
            o.push(format!("train.epochs={e}"));
        }
        if let Some(s) = self.seed {
            o.push(format!("seed={s}"));
        }
        if let Some(t) = self.threads {
            o.push(format!("threads={t}"));
        }
        if let Some(d) = &self.device {
            o.push(format!("device={}", toml_string(d)));
        }
        o.extend(self.overrides.iter().cloned());
        o
    }

    /// The resolved config: the file (or the task's defaults) with every override applied.
    /// `fixed_task` is the task of a per-task binary.
    pub fn resolve_config(&self, fixed_task: Option<Task>) -> Result<Config> {
        let overrides = self.all_overrides();
        match (&self.config, fixed_task.or(self.task.map(Task::from))) {
            (Some(path), fixed) => {
                let c = Config::from_file(path, &overrides)?;
                match fixed {
                    Some(t) if t != c.task => Err(crate::TrainError::Config {
                        file: Some(path.clone()),
                        key: "task".into(),
                        message: format!(
                            "expected \"{}\" for this command, found \"{}\"",
                            t.name(),
                            c.task.name()
                        ),
                    }),
                    _ => Ok(c),
                }
            }
            (None, Some(task)) => {
                Config::from_toml_str(&format!("task = \"{}\"\n", task.name()), &overrides, None)
            }
            (None, None) => Err(crate::TrainError::config(
                "task",
                "give --config FILE.toml or --task",
            )),
        }
    }
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The default run folder of a config: `runs/<task>-<hash>`.
pub fn default_run_dir(config: &Config) -> PathBuf {
    PathBuf::from("runs").join(format!("{}-{}", config.task.name(), config.hash()))
}

/// The stop requests of a run: SIGINT (Ctrl-C) and SIGTERM (what `timeout`, `kill` and job
/// schedulers send) both ask the loop to write a checkpoint and stop; a second SIGINT quits at
/// once.
#[derive(Debug, Clone)]
pub struct StopSignals {
    /// Raised by either signal; the training loop watches it.
    pub stop: Arc<AtomicBool>,
    /// Raised by SIGTERM only, so the exit code can say which signal it was.
    pub terminated: Arc<AtomicBool>,
}

/// Exit code of a run that finished.
pub const EXIT_FINISHED: i32 = 0;
/// Exit code of a failed run (bad config, bad data, non-finite loss, I/O error).
pub const EXIT_ERROR: i32 = 1;
/// Exit code of a run stopped by SIGINT (128 + 2), after its checkpoint was written.
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit code of a run stopped by SIGTERM (128 + 15), after its checkpoint was written.
pub const EXIT_TERMINATED: i32 = 143;

/// Installs the SIGINT and SIGTERM handlers of a training run (see [`StopSignals`]).
pub fn install_stop_signals() -> StopSignals {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let signals = StopSignals {
        stop: Arc::new(AtomicBool::new(false)),
        terminated: Arc::new(AtomicBool::new(false)),
    };
    // Registered first, so it sees the flag as it was before this signal: only a second SIGINT
    // (the flag already raised) exits at once.
    let results = [
        signal_hook::flag::register_conditional_shutdown(
            SIGINT,
            EXIT_INTERRUPTED,
            signals.stop.clone(),
        ),
        signal_hook::flag::register(SIGINT, signals.stop.clone()),
        signal_hook::flag::register(SIGTERM, signals.stop.clone()),
        signal_hook::flag::register(SIGTERM, signals.terminated.clone()),
    ];
    for r in results {
        if let Err(e) = r {
            tracing::warn!("signals will not checkpoint ({e})");
        }
    }
    signals
}

/// The exit code of a training command: [`EXIT_FINISHED`] for a finished (or deliberately
/// stopped) run, [`EXIT_INTERRUPTED`] or [`EXIT_TERMINATED`] for one a signal stopped.
pub fn exit_code(summary: &RunSummary, signals: &StopSignals) -> i32 {
    match summary.stop {
        StopReason::Interrupted if signals.terminated.load(Ordering::SeqCst) => EXIT_TERMINATED,
        StopReason::Interrupted => EXIT_INTERRUPTED,
        StopReason::Finished | StopReason::StoppedEarly => EXIT_FINISHED,
    }
}

/// Runs `train` as the binaries do: resolve the config, pick the run folder, install the signal
/// handlers, train, and print a summary. Returns the summary and the process's exit code.
pub fn train_command(args: &TrainArgs, fixed_task: Option<Task>) -> Result<(RunSummary, i32)> {
    let config = args.resolve_config(fixed_task)?;
    crate::threads::apply(config.threads);
    let run_dir = match &args.out {
        Some(d) => d.clone(),
        None => default_run_dir(&config),
    };
    let signals = install_stop_signals();
    let options = RunOptions {
        resume: args.resume,
        interrupt: Some(signals.stop.clone()),
        progress: !args.no_progress,
        ..RunOptions::default()
    };
    let summary = crate::train::run_training_with(&config, &run_dir, &options)?;
    print_summary(&summary);
    let code = exit_code(&summary, &signals);
    Ok((summary, code))
}

fn fmt_metrics(m: &std::collections::BTreeMap<String, f64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints what a run did, in a few lines.
pub fn print_summary(s: &RunSummary) {
    let how = match s.stop {
        StopReason::Finished => "finished",
        StopReason::StoppedEarly => "stopped early (resume with --resume)",
        StopReason::Interrupted => {
            "interrupted by a signal; checkpoint written (resume with --resume)"
        }
    };
    println!(
        "run {} {how} after {} steps in {:.1} s",
        s.run_dir.display(),
        s.steps,
        s.wall_time_s
    );
    if let Some((v, step)) = s.best {
        println!("best val {} = {v:.4} at step {step}", s.primary_metric);
    }
    if !s.last_val.is_empty() {
        println!("last val: {}", fmt_metrics(&s.last_val));
    }
    if !s.test.is_empty() {
        println!("test (best checkpoint): {}", fmt_metrics(&s.test));
    }
    if !s.projector_singular_values.is_empty() {
        let top: Vec<String> = s
            .projector_singular_values
            .iter()
            .take(6)
            .map(|v| format!("{v:.3}"))
            .collect();
        println!(
            "projector singular values: {} … (effective rank {:.2})",
            top.join(", "),
            s.projector_effective_rank
        );
    }
    for f in &s.files {
        println!("wrote {}", f.display());
    }
}

/// `crosskd`: train, evaluate and use cross-task knowledge-distillation runs.
#[derive(Debug, Parser)]
#[command(name = "crosskd", version, about, long_about = None)]
pub struct CrosskdCli {
    /// Log verbosity.
    #[command(flatten)]
    pub verbosity: crate::logging::Verbosity,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `crosskd` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a student (optionally with a teacher and projector) from a config.
    #[command(
        after_help = "Examples:\n  crosskd train --config configs/depth-random-inverted.toml --out runs/quick\n  crosskd train --task depth --teacher random --projector inverted --steps 200\n  crosskd train --config run.toml --out runs/r1 --resume"
    )]
    Train(TrainArgs),
    /// Evaluate a run's best checkpoint on a split and print every metric.
    #[command(
        after_help = "Examples:\n  crosskd eval --run runs/quick\n  crosskd eval --run runs/quick --split val --json"
    )]
    Eval {
        /// The run folder (or a student file written by `crosskd export`).
        #[arg(long, value_name = "RUN_DIR")]
        run: PathBuf,
        /// Which split.
        #[arg(long, value_enum, default_value_t = SplitArg::Test)]
        split: SplitArg,
        /// Device to evaluate on (cpu, cuda, cuda:N); default: the run's own.
        #[arg(long, value_name = "DEVICE")]
        device: Option<String>,
        /// Print the metrics as one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Predict on one image with a run's best checkpoint and write a PNG (dense tasks) or print
    /// class probabilities (classification).
    #[command(
        after_help = "Examples:\n  crosskd predict --run runs/quick --input photo.png --out depth.png\n  crosskd predict --run student.safetensors --input shoe.png"
    )]
    Predict {
        /// The run folder (or a student file written by `crosskd export`).
        #[arg(long, value_name = "RUN_DIR")]
        run: PathBuf,
        /// Input image (PNG or JPEG); resized to the run's image size.
        #[arg(long, value_name = "IMG")]
        input: PathBuf,
        /// Output PNG (dense tasks; classification prints its classes and needs none).
        #[arg(long, value_name = "PNG")]
        out: Option<PathBuf>,
        /// Device to predict on (cpu, cuda, cuda:N); default: the run's own.
        #[arg(long, value_name = "DEVICE")]
        device: Option<String>,
    },
    /// Show what a run folder or a checkpoint holds: config, hash, progress and metrics, or
    /// every tensor with its shape and dtype, the metadata and the digest check.
    #[command(
        after_help = "Examples:\n  crosskd inspect runs/quick\n  crosskd inspect runs/quick/checkpoints/best.safetensors"
    )]
    Inspect {
        /// A run folder or a `.safetensors` file.
        path: PathBuf,
    },
    /// Write a run's student (network + head, no projector or optimiser state) as one
    /// safetensors file with its architecture and config in the metadata.
    #[command(
        after_help = "Example:\n  crosskd export --run runs/quick --out student.safetensors"
    )]
    Export {
        /// The run folder (its best checkpoint is exported, else the last).
        #[arg(long, value_name = "RUN_DIR")]
        run: PathBuf,
        /// The file to write.
        #[arg(long, value_name = "FILE.safetensors")]
        out: PathBuf,
    },
    /// Compare finished runs: mean ± std per variant over seeds, and paired differences with
    /// 95% intervals against the no-KD variant where seeds match.
    #[command(
        after_help = "Examples:\n  crosskd compare runs/nokd-s1 runs/nokd-s2 runs/inv-s1 runs/inv-s2\n  crosskd compare runs/reproduce/runs --format csv"
    )]
    Compare {
        /// Run folders, or folders of run folders.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CompareFormat::Markdown)]
        format: CompareFormat,
    },
    /// Redraw a run's plots (loss and metric curves, spectra, predictions) from its files.
    #[command(after_help = "Example:\n  crosskd plot runs/quick")]
    Plot {
        /// The run folder.
        run: PathBuf,
    },
    /// List architectures, an architecture's feature taps, data sources, the named teachers,
    /// or the shipped configs.
    #[command(subcommand)]
    List(ListCommand),
    /// Download the named teachers of models/teachers.toml into the hf-hub cache (or report,
    /// with --offline, which are cached), checking pinned SHA-256s.
    #[command(
        after_help = "Examples:\n  crosskd fetch-teachers\n  crosskd fetch-teachers --offline\n  crosskd fetch-teachers --only resnet18-imagenet --from model.safetensors"
    )]
    FetchTeachers(FetchTeachersArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(
        after_help = "Example:\n  crosskd completions bash > ~/.local/share/bash-completion/completions/crosskd"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Convert a PyTorch checkpoint (.pth/.pt, legacy or zip format; no Python needed, no pickle
    /// code executed) to safetensors with the same tensor names.
    #[command(
        after_help = "Example:\n  crosskd import-weights --from mobilenet_v2-b0353104.pth --out models/weights/mobilenet_v2.safetensors"
    )]
    ImportWeights {
        /// The PyTorch checkpoint.
        #[arg(long, value_name = "FILE.pth")]
        from: PathBuf,
        /// The safetensors file to write.
        #[arg(long, value_name = "FILE.safetensors")]
        out: PathBuf,
    },
}

/// Options of `crosskd fetch-teachers` (and `cargo xtask fetch-teachers`).
#[derive(Debug, Clone, Args)]
pub struct FetchTeachersArgs {
    /// Use the cache only and report what is cached and what is missing (HF_HUB_OFFLINE=1 does
    /// the same).
    #[arg(long)]
    pub offline: bool,
    /// Only this teacher (repeatable; see `crosskd list teachers`).
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Put this local file into the cache as the teacher named by --only instead of downloading
    /// it (for machines without the hub; a pinned SHA-256 is checked first).
    #[arg(long, value_name = "FILE.safetensors")]
    pub from: Option<PathBuf>,
    /// A teacher list other than the compiled-in models/teachers.toml.
    #[arg(long, value_name = "FILE.toml")]
    pub list: Option<PathBuf>,
    /// The hf-hub cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub, else
    /// ~/.cache/huggingface/hub).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl FetchTeachersArgs {
    /// The options these arguments stand for.
    pub fn options(&self) -> crate::teachers::fetch::FetchOptions {
        crate::teachers::fetch::FetchOptions {
            offline: self.offline,
            only: self.only.clone(),
            list: self.list.clone(),
            cache_dir: self.cache_dir.clone(),
            from: self.from.clone(),
        }
    }
}

/// Splits of a run on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    /// The test split.
    Test,
    /// The validation split (carved from the training data).
    Val,
    /// The training split.
    Train,
}

impl SplitArg {
    /// The split's name.
    pub fn name(self) -> &'static str {
        match self {
            SplitArg::Test => "test",
            SplitArg::Val => "val",
            SplitArg::Train => "train",
        }
    }
}

/// Output formats of `crosskd compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    /// A Markdown table and the paired differences.
    Markdown,
    /// One CSV row per variant.
    Csv,
}

/// What `crosskd list` lists.
#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// The architectures crosskd builds.
    #[command(after_help = "Example:\n  crosskd list archs")]
    Archs,
    /// The feature taps of an architecture, with their shapes.
    #[command(
        after_help = "Examples:\n  crosskd list taps unet --size 32\n  crosskd list taps resnet --set depth=50 --size 224"
    )]
    Taps {
        /// The architecture (see `crosskd list archs`).
        arch: String,
        /// Side of the square input in pixels.
        #[arg(long, default_value_t = 224)]
        size: usize,
        /// Set a key of the architecture's table, e.g. `--set base-width=16`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// The data sources, with the tasks each serves and the folder layout it expects.
    #[command(after_help = "Example:\n  crosskd list datasets")]
    Datasets,
    /// The named pretrained teachers (models/teachers.toml): architecture, weight naming,
    /// pinning, hub file, and whether the hf-hub cache holds them.
    #[command(after_help = "Example:\n  crosskd list teachers")]
    Teachers {
        /// A teacher list other than the compiled-in models/teachers.toml.
        #[arg(long, value_name = "FILE.toml")]
        list: Option<PathBuf>,
        /// The hf-hub cache folder (default: as `crosskd fetch-teachers`).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// The run configs in a folder, with task, teacher and config hash.
    #[command(after_help = "Example:\n  crosskd list configs")]
    Configs {
        /// The folder.
        #[arg(default_value = "configs")]
        dir: PathBuf,
    },
}

/// Runs `crosskd eval`.
pub fn eval_command(run: &Path, split: SplitArg, device: Option<&str>, json: bool) -> Result<()> {
    let session = crate::train::load_run_on(run, device)?;
    let metrics =
        crate::threads::on_compute_pool(|| crate::train::evaluate_session(&session, split.name()))?;
    if json {
        println!("{}", crate::json_float::metrics_json(&metrics));
        return Ok(());
    }
    println!("{} metrics of {}:", split.name(), run.display());
    for (k, v) in metrics {
        println!("  {k:<22} {v:.6}");
    }
    Ok(())
}

/// Runs `crosskd predict`; dense tasks need `out`.
pub fn predict_command(
    run: &Path,
    input: &Path,
    out: Option<&Path>,
    device: Option<&str>,
) -> Result<()> {
    let session = crate::train::load_run_on(run, device)?;
    match crate::predict::predict_file(&session, input)? {
        crate::predict::Prediction::Picture(img) => {
            let out = out.ok_or_else(|| {
                crate::TrainError::config(
                    "--out",
                    format!(
                        "a {} run predicts a picture: give --out FILE.png",
                        session.config.task.name()
                    ),
                )
            })?;
            img.save(out).map_err(|e| crate::TrainError::Plot {
                path: out.to_path_buf(),
                message: e.to_string(),
            })?;
            println!("wrote {}", out.display());
        }
        crate::predict::Prediction::Classes(p) => {
            for (class, prob) in p.iter().take(5) {
                println!("class {class}: {prob:.4}");
            }
        }
    }
    Ok(())
}

/// Runs `crosskd import-weights`.
pub fn import_weights_command(from: &Path, out: &Path) -> Result<()> {
    let report = crosskd_models::weights::convert_to_safetensors(from, out)
        .map_err(|e| crate::TrainError::Component(format!("import-weights: {e}")))?;
    println!(
        "wrote {} tensors ({} elements, {} bytes) from a {:?} checkpoint to {}",
        report.tensors,
        report.elements,
        report.payload_bytes,
        report.format,
        report.out.display()
    );
    Ok(())
}

/// The `train-<task>` binaries: the training options with the task fixed.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Train a crosskd student on one task (same options as `crosskd train`)."
)]
pub struct TaskTrainCli {
    /// Log verbosity.
    #[command(flatten)]
    pub verbosity: crate::logging::Verbosity,
    /// The training options.
    #[command(flatten)]
    pub args: TrainArgs,
}

/// Entry point of the per-task binaries.
pub fn task_main(task: Task) -> Result<()> {
    crate::memory::keep_freed_memory();
    let cli = TaskTrainCli::parse();
    crate::logging::init(cli.verbosity);
    let (_, code) = train_command(&cli.args, Some(task))?;
    if code != EXIT_FINISHED {
        std::process::exit(code);
    }
    Ok(())
}
