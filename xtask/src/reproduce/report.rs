//! Turns the grid's summaries into the paper-style tables, the spectra plots and
//! `docs/results.md`, with a verdict per headline claim computed from the numbers.

use std::collections::BTreeMap;

use anyhow::Context;
use crosskd_train::plots::{plot_panels, Panel};
use crosskd_train::{RunSummary, Task};

use super::grid::{self, Budget, Inputs, Profile, TeacherKind, Variant};
use super::{Cell, ReproduceArgs, TaskResult};
use crosskd_train::compare::{mean_std, secondary_metrics, verdict, Row, Table, Verdict};
use crosskd_train::config::Direction;

/// Secondary metrics shown next to the primary one: `(key, higher is better)`.
fn caption(task: Task, seeds: u64) -> String {
    let data = if task == Task::Classification {
        "Fashion-MNIST"
    } else {
        "rendered scenes"
    };
    let name = match task {
        Task::Depth => "Depth estimation",
        Task::Segmentation => "Semantic segmentation",
        Task::Translation => "Labels → image translation",
        Task::Classification => "Classification",
    };
    format!("{name} on {data} — test split, mean ± std over {seeds} seeds")
}

/// `exp(H(σ / Σσ))`: how many directions carry the spectrum (0 for an empty one).
pub fn effective_rank(singular_values: &[f64]) -> f64 {
    let total: f64 = singular_values.iter().filter(|s| **s > 0.0).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let entropy: f64 = singular_values
        .iter()
        .filter(|s| **s > 0.0)
        .map(|s| {
            let p = s / total;
            -p * p.ln()
        })
        .sum();
    entropy.exp()
}

fn metric(summary: &RunSummary, key: &str) -> f64 {
    summary.test.get(key).copied().unwrap_or(f64::NAN)
}

/// The table of one task.
pub fn task_table(result: &TaskResult, seeds: u64) -> Table {
    let first = result.cells.first().and_then(|c| c.summaries.first());
    let primary = first.map(|s| s.primary_metric.clone()).unwrap_or_default();
    let higher_is_better = first.map(|s| s.primary_higher_is_better).unwrap_or(true);
    let secondary = secondary_metrics(result.task);
    let rows = result
        .cells
        .iter()
        .map(|cell| Row {
            label: cell.variant.label(),
            chosen: cell.knob.describe(),
            primary: cell.summaries.iter().map(|s| metric(s, &primary)).collect(),
            secondary: secondary
                .iter()
                .map(|(k, _)| cell.summaries.iter().map(|s| metric(s, k)).collect())
                .collect(),
            projector_rank: if cell.variant.direction.is_some() {
                cell.summaries
                    .iter()
                    .map(|s| s.projector_effective_rank)
                    .collect()
            } else {
                Vec::new()
            },
        })
        .collect();
    Table {
        caption: caption(result.task, seeds),
        primary,
        higher_is_better,
        secondary: secondary.iter().map(|(k, h)| (k.to_string(), *h)).collect(),
        rows,
    }
}

fn find(result: &TaskResult, variant: Variant) -> Option<&Cell> {
    result.cells.iter().find(|c| c.variant == variant)
}

fn distilled(teacher: TeacherKind, direction: Direction) -> Variant {
    Variant::with_teacher(teacher, direction)
}

fn primaries(cell: &Cell) -> Vec<f64> {
    cell.summaries
        .iter()
        .map(|s| metric(s, &s.primary_metric))
        .collect()
}

fn student_rank(cell: &Cell) -> Vec<f64> {
    cell.summaries
        .iter()
        .map(|s| effective_rank(&s.student_singular_values))
        .collect()
}

fn verdict_words(v: Verdict) -> &'static str {
    match v {
        Verdict::Better => "**yes** (better beyond the seed spread)",
        Verdict::Worse => "**no** (worse beyond the seed spread)",
        Verdict::WithinSpread => "**not shown** (difference within the seed spread)",
    }
}

/// One line per headline claim and task, computed from the cells.
fn claims(results: &[TaskResult]) -> Vec<String> {
    let mut out = Vec::new();
    let higher = |r: &TaskResult| {
        r.cells
            .first()
            .and_then(|c| c.summaries.first())
            .map(|s| s.primary_higher_is_better)
            .unwrap_or(true)
    };
    out.push("1. *Cross-task teacher: the inverted projector beats the standard one.*".to_string());
    for r in results.iter().filter(|r| r.task.is_dense()) {
        if let (Some(inv), Some(std)) = (
            find(r, distilled(TeacherKind::CrossTask, Direction::Inverted)),
            find(r, distilled(TeacherKind::CrossTask, Direction::Standard)),
        ) {
            out.push(format!(
                "   - {}: {}",
                r.task.name(),
                verdict_words(verdict(&primaries(inv), &primaries(std), higher(r)))
            ));
        }
    }
    out.push("2. *Random teacher + inverted projector beats no distillation.*".to_string());
    for r in results {
        if let (Some(inv), Some(base)) = (
            find(r, distilled(TeacherKind::Random, Direction::Inverted)),
            r.cells.first(),
        ) {
            out.push(format!(
                "   - {}: {}",
                r.task.name(),
                verdict_words(verdict(&primaries(inv), &primaries(base), higher(r)))
            ));
        }
    }
    out.push(
        "3. *The inverted projector is low-rank; the student's feature spectrum is shrunk.* \
         (effective rank `exp(H(σ/Σσ))`, mean over seeds)"
            .to_string(),
    );
    for r in results {
        for kind in [
            TeacherKind::Random,
            TeacherKind::CrossTask,
            TeacherKind::Pretrained,
        ] {
            let family = kind.name();
            if let (Some(inv), Some(std)) = (
                find(r, distilled(kind, Direction::Inverted)),
                find(r, distilled(kind, Direction::Standard)),
            ) {
                let rank = |c: &Cell| {
                    mean_std(
                        &c.summaries
                            .iter()
                            .map(|s| s.projector_effective_rank)
                            .collect::<Vec<_>>(),
                    )
                    .0
                };
                let (ri, rs) = (rank(inv), rank(std));
                out.push(format!(
                    "   - {} / {family}: projector effective rank {ri:.1} (inverted) vs {rs:.1} (standard): {}; \
                     student feature effective rank {:.1} (inverted) vs {:.1} (no KD)",
                    r.task.name(),
                    if ri < rs { "**lower**" } else { "**not lower**" },
                    mean_std(&student_rank(inv)).0,
                    r.cells.first().map(|c| mean_std(&student_rank(c)).0).unwrap_or(f64::NAN),
                ));
            }
        }
    }
    out.push("4. *The teacher-free regulariser improves the student with no teacher.*".to_string());
    for r in results {
        if let (Some(tf), Some(base)) = (find(r, Variant::TEACHER_FREE), r.cells.first()) {
            out.push(format!(
                "   - {}: {}",
                r.task.name(),
                verdict_words(verdict(&primaries(tf), &primaries(base), higher(r)))
            ));
        }
    }
    out
}

fn spectrum_points(values: &[f64]) -> Vec<(f64, f64)> {
    let top = values.iter().cloned().fold(0.0f64, f64::max);
    if top <= 0.0 {
        return Vec::new();
    }
    values
        .iter()
        .enumerate()
        .map(|(i, s)| ((i + 1) as f64, s / top))
        .collect()
}

/// The results document and its plots.
pub struct Document<'a> {
    /// The command's options.
    pub args: &'a ReproduceArgs,
    /// Sizes used.
    pub budget: &'a Budget,
    /// Every task's cells.
    pub results: &'a [TaskResult],
    /// Every task's table, by task name.
    pub tables: &'a BTreeMap<&'static str, Table>,
    /// Rows left out and why.
    pub notes: &'a [String],
    /// Wall time of this invocation.
    pub wall_seconds: f64,
    /// Cells trained in this invocation.
    pub trained: usize,
    /// Cells read back from earlier invocations.
    pub reused: usize,
    /// Training time of all cells, summed over the invocations that trained them.
    pub cell_seconds: f64,
}

impl Document<'_> {
    fn plots(&self, image_dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
        std::fs::create_dir_all(image_dir)
            .with_context(|| format!("creating {}", image_dir.display()))?;
        let mut projector_panels = Vec::new();
        let mut student_panels = Vec::new();
        for r in self.results {
            let mut projector = Vec::new();
            for cell in &r.cells {
                if cell.variant.direction.is_some() && cell.variant.teacher != TeacherKind::None {
                    if let Some(s) = cell.summaries.first() {
                        projector.push((
                            cell.variant.label(),
                            spectrum_points(&s.projector_singular_values),
                        ));
                    }
                }
            }
            if !projector.is_empty() {
                projector_panels.push(Panel {
                    title: format!("{}: projector σ_i/σ_1", r.task.name()),
                    x_label: "index i".to_string(),
                    series: projector,
                    log_y: true,
                });
            }
            let student: Vec<(String, Vec<(f64, f64)>)> = r
                .cells
                .iter()
                .filter(|c| {
                    c.variant.teacher == TeacherKind::None
                        || c.variant == distilled(TeacherKind::Random, Direction::Inverted)
                })
                .filter_map(|c| {
                    c.summaries.first().map(|s| {
                        (
                            c.variant.label(),
                            spectrum_points(&s.student_singular_values),
                        )
                    })
                })
                .collect();
            student_panels.push(Panel {
                title: format!("{}: student feature σ_i/σ_1", r.task.name()),
                x_label: "index i".to_string(),
                series: student,
                log_y: true,
            });
        }
        let mut files = Vec::new();
        if !projector_panels.is_empty() {
            plot_panels(
                &image_dir.join("results-projector-spectra.png"),
                &projector_panels,
                (420, 320),
            )?;
            files.push("img/results-projector-spectra.png".to_string());
        }
        if !student_panels.is_empty() {
            plot_panels(
                &image_dir.join("results-student-spectra.png"),
                &student_panels,
                (420, 320),
            )?;
            files.push("img/results-student-spectra.png".to_string());
        }
        Ok(files)
    }

    /// The teacher tap the trainer chose for the pretrained rows, read from a run's resolved config.
    fn pretrained_tap(&self) -> Option<String> {
        let cell = self
            .results
            .iter()
            .flat_map(|r| &r.cells)
            .find(|c| c.variant.teacher == TeacherKind::Pretrained)?;
        let dir = &cell.summaries.first()?.run_dir;
        let config = crosskd_train::Config::from_file(&dir.join("config.toml"), &[]).ok()?;
        match config.teacher {
            crosskd_train::config::TeacherConfig::Pretrained { tap, .. } => Some(tap),
            _ => None,
        }
    }

    /// Writes the document (and its plots next to it, under `img/`); returns the markdown.
    pub fn write(&self) -> anyhow::Result<String> {
        let path = &self.args.results;
        let dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        let images = self.plots(&dir.join("img"))?;
        let profile = match self.args.profile {
            Profile::Quick => "quick",
            Profile::Full => "full",
        };
        let tasks = self.args.tasks.join(",");
        let mut md = String::from("# Reproduction results\n\n");
        md.push_str(&format!(
            "Produced by `cargo xtask reproduce --profile {profile} --seeds {} --tasks {tasks} --threads {}` \
             on {}, {}. {} cells; training them took {:.1} min in all ({} trained by this invocation, {} reused \
             from earlier ones; this invocation took {:.1} min).\n\n",
            self.args.seeds,
            self.args.threads,
            crate::bench::report::machine_description(self.args.threads),
            today(),
            self.trained + self.reused,
            self.cell_seconds / 60.0,
            self.trained,
            self.reused,
            self.wall_seconds / 60.0
        ));
        let b = self.budget;
        let inputs = Inputs {
            threads: self.args.threads,
            pretrained_weights: None,
            fashion_root: None,
        };
        let dense = grid::base_config(Task::Depth, b, 0, &inputs);
        let cls = grid::base_config(Task::Classification, b, 0, &inputs);
        let arch = |c: &crosskd_train::Config| {
            c.student_arch()
                .and_then(|a| serde_json::to_string(a).ok())
                .unwrap_or_default()
        };
        md.push_str(&format!(
            "Setup ({profile} profile). Dense tasks: {s}×{s} rendered scenes, {} training / {} validation / {} test \
             images, student `{}` (tap `bottleneck`), {} epochs, batch {}, {:?} lr {}, {:?} schedule. Teachers: a \
             frozen random `{}`; the same architecture trained by this command for {} epochs on a *different* task \
             (segmentation teaches depth and translation, depth teaches segmentation). Distillation: FitNets-style \
             MSE between the student's bottleneck and the teacher's default tap through a 1×1 projector in either \
             direction (the teacher map is bilinearly resized to the student's when sizes differ). Teacher-free: the \
             tail spectral regulariser. Classification: the first {} Fashion-MNIST training images ({} of them held \
             out for validation), {} test images, student `{}`, {} epochs, batch {}.\n\n\
             Sweep, the same budget for every variant, scored on the validation split at seed 0: α ∈ {:?} for \
             distillation rows, (λ, k) ∈ {:?} for the regulariser. The chosen value is in the `chosen` column; all \
             seeds then run with it. A difference counts as *better*/*worse* only when it exceeds the sum of the two \
             rows' standard deviations; otherwise the table says *within spread*.\n\n",
            b.train_samples,
            b.val_samples,
            b.test_samples,
            arch(&dense),
            b.epochs,
            dense.train.batch_size,
            dense.optimiser.kind,
            dense.optimiser.lr,
            dense.schedule.kind,
            serde_json::to_string(&grid::dense_teacher_arch()).unwrap_or_default(),
            b.teacher_epochs,
            b.cls_train_samples,
            b.cls_val_samples,
            b.cls_test_samples,
            arch(&cls),
            b.cls_epochs,
            cls.train.batch_size,
            b.alphas,
            b.regulariser,
            s = b.image_size,
        ));
        if let Some(tap) = self.pretrained_tap() {
            md.push_str(&format!(
                "Pretrained rows: torchvision's ImageNet MobileNetV2 (`{}`, imported with `crosskd import-weights`), \
                 ImageNet input normalisation, tap `{tap}` (its last spatial tap, the trainer's default). They run \
                 only when that file exists and are extra to the quick profile's ~20-minute budget (a fresh clone has \
                 no weights and skips them).\n\n",
                self.args.pretrained_weights.display()
            ));
        }
        for note in self.notes {
            md.push_str(&format!("> {note}\n\n"));
        }
        md.push_str("## Tables\n\n");
        for r in self.results {
            if let Some(t) = self.tables.get(r.task.name()) {
                md.push_str(&t.to_markdown());
                md.push('\n');
                for line in t.projector_comparisons() {
                    md.push_str(&format!("- {line}\n"));
                }
                md.push('\n');
            }
        }
        md.push_str("## Headline claims, as measured here\n\n");
        let (beyond, total) = self.tables.values().fold((0, 0), |(b, t), table| {
            let base = table
                .rows
                .first()
                .map(|r| r.primary.clone())
                .unwrap_or_default();
            let rows = &table.rows[1.min(table.rows.len())..];
            let b2 = rows
                .iter()
                .filter(|r| {
                    verdict(&r.primary, &base, table.higher_is_better) != Verdict::WithinSpread
                })
                .count();
            (b + b2, t + rows.len())
        });
        md.push_str(&format!(
            "{beyond} of the {total} differences against no distillation exceed the seed spread{}\n\n",
            if beyond == 0 {
                ": at this budget the grid does **not** separate the variants from the baseline, so none of \
                 the paper's accuracy claims is reproduced or refuted here. The spectral claim (3) is measured \
                 directly and is reported as found."
            } else {
                "; only those rows support a conclusion."
            }
        ));
        for line in claims(self.results) {
            md.push_str(&line);
            md.push('\n');
        }
        md.push_str("\n## Sweep (validation split, seed 0)\n\n| task | variant | candidate | val score |\n|---|---|---|---|\n");
        for r in self.results {
            for cell in &r.cells {
                for (knob, score) in &cell.sweep {
                    md.push_str(&format!(
                        "| {} | {} | {} | {score:.4} |\n",
                        r.task.name(),
                        cell.variant.label(),
                        knob.describe()
                    ));
                }
            }
        }
        if !images.is_empty() {
            md.push_str("\n## Spectra (seed 0)\n\n");
            for img in &images {
                md.push_str(&format!("![{img}]({img})\n\n"));
            }
        }
        std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
        Ok(md)
    }
}

fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown date".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_rank_counts_equal_directions() {
        assert!((effective_rank(&[1.0, 1.0, 1.0, 1.0]) - 4.0).abs() < 1e-12);
        assert!((effective_rank(&[5.0, 0.0, 0.0]) - 1.0).abs() < 1e-12);
        let skewed = effective_rank(&[10.0, 1.0, 0.1]);
        assert!(skewed > 1.0 && skewed < 2.0, "{skewed}");
        assert_eq!(effective_rank(&[]), 0.0);
    }

    #[test]
    fn spectra_are_normalised_to_the_top_value() {
        assert_eq!(
            spectrum_points(&[4.0, 2.0, 1.0]),
            vec![(1.0, 1.0), (2.0, 0.5), (3.0, 0.25)]
        );
        assert!(spectrum_points(&[0.0, 0.0]).is_empty());
    }
}
