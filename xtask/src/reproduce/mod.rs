//! `cargo xtask reproduce`: the paper's headline claims (../shared/docs/method.md) at small
//! scale, as one command.
//!
//! For every task and variant, a small sweep on the validation split chooses the distillation
//! weight (or the regulariser's λ and k) with the same number of candidates for every variant;
//! the chosen setting then runs with every seed and the table reports the test split. Every cell
//! is a run folder keyed by its config hash, so an interrupted reproduction resumes.

mod analysis;
pub(crate) mod grid;
mod pilot;
mod provenance;
mod regime;
mod report;
mod runs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use crosskd_data::sources::fashion_mnist::FashionMnist;
use crosskd_train::{RunSummary, Task};

use grid::{Budget, Inputs, Knob, Profile, Variant};
use provenance::Source;
use runs::{run_cell, Provenance};

/// Options of `cargo xtask reproduce`.
#[derive(clap::Args)]
pub struct ReproduceArgs {
    /// `quick` (the pipeline, ≈15 minutes on 2 cores, not evidence), `standard` (the evidence,
    /// ≈90 minutes on 2 cores) or `full` (for a GPU).
    #[arg(long, value_enum, default_value_t = Profile::Quick)]
    pub profile: Profile,
    /// Seeds per cell (default: the profile's: 3 quick, 10 standard and full).
    #[arg(long)]
    pub seeds: Option<u64>,
    /// Tasks, comma-separated: depth, seg, translation, cls.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "depth,seg,translation,cls"
    )]
    pub tasks: Vec<String>,
    /// Folder of the run folders (one per cell, named by config hash).
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// Where the results document goes (default: `OUT/results.md` for quick, docs/results.md
    /// for standard and full; only those two may write docs/results.md).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Run the pilot only (standard and full): print the estimated time and predicted interval
    /// half-widths, then stop.
    #[arg(long)]
    pub pilot_only: bool,
    /// MobileNetV2 ImageNet weights in safetensors (`crosskd import-weights`); the pretrained
    /// rows run only when this file exists.
    #[arg(long, default_value = "models/weights/mobilenet_v2.safetensors")]
    pub pretrained_weights: PathBuf,
    /// Folder of the Fashion-MNIST IDX files; the classification rows run only when present.
    #[arg(long, default_value = FashionMnist::DEFAULT_DIR)]
    pub fashion_mnist: PathBuf,
    /// CPU threads per run.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

fn parse_task(name: &str) -> anyhow::Result<Task> {
    Ok(match name.trim() {
        "depth" => Task::Depth,
        "seg" | "segmentation" => Task::Segmentation,
        "translation" => Task::Translation,
        "cls" | "classification" => Task::Classification,
        other => bail!("--tasks: unknown task `{other}`; expected depth, seg, translation or cls"),
    })
}

/// One finished cell of the final (all-seeds) grid.
pub struct Cell {
    /// The variant.
    pub variant: Variant,
    /// The chosen knob.
    pub knob: Knob,
    /// One summary per seed.
    pub summaries: Vec<RunSummary>,
    /// Validation scores of every sweep candidate (seed 0).
    pub sweep: Vec<(Knob, f64)>,
}

/// Everything one task produced.
pub struct TaskResult {
    /// The task.
    pub task: Task,
    /// Cells in table order.
    pub cells: Vec<Cell>,
}

/// Counts cells and prints progress.
struct Progress {
    started: Instant,
    trained: usize,
    reused: usize,
    /// Training time of every cell used, whenever it was trained (from the run summaries).
    cell_seconds: f64,
    /// Run folders already counted (a teacher serves two tasks).
    counted: std::collections::HashSet<PathBuf>,
    /// Cells retrained because they came from other code.
    retrained: Vec<String>,
    /// The code this invocation runs.
    source: Option<Source>,
}

impl Progress {
    fn cell(&mut self, what: &str, summary: &RunSummary, provenance: Provenance, seconds: f64) {
        if self.counted.insert(summary.run_dir.clone()) {
            self.cell_seconds += summary.wall_time_s;
            match provenance {
                Provenance::Reused => self.reused += 1,
                _ => self.trained += 1,
            }
            if provenance == Provenance::Retrained {
                let cell = summary
                    .run_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string());
                self.retrained.extend(cell);
            }
        }
        let how = match provenance {
            Provenance::Trained => format!("trained in {seconds:.1} s"),
            Provenance::Resumed => format!("resumed, {seconds:.1} s"),
            Provenance::Reused => "reused".to_string(),
            Provenance::Retrained => format!("retrained (was from other code) in {seconds:.1} s"),
        };
        let metric = &summary.primary_metric;
        println!(
            "[{:>6.0} s] {what}: val {metric} {:.4}, test {metric} {:.4} ({how})",
            self.started.elapsed().as_secs_f64(),
            summary.best.map(|b| b.0).unwrap_or(f64::NAN),
            summary.test.get(metric).copied().unwrap_or(f64::NAN),
        );
    }
}

fn better(summary: &RunSummary, a: f64, b: f64) -> bool {
    if summary.primary_higher_is_better {
        a > b
    } else {
        a < b
    }
}

/// Trains (or reuses) the in-house teacher for dense `task`; returns its summary.
fn cross_task_teacher(
    task: Task,
    budget: &Budget,
    inputs: &Inputs,
    out: &Path,
    progress: &mut Progress,
) -> anyhow::Result<RunSummary> {
    let teacher_task = grid::cross_task_teacher(task);
    let config = grid::teacher_config(teacher_task, budget, inputs);
    let source = progress.source.clone();
    let (summary, provenance, secs) = run_cell(out, &config, source.as_ref())?;
    progress.cell(
        &format!("{} teacher (for {})", teacher_task.name(), task.name()),
        &summary,
        provenance,
        secs,
    );
    Ok(summary)
}

/// Runs one cell of `task`'s grid and reports it.
struct CellRunner<'a> {
    task: Task,
    budget: &'a Budget,
    inputs: &'a Inputs,
    out: &'a Path,
    cross_teacher: Option<PathBuf>,
}

impl<'a> CellRunner<'a> {
    /// The runner of `task`'s cells, after training (or reusing) the in-house teacher of a
    /// dense task, whose summary comes back with it.
    fn open(
        task: Task,
        budget: &'a Budget,
        inputs: &'a Inputs,
        out: &'a Path,
        progress: &mut Progress,
    ) -> anyhow::Result<(Self, Option<RunSummary>)> {
        let teacher = if task.is_dense() {
            Some(cross_task_teacher(task, budget, inputs, out, progress)?)
        } else {
            None
        };
        let runner = CellRunner {
            task,
            budget,
            inputs,
            out,
            cross_teacher: teacher.as_ref().map(|t| t.run_dir.clone()),
        };
        Ok((runner, teacher))
    }

    fn run(
        &self,
        variant: &Variant,
        knob: Knob,
        seed: u64,
        progress: &mut Progress,
    ) -> anyhow::Result<RunSummary> {
        let config = grid::cell_config(
            self.task,
            variant,
            knob,
            seed,
            self.budget,
            self.inputs,
            self.cross_teacher.as_deref(),
        )?;
        let source = progress.source.clone();
        let (summary, provenance, secs) = run_cell(self.out, &config, source.as_ref())?;
        let what = format!(
            "{} | {} | {} | seed {seed}",
            self.task.name(),
            variant.label(),
            knob.describe()
        );
        progress.cell(&what, &summary, provenance, secs);
        Ok(summary)
    }
}

/// Runs the grid of one task; returns it and the in-house teacher's summary (dense tasks).
fn reproduce_task(
    task: Task,
    budget: &Budget,
    seeds: u64,
    inputs: &Inputs,
    out: &Path,
    progress: &mut Progress,
) -> anyhow::Result<(TaskResult, Option<RunSummary>)> {
    let (runner, teacher) = CellRunner::open(task, budget, inputs, out, progress)?;
    let mut cells = Vec::new();
    for variant in grid::variants(task, inputs.pretrained_weights.is_some()) {
        let mut sweep = Vec::new();
        let mut chosen: Option<(Knob, f64, RunSummary)> = None;
        for knob in grid::candidates(&variant, task, budget) {
            let summary = runner.run(&variant, knob, 0, progress)?;
            let score = summary
                .best
                .map(|b| b.0)
                .with_context(|| format!("{}: no validation score", summary.run_dir.display()))?;
            sweep.push((knob, score));
            let replace = match &chosen {
                None => true,
                Some((_, best, _)) => better(&summary, score, *best),
            };
            if replace {
                chosen = Some((knob, score, summary));
            }
        }
        let (knob, _, first) = chosen.context("a variant without candidates")?;
        let mut summaries = vec![first];
        for seed in 1..seeds {
            summaries.push(runner.run(&variant, knob, seed, progress)?);
        }
        cells.push(Cell {
            variant,
            knob,
            summaries,
            sweep,
        });
    }
    Ok((TaskResult { task, cells }, teacher))
}

/// Where the document goes: quick beside its runs, the evidence profiles in docs/results.md.
fn results_path(args: &ReproduceArgs) -> anyhow::Result<PathBuf> {
    let evidence = Path::new("docs/results.md");
    match &args.results {
        Some(path) if !args.profile.is_evidence() && path.ends_with(evidence) => bail!(
            "--results {}: only a standard or full reproduction writes docs/results.md; the quick \
             profile is not evidence and writes its report beside its runs ({})",
            path.display(),
            args.out.join("results.md").display()
        ),
        Some(path) => Ok(path.clone()),
        None if args.profile.is_evidence() => Ok(evidence.to_path_buf()),
        None => Ok(args.out.join("results.md")),
    }
}

/// The tasks asked for, and notes on rows left out for missing inputs.
fn tasks_and_inputs(args: &ReproduceArgs) -> anyhow::Result<(Vec<Task>, Inputs, Vec<String>)> {
    let mut tasks = Vec::new();
    for name in &args.tasks {
        let task = parse_task(name)?;
        if !tasks.contains(&task) {
            tasks.push(task);
        }
    }
    let mut notes = Vec::new();
    let image_size = args.profile.budget().image_size;
    let pretrained = (args.pretrained_weights.exists() && image_size >= grid::PRETRAINED_MIN_SIZE)
        .then(|| args.pretrained_weights.clone());
    if image_size < grid::PRETRAINED_MIN_SIZE {
        notes.push(format!(
            "No pretrained rows: the {} profile's {image_size}×{image_size} images would leave \
             MobileNetV2's last features at 1×1, a spatially constant teacher; they need at least \
             {}×{} (the full profile).",
            args.profile.name(),
            grid::PRETRAINED_MIN_SIZE,
            grid::PRETRAINED_MIN_SIZE
        ));
    } else if pretrained.is_none() {
        notes.push(format!(
            "No pretrained rows: {} is absent. Convert torchvision's MobileNetV2 checkpoint with \
             `crosskd import-weights --from mobilenet_v2-b0353104.pth --out {}` (see ../shared/docs/data.md \
             and docs/models.md) to add them.",
            args.pretrained_weights.display(),
            args.pretrained_weights.display()
        ));
    }
    let fashion_present = ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"]
        .iter()
        .any(|f| args.fashion_mnist.join(f).exists());
    if tasks.contains(&Task::Classification) && !fashion_present {
        tasks.retain(|t| *t != Task::Classification);
        notes.push(format!(
            "No classification rows: Fashion-MNIST is not installed in {} (`apt install dataset-fashion-mnist`, \
             see datasets/README.md).",
            args.fashion_mnist.display()
        ));
    }
    let inputs = Inputs {
        threads: args.threads,
        pretrained_weights: pretrained,
        fashion_root: Some(args.fashion_mnist.clone()),
    };
    Ok((tasks, inputs, notes))
}

/// The code identity of the checkout this runs in; None (with a note) outside git.
fn current_source(notes: &mut Vec<String>) -> Option<Source> {
    let root = std::process::Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match root.map(|r| provenance::current(&r)) {
        Some(Ok(source)) => Some(source),
        Some(Err(e)) => {
            notes.push(format!(
                "Code identity unknown ({e:#}): cells on disk are reused unchecked."
            ));
            None
        }
        None => {
            notes.push("Not a git checkout: cells on disk are reused without checking which code made them.".into());
            None
        }
    }
}

/// `cargo xtask reproduce`.
pub fn run(args: &ReproduceArgs) -> anyhow::Result<()> {
    // candle's thread pool reads this once, before the first tensor op of the process.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    crosskd_train::threads::serial_elementwise();
    let budget = args.profile.budget();
    let seeds = args.seeds.unwrap_or(budget.seeds);
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let results_path = results_path(args)?;
    if args.pilot_only && !args.profile.has_pilot() {
        bail!("--pilot-only is for the standard and full profiles");
    }
    let (tasks, inputs, mut notes) = tasks_and_inputs(args)?;
    let source = current_source(&mut notes);
    for note in &notes {
        println!("note: {note}");
    }
    if let Some(source) = &source {
        println!("code: {}", source.describe());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut progress = Progress {
        started: Instant::now(),
        trained: 0,
        reused: 0,
        cell_seconds: 0.0,
        counted: Default::default(),
        retrained: Vec::new(),
        source,
    };
    if args.profile.has_pilot() {
        let mut predictions = Vec::new();
        for &task in &tasks {
            predictions.push(pilot::pilot_task(
                task,
                &budget,
                seeds,
                &inputs,
                &args.out,
                &mut progress,
            )?);
        }
        pilot::print(&predictions, seeds);
        if args.pilot_only {
            return Ok(());
        }
    }
    let mut results = Vec::new();
    let mut teachers = Vec::new();
    for task in tasks {
        let (result, teacher) =
            reproduce_task(task, &budget, seeds, &inputs, &args.out, &mut progress)?;
        teachers.extend(teacher.map(|t| (task, t)));
        results.push(result);
    }
    let wall = progress.started.elapsed().as_secs_f64();
    let tables: BTreeMap<&'static str, crosskd_train::compare::Table> = results
        .iter()
        .map(|r| (r.task.name(), report::task_table(r, seeds)))
        .collect();
    let doc = report::Document {
        args,
        budget: &budget,
        results: &results,
        tables: &tables,
        notes: &notes,
        wall_seconds: wall,
        trained: progress.trained,
        reused: progress.reused,
        cell_seconds: progress.cell_seconds,
        path: &results_path,
        source: progress.source.as_ref(),
        retrained: &progress.retrained,
        seeds,
        teachers: &teachers,
    };
    let markdown = doc.write()?;
    println!("\n{markdown}");
    println!(
        "{} cells trained, {} reused, {:.1} min; results in {}",
        progress.trained,
        progress.reused,
        wall / 60.0,
        results_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use crosskd_train::config::Direction;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReproduceArgs,
    }

    fn args(extra: &[&str]) -> ReproduceArgs {
        let mut argv = vec!["reproduce"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    #[test]
    fn the_quick_profile_never_writes_the_evidence_document() {
        let quick = args(&["--results", "docs/results.md"]);
        let message = format!("{:#}", results_path(&quick).unwrap_err());
        assert!(
            message.contains("only a standard or full reproduction"),
            "{message}"
        );
        assert_eq!(
            results_path(&args(&[])).unwrap(),
            PathBuf::from("runs/reproduce/results.md")
        );
        assert_eq!(
            results_path(&args(&["--profile", "standard"])).unwrap(),
            PathBuf::from("docs/results.md")
        );
    }

    /// Seed `s` must give the student the same initial weights, data order and flips in every
    /// variant, or the paired analysis pairs unrelated runs. With a learning rate that rounds to 0
    /// in f32 (validation wants one > 0) the student never learns, so its test metrics
    /// (batch-norm statistics included, which follow the batches and flips) are equal across
    /// variants exactly when those streams are.
    #[test]
    fn a_teacher_or_regulariser_does_not_shift_the_students_streams() -> anyhow::Result<()> {
        let budget = Profile::Smoke.budget();
        let inputs = Inputs {
            threads: 1,
            pretrained_weights: None,
            fashion_root: None,
        };
        let frozen =
            |variant: Variant, knob: Knob, seed: u64| -> anyhow::Result<Vec<(String, f64)>> {
                let mut config =
                    grid::cell_config(Task::Depth, &variant, knob, seed, &budget, &inputs, None)?;
                config.optimiser.lr = 1e-300;
                config.schedule.warmup_steps = 0;
                config.data.augment = crosskd_train::config::Augment::Switch(true);
                let out = tempfile::tempdir()?;
                let (summary, _, _) = run_cell(out.path(), &config, None)?;
                Ok(summary.test.into_iter().collect())
            };
        let alpha = Knob::Alpha(1.0);
        let baseline = frozen(Variant::NO_KD, Knob::WeightDecay(grid::WEIGHT_DECAY), 3)?;
        let distilled = frozen(
            Variant::with_teacher(grid::TeacherKind::Random, Direction::Inverted),
            alpha,
            3,
        )?;
        let regularised = frozen(
            Variant::TEACHER_FREE,
            Knob::Regulariser {
                lambda: 0.1,
                rank: 4,
            },
            3,
        )?;
        assert_eq!(distilled, baseline);
        assert_eq!(regularised, baseline);
        // The check can fail: another seed is another student.
        assert_ne!(
            frozen(Variant::NO_KD, Knob::WeightDecay(grid::WEIGHT_DECAY), 4)?,
            baseline
        );
        Ok(())
    }
}
