//! Turns the grid's summaries into the paper-style tables, the spectra plots and
//! `docs/results.md`, with a verdict per headline claim computed from the numbers.

use std::collections::BTreeMap;

use anyhow::Context;
use crosskd_train::plots::{plot_panels, Panel};
use crosskd_train::{RunSummary, Task};

use super::analysis;
use super::grid::{self, Budget, Inputs, TeacherKind, Variant};
use super::provenance::Source;
use super::regime::{self, RegimeCheck, OVERFIT_RATIO, PLATEAU_TOLERANCE};
use super::{ReproduceArgs, TaskResult};
use crosskd_train::compare::{secondary_metrics, Row, Table};
use crosskd_train::config::Direction;

/// The target half-width of every paired interval on the primary metric, relative to the
/// no-KD mean (the reproduction issue's power requirement).
pub const HALF_WIDTH_TARGET: f64 = 0.02;

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

fn distilled(teacher: TeacherKind, direction: Direction) -> Variant {
    Variant::with_teacher(teacher, direction)
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
    /// Where the document goes.
    pub path: &'a std::path::Path,
    /// The code it ran at (None outside a git checkout).
    pub source: Option<&'a Source>,
    /// Cells retrained because they came from other code (moved to `stale/`).
    pub retrained: &'a [String],
    /// Seeds per cell.
    pub seeds: u64,
    /// In-house cross-task teachers: `(task it teaches, its summary)`.
    pub teachers: &'a [(Task, RunSummary)],
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

    /// Baseline regime checks per task, with the curves of seed 0 plotted.
    fn regime_section(&self, image_dir: &std::path::Path) -> anyhow::Result<String> {
        let mut md = format!(
            "## Regime of the baseline

The claims concern students trained to convergence on few labelled \
             images, where they overfit. Checked on every no-KD seed: *plateau* = the best validation score of \
             the last 20% of epochs is within {:.0}% of the overall best; *overfits* = the last logged training \
             task loss (train mode, augmented batches) is at most {OVERFIT_RATIO}× the last validation task loss.\n\n\
             | task | plateau (seeds) | median gap to best | overfits (seeds) | median train/val loss |\n|---|---|---|---|---|\n",
            100.0 * PLATEAU_TOLERANCE
        );
        let mut panels = Vec::new();
        for r in self.results {
            let Some(base) = r.cells.first() else {
                continue;
            };
            let checks: Vec<RegimeCheck> = regime::check_runs(&base.summaries)
                .into_iter()
                .flatten()
                .collect();
            let n = base.summaries.len();
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
            };
            md.push_str(&format!(
                "| {} | {}/{n} | {:.2}% | {}/{n} | {:.2} |\n",
                r.task.name(),
                checks.iter().filter(|c| c.plateaued()).count(),
                100.0 * median(checks.iter().map(|c| c.plateau_gap).collect()),
                checks.iter().filter(|c| c.overfits()).count(),
                median(checks.iter().map(|c| c.train_val_ratio).collect()),
            ));
            if let Some(first) = base.summaries.first() {
                if let Ok(curves) = regime::read_curves(&first.run_dir, &first.primary_metric) {
                    panels.push(crosskd_train::plots::Panel {
                        title: format!("{}: no KD, seed 0, task loss", r.task.name()),
                        x_label: "epoch".to_string(),
                        series: vec![
                            ("train".to_string(), curves.train_loss.clone()),
                            ("validation".to_string(), curves.val_loss.clone()),
                        ],
                        log_y: true,
                    });
                    panels.push(crosskd_train::plots::Panel {
                        title: format!("{}: validation {}", r.task.name(), first.primary_metric),
                        x_label: "epoch".to_string(),
                        series: vec![("no KD".to_string(), curves.val_primary.clone())],
                        log_y: false,
                    });
                }
            }
        }
        if !panels.is_empty() {
            plot_panels(
                &image_dir.join("results-baseline-curves.png"),
                &panels,
                (320, 260),
            )?;
            md.push_str("\n![baseline curves](img/results-baseline-curves.png)\n");
        }
        if !self.teachers.is_empty() {
            md.push_str("\nIn-house cross-task teachers (their own test metric):\n\n");
            for (teaches, s) in self.teachers {
                md.push_str(&format!(
                    "- teacher for {}: test {} {:.4} after {} steps\n",
                    teaches.name(),
                    s.primary_metric,
                    s.test.get(&s.primary_metric).copied().unwrap_or(f64::NAN),
                    s.steps
                ));
            }
        }
        md.push('\n');
        Ok(md)
    }

    fn header(&self) -> String {
        let profile = self.args.profile.name();
        let command: Vec<String> = std::env::args().skip(1).collect();
        let mut md = String::from("# Reproduction results\n\n");
        if !self.args.profile.is_evidence() {
            md.push_str(
                "> **Not evidence.** This profile runs the pipeline end to end on a budget far too small \
                 to decide the paper's claims; see `cargo xtask reproduce --profile standard` for that.\n\n",
            );
        }
        md.push_str(&format!(
            "Produced by `cargo xtask {}` ({profile} profile, {} seeds) at commit {} on {}, {}. {} cells; \
             training them took {:.1} min in all ({} trained by this invocation, {} reused from earlier ones; \
             this invocation took {:.1} min).\n\n",
            command.join(" "),
            self.seeds,
            self.source.map(|s| s.describe()).unwrap_or_else(|| "unknown (not a git checkout)".into()),
            crate::bench::report::machine_description(self.args.threads),
            today(),
            self.trained + self.reused,
            self.cell_seconds / 60.0,
            self.trained,
            self.reused,
            self.wall_seconds / 60.0
        ));
        if !self.retrained.is_empty() {
            md.push_str(&format!(
                "{} cells found on disk came from other code and were retrained (old folders kept under \
                 `stale/`): {}.\n\n",
                self.retrained.len(),
                self.retrained
                    .iter()
                    .map(|cell| format!("`{cell}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        md
    }

    fn setup(&self) -> String {
        let profile = self.args.profile.name();
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
        let mut md = format!(
            "Setup ({profile} profile). Dense tasks: {s}×{s} rendered scenes, {} training / {} validation / {} test \
             images, student `{}` (tap `bottleneck`), {} epochs, batch {}{}, {:?} lr {}, {:?} schedule. Teachers: a \
             frozen random `{}`; the same architecture trained by this command for {} epochs on a *different* task \
             (segmentation teaches depth and translation, depth teaches segmentation). Distillation: FitNets-style \
             MSE between the student's bottleneck and the teacher's default tap through a 1×1 projector in either \
             direction (the teacher map is bilinearly resized to the student's when sizes differ). Teacher-free: the \
             tail spectral regulariser. Classification: Fashion-MNIST, {} training images ({} more held out for \
             validation), {} test images, student `{}`, {} epochs, batch {}.\n\n\
             Sweep, the same number of candidates for every variant, scored on the validation split at seed 0: \
             weight decay ∈ {:?} (dense tasks) and {:?} (classification) for the no-KD baseline, the first of each for every other variant, α ∈ {:?} for distillation rows, (λ, k) ∈ {:?} for the \
             regulariser. The chosen value is in the `chosen` column; all seeds then run with it. Seed `s` fixes the \
             student's initial weights, data order and flips in every variant, so comparisons are paired: the \
             verdicts below are *better*/*worse* only when the 95% Student-t interval of the per-seed difference \
             excludes 0, else *undecided*. (The tables' `vs no KD` column is the older unpaired check: beyond the \
             sum of the two rows' standard deviations.)\n\n",
            b.train_samples,
            b.val_samples,
            b.test_samples,
            arch(&dense),
            b.epochs,
            dense.train.batch_size,
            if b.dense_augment {
                " (random horizontal flips of whole batches)"
            } else {
                ""
            },
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
            b.dense_weight_decays,
            b.weight_decays,
            b.alphas,
            b.regulariser,
            s = b.image_size,
        );
        if let Some(tap) = self.pretrained_tap() {
            md.push_str(&format!(
                "Pretrained rows: torchvision's ImageNet MobileNetV2 (`{}`, imported with `crosskd import-weights`), \
                 ImageNet input normalisation, tap `{tap}` (its last spatial tap, the trainer's default). They run \
                 only when that file exists (a fresh clone has no weights and skips them).\n\n",
                self.args.pretrained_weights.display()
            ));
        }
        for note in self.notes {
            md.push_str(&format!("> {note}\n\n"));
        }
        md
    }

    fn power(&self) -> String {
        let worst = analysis::worst_relative_half_width(self.results);
        format!(
            "Power: the widest 95% half-width of a paired difference on a primary metric is {:.2}% of the \
             no-KD mean (target ≤ {:.0}%): {}.\n\n",
            100.0 * worst,
            100.0 * HALF_WIDTH_TARGET,
            if worst <= HALF_WIDTH_TARGET {
                "**met**"
            } else {
                "**not met** — the intervals marked *over target* are too wide to resolve effects of that size"
            }
        )
    }

    /// Writes the document (and its plots next to it, under `img/`); returns the markdown.
    pub fn write(&self) -> anyhow::Result<String> {
        let dir = self
            .path
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let image_dir = dir.join("img");
        let images = self.plots(&image_dir)?;
        let mut md = self.header();
        md.push_str(&self.setup());
        md.push_str(&self.regime_section(&image_dir)?);
        md.push_str("## Tables\n\n");
        for r in self.results {
            if let Some(t) = self.tables.get(r.task.name()) {
                md.push_str(&t.to_markdown());
                md.push('\n');
                md.push_str(&analysis::paired_table(r, HALF_WIDTH_TARGET));
                md.push('\n');
            }
        }
        md.push_str("## Headline claims, as measured here\n\n");
        md.push_str(&self.power());
        for line in analysis::claims(self.results) {
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
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(self.path, &md)
            .with_context(|| format!("writing {}", self.path.display()))?;
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
