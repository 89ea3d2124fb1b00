//! The pilot: before a long profile trains its grid, a few seeds of the baseline and of one
//! distillation variant per task predict the grid's wall time and the half-widths its paired
//! intervals will reach. The pilot's cells are cells of the grid (same configs, same folders), so
//! the time they take is not lost.

use std::path::Path;

use crosskd_train::compare::{mean_std, t_975};
use crosskd_train::config::Direction;
use crosskd_train::{RunSummary, Task};

use super::grid::{self, Budget, Inputs, Knob, TeacherKind, Variant};
use super::{CellRunner, Progress};

/// Seeds the pilot trains per variant.
pub const PILOT_SEEDS: u64 = 3;

/// What the pilot predicts for one task.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The task.
    pub task: Task,
    /// Cells of the task's grid (teacher included).
    pub cells: usize,
    /// Mean training time of the pilot's cells, seconds.
    pub seconds_per_cell: f64,
    /// Training time of the in-house teacher, seconds (0 without one).
    pub teacher_seconds: f64,
    /// Predicted half-width of a paired interval at the grid's seed count, relative to the
    /// baseline's mean.
    pub relative_half_width: f64,
}

impl Prediction {
    /// Predicted training time of the task's grid, seconds.
    pub fn seconds(&self) -> f64 {
        self.teacher_seconds + self.seconds_per_cell * (self.cells.saturating_sub(1)) as f64
    }
}

/// Cells in the grid of `task`: every sweep candidate at seed 0, the other seeds at the chosen
/// value, and the in-house teacher of dense tasks.
pub fn grid_cells(task: Task, budget: &Budget, seeds: u64, pretrained: bool) -> usize {
    let variants = grid::variants(task, pretrained);
    let sweep: usize = variants
        .iter()
        .map(|v| grid::candidates(v, task, budget).len())
        .sum();
    sweep + variants.len() * (seeds as usize - 1) + usize::from(task.is_dense())
}

fn primary(s: &RunSummary) -> f64 {
    s.test.get(&s.primary_metric).copied().unwrap_or(f64::NAN)
}

/// Runs the pilot of `task`.
pub fn pilot_task(
    task: Task,
    budget: &Budget,
    seeds: u64,
    inputs: &Inputs,
    out: &Path,
    progress: &mut Progress,
) -> anyhow::Result<Prediction> {
    let (runner, teacher) = CellRunner::open(task, budget, inputs, out, progress)?;
    let baseline_knob = grid::candidates(&Variant::NO_KD, task, budget)[0];
    let distilled = Variant::with_teacher(TeacherKind::Random, Direction::Inverted);
    let alpha = Knob::Alpha(budget.alphas[0]);
    let mut baseline = Vec::new();
    let mut variant = Vec::new();
    for seed in 0..PILOT_SEEDS {
        baseline.push(runner.run(&Variant::NO_KD, baseline_knob, seed, progress)?);
        variant.push(runner.run(&distilled, alpha, seed, progress)?);
    }
    let times: Vec<f64> = baseline
        .iter()
        .chain(&variant)
        .map(|s| s.wall_time_s)
        .collect();
    let diffs: Vec<f64> = variant
        .iter()
        .zip(&baseline)
        .map(|(v, b)| primary(v) - primary(b))
        .collect();
    let (_, sd) = mean_std(&diffs);
    let (base_mean, _) = mean_std(&baseline.iter().map(primary).collect::<Vec<_>>());
    let n = seeds.max(2) as f64;
    Ok(Prediction {
        task,
        cells: grid_cells(task, budget, seeds, inputs.pretrained_weights.is_some()),
        seconds_per_cell: mean_std(&times).0,
        teacher_seconds: teacher.map(|t| t.wall_time_s).unwrap_or(0.0),
        relative_half_width: t_975(seeds.max(2) as usize - 1) * sd / n.sqrt() / base_mean.abs(),
    })
}

/// Prints the predictions.
pub fn print(predictions: &[Prediction], seeds: u64) {
    println!(
        "\npilot ({PILOT_SEEDS} seeds of no KD and random teacher + inverted projector per task):"
    );
    let mut total = 0.0;
    for p in predictions {
        total += p.seconds();
        println!(
            "  {:<14} {:>4} cells × {:>5.1} s ≈ {:>5.1} min; predicted paired 95% half-width at {seeds} seeds: {:.2}% of the no-KD mean",
            p.task.name(),
            p.cells,
            p.seconds_per_cell,
            p.seconds() / 60.0,
            100.0 * p.relative_half_width
        );
    }
    println!(
        "  estimated grid time: {:.0} min (cells already on disk are reused)\n",
        total / 60.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_counts_every_candidate_and_seed() {
        let budget = grid::Profile::Quick.budget();
        // Dense without pretrained rows: 6 variants × 2 candidates at seed 0, 6 × 2 more seeds,
        // and the teacher.
        assert_eq!(grid_cells(Task::Depth, &budget, 3, false), 12 + 12 + 1);
        // Classification: no KD, random standard/inverted, teacher-free.
        assert_eq!(grid_cells(Task::Classification, &budget, 3, false), 8 + 8);
    }
}
