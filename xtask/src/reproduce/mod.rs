//! `cargo xtask reproduce`: the paper's headline claims (../shared/docs/method.md) at small
//! scale, as one command.
//!
//! For every task and variant, a small sweep on the validation split chooses the distillation
//! weight (or the regulariser's λ and k) with the same number of candidates for every variant;
//! the chosen setting then runs with every seed and the table reports the test split. Every cell
//! is a run folder keyed by its config hash, so an interrupted reproduction resumes.

pub(crate) mod grid;
mod report;
mod runs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use crosskd_data::sources::fashion_mnist::FashionMnist;
use crosskd_train::{RunSummary, Task};

use grid::{Budget, Inputs, Knob, Profile, Variant};
use runs::{run_cell, Provenance};

/// Options of `cargo xtask reproduce`.
#[derive(clap::Args)]
pub struct ReproduceArgs {
    /// `quick` (≈20 minutes on 2 cores) or `full` (hours).
    #[arg(long, value_enum, default_value_t = Profile::Quick)]
    pub profile: Profile,
    /// Seeds per cell (mean ± std over them).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
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
    /// Where the results document goes.
    #[arg(long, default_value = "docs/results.md")]
    pub results: PathBuf,
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
}

impl Progress {
    fn cell(&mut self, what: &str, summary: &RunSummary, provenance: Provenance, seconds: f64) {
        if self.counted.insert(summary.run_dir.clone()) {
            self.cell_seconds += summary.wall_time_s;
            match provenance {
                Provenance::Reused => self.reused += 1,
                _ => self.trained += 1,
            }
        }
        let how = match provenance {
            Provenance::Trained => format!("trained in {seconds:.1} s"),
            Provenance::Resumed => format!("resumed, {seconds:.1} s"),
            Provenance::Reused => "reused".to_string(),
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

/// Runs the grid of one task.
fn reproduce_task(
    task: Task,
    budget: &Budget,
    seeds: u64,
    inputs: &Inputs,
    out: &Path,
    progress: &mut Progress,
) -> anyhow::Result<TaskResult> {
    let cross_teacher = if task.is_dense() {
        let teacher_task = grid::cross_task_teacher(task);
        let config = grid::teacher_config(teacher_task, budget, inputs);
        let (summary, provenance, secs) = run_cell(out, &config)?;
        progress.cell(
            &format!("{} teacher (for {})", teacher_task.name(), task.name()),
            &summary,
            provenance,
            secs,
        );
        Some(summary.run_dir)
    } else {
        None
    };
    let mut cells = Vec::new();
    for variant in grid::variants(task, inputs.pretrained_weights.is_some()) {
        let mut sweep = Vec::new();
        let mut chosen: Option<(Knob, f64, RunSummary)> = None;
        let mut run = |knob: Knob, seed: u64| -> anyhow::Result<RunSummary> {
            let config = grid::cell_config(
                task,
                &variant,
                knob,
                seed,
                budget,
                inputs,
                cross_teacher.as_deref(),
            )?;
            let (summary, provenance, secs) = run_cell(out, &config)?;
            let what = format!(
                "{} | {} | {} | seed {seed}",
                task.name(),
                variant.label(),
                knob.describe()
            );
            progress.cell(&what, &summary, provenance, secs);
            Ok(summary)
        };
        for knob in grid::candidates(&variant, budget) {
            let summary = run(knob, 0)?;
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
            summaries.push(run(knob, seed)?);
        }
        cells.push(Cell {
            variant,
            knob,
            summaries,
            sweep,
        });
    }
    Ok(TaskResult { task, cells })
}

/// `cargo xtask reproduce`.
pub fn run(args: &ReproduceArgs) -> anyhow::Result<()> {
    // candle's thread pool reads this once, before the first tensor op of the process.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    crosskd_train::threads::serial_elementwise();
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let mut tasks = Vec::new();
    for name in &args.tasks {
        let task = parse_task(name)?;
        if !tasks.contains(&task) {
            tasks.push(task);
        }
    }
    let mut notes = Vec::new();
    let pretrained = args
        .pretrained_weights
        .exists()
        .then(|| args.pretrained_weights.clone());
    if pretrained.is_none() {
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
    for note in &notes {
        println!("note: {note}");
    }
    let inputs = Inputs {
        threads: args.threads,
        pretrained_weights: pretrained,
        fashion_root: Some(args.fashion_mnist.clone()),
    };
    let budget = args.profile.budget();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut progress = Progress {
        started: Instant::now(),
        trained: 0,
        reused: 0,
        cell_seconds: 0.0,
        counted: Default::default(),
    };
    let mut results = Vec::new();
    for task in tasks {
        results.push(reproduce_task(
            task,
            &budget,
            args.seeds,
            &inputs,
            &args.out,
            &mut progress,
        )?);
    }
    let wall = progress.started.elapsed().as_secs_f64();
    let tables: BTreeMap<&'static str, crosskd_train::compare::Table> = results
        .iter()
        .map(|r| (r.task.name(), report::task_table(r, args.seeds)))
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
    };
    let markdown = doc.write()?;
    println!("\n{markdown}");
    println!(
        "{} cells trained, {} reused, {:.1} min; results in {}",
        progress.trained,
        progress.reused,
        wall / 60.0,
        args.results.display()
    );
    Ok(())
}
