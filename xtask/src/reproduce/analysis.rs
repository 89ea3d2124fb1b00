//! Paired analysis of the grid: seed `s` fixes the student's initial weights, data order and
//! augmentation stream for every variant, so each variant is compared with the baseline (and
//! inverted with standard) seed by seed, with a 95% Student-t interval over the seeds. A verdict
//! is *better* / *worse* only when the interval excludes 0.

use crosskd_train::compare::paired::{PairedDifference, PairedVerdict};
use crosskd_train::config::Direction;
use crosskd_train::RunSummary;

use super::grid::{TeacherKind, Variant};
use super::report::effective_rank;
use super::{Cell, TaskResult};

/// Singular values past this index count as the spectrum's tail (claim 3's decay measure).
pub const TAIL_FROM: usize = 8;

/// Share of the feature energy `Σσ²` beyond the first [`TAIL_FROM`] singular values.
pub fn tail_energy(singular_values: &[f64]) -> f64 {
    let total: f64 = singular_values.iter().map(|s| s * s).sum();
    if total <= 0.0 {
        return f64::NAN;
    }
    singular_values
        .iter()
        .skip(TAIL_FROM)
        .map(|s| s * s)
        .sum::<f64>()
        / total
}

fn primary(s: &RunSummary) -> f64 {
    s.test.get(&s.primary_metric).copied().unwrap_or(f64::NAN)
}

fn per_seed(cell: &Cell, f: impl Fn(&RunSummary) -> f64) -> Vec<f64> {
    cell.summaries.iter().map(f).collect()
}

fn find(result: &TaskResult, variant: Variant) -> Option<&Cell> {
    result.cells.iter().find(|c| c.variant == variant)
}

fn higher_is_better(result: &TaskResult) -> bool {
    result
        .cells
        .first()
        .and_then(|c| c.summaries.first())
        .map(|s| s.primary_higher_is_better)
        .unwrap_or(true)
}

/// The no-KD baseline's mean primary metric (the denominator of relative half-widths).
pub fn baseline_mean(result: &TaskResult) -> f64 {
    let values: Vec<f64> = result
        .cells
        .first()
        .map(|c| per_seed(c, primary))
        .unwrap_or_default();
    crosskd_train::compare::mean_std(&values).0
}

/// One paired comparison on the primary metric.
#[derive(Debug, Clone)]
pub struct PrimaryComparison {
    /// `random teacher, inverted − no KD`.
    pub what: String,
    /// The difference and its interval.
    pub difference: PairedDifference,
    /// Half-width as a share of the baseline's mean.
    pub relative_half_width: f64,
}

fn comparison(what: String, a: &Cell, b: &Cell, higher: bool, base: f64) -> PrimaryComparison {
    let difference = PairedDifference::new(&per_seed(a, primary), &per_seed(b, primary), higher);
    PrimaryComparison {
        what,
        relative_half_width: difference.half_width / base.abs(),
        difference,
    }
}

/// Every variant against no KD, then inverted against standard per teacher family.
pub fn primary_comparisons(result: &TaskResult) -> Vec<PrimaryComparison> {
    let higher = higher_is_better(result);
    let base = baseline_mean(result);
    let Some(baseline) = result.cells.first() else {
        return Vec::new();
    };
    let mut out: Vec<PrimaryComparison> = result.cells[1..]
        .iter()
        .map(|c| {
            comparison(
                format!("{} − no KD", c.variant.label()),
                c,
                baseline,
                higher,
                base,
            )
        })
        .collect();
    for kind in [
        TeacherKind::Random,
        TeacherKind::CrossTask,
        TeacherKind::Pretrained,
    ] {
        if let (Some(inv), Some(std)) = (
            find(result, Variant::with_teacher(kind, Direction::Inverted)),
            find(result, Variant::with_teacher(kind, Direction::Standard)),
        ) {
            out.push(comparison(
                format!("{}: inverted − standard", kind.name()),
                inv,
                std,
                higher,
                base,
            ));
        }
    }
    out
}

/// The widest relative half-width over every primary comparison of every task.
pub fn worst_relative_half_width(results: &[TaskResult]) -> f64 {
    results
        .iter()
        .flat_map(primary_comparisons)
        .map(|c| c.relative_half_width)
        .fold(f64::NAN, f64::max)
}

fn verdict_words(d: &PairedDifference) -> String {
    let word = match d.verdict {
        PairedVerdict::Better => "**yes**",
        PairedVerdict::Worse => "**no, the opposite**",
        PairedVerdict::Undecided => "**undecided**",
    };
    format!("{word} (paired Δ {})", d.describe(4))
}

fn claim_line(result: &TaskResult, a: Variant, b: Variant) -> Option<String> {
    let (ca, cb) = (find(result, a)?, find(result, b)?);
    let d = PairedDifference::new(
        &per_seed(ca, primary),
        &per_seed(cb, primary),
        higher_is_better(result),
    );
    Some(format!(
        "   - {}: {}",
        result.task.name(),
        verdict_words(&d)
    ))
}

/// One line per headline claim and task, every verdict from a paired interval.
pub fn claims(results: &[TaskResult]) -> Vec<String> {
    let inverted = |k| Variant::with_teacher(k, Direction::Inverted);
    let standard = |k| Variant::with_teacher(k, Direction::Standard);
    let mut out =
        vec!["1. *Cross-task teacher: the inverted projector beats the standard one.*".to_string()];
    for r in results.iter().filter(|r| r.task.is_dense()) {
        out.extend(claim_line(
            r,
            inverted(TeacherKind::CrossTask),
            standard(TeacherKind::CrossTask),
        ));
    }
    out.push("2. *Random teacher + inverted projector beats no distillation.*".to_string());
    for r in results {
        out.extend(claim_line(r, inverted(TeacherKind::Random), Variant::NO_KD));
    }
    out.push(format!(
        "3. *The inverted projector is low-rank and shrinks the student's feature spectrum.* Paired \
         over seeds; *yes* = lower with the interval excluding 0. Effective rank `exp(H(σ/Σσ))`; \
         tail energy = share of `Σσ²` past the first {TAIL_FROM} singular values."
    ));
    for r in results {
        for kind in [
            TeacherKind::Random,
            TeacherKind::CrossTask,
            TeacherKind::Pretrained,
        ] {
            let (Some(inv), Some(std), Some(base)) = (
                find(r, inverted(kind)),
                find(r, standard(kind)),
                find(r, Variant::NO_KD),
            ) else {
                continue;
            };
            let projector = |c: &Cell| per_seed(c, |s| s.projector_effective_rank);
            let student_rank =
                |c: &Cell| per_seed(c, |s| effective_rank(&s.student_singular_values));
            let tail = |c: &Cell| per_seed(c, |s| tail_energy(&s.student_singular_values));
            out.push(format!(
                "   - {} / {}: projector rank, inverted vs standard: {}; student feature rank, \
                 inverted vs no KD: {}; student tail energy, inverted vs no KD: {}",
                r.task.name(),
                kind.name(),
                verdict_words(&PairedDifference::new(
                    &projector(inv),
                    &projector(std),
                    false
                )),
                verdict_words(&PairedDifference::new(
                    &student_rank(inv),
                    &student_rank(base),
                    false
                )),
                verdict_words(&PairedDifference::new(&tail(inv), &tail(base), false)),
            ));
        }
    }
    out.push("4. *The teacher-free regulariser improves the student with no teacher.*".to_string());
    for r in results {
        out.extend(claim_line(r, Variant::TEACHER_FREE, Variant::NO_KD));
    }
    out
}

/// The paired table of one task, in markdown.
pub fn paired_table(result: &TaskResult, target: f64) -> String {
    let metric = result
        .cells
        .first()
        .and_then(|c| c.summaries.first())
        .map(|s| s.primary_metric.clone())
        .unwrap_or_default();
    let mut md = format!(
        "**{}: paired differences in test {metric} (95% interval over seeds)**\n\n\
         | comparison | Δ mean | 95% interval | half-width / no-KD mean | verdict |\n|---|---|---|---|---|\n",
        result.task.name()
    );
    for c in primary_comparisons(result) {
        let d = &c.difference;
        md.push_str(&format!(
            "| {} | {:+.4} | [{:+.4}, {:+.4}] | {:.2}%{} | {} |\n",
            c.what,
            d.mean,
            d.mean - d.half_width,
            d.mean + d.half_width,
            100.0 * c.relative_half_width,
            if c.relative_half_width <= target {
                ""
            } else {
                " (over target)"
            },
            d.verdict.text()
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_energy_is_the_share_past_the_head() {
        let mut s = vec![1.0; TAIL_FROM];
        assert_eq!(tail_energy(&s), 0.0);
        s.extend([1.0; TAIL_FROM]);
        assert!((tail_energy(&s) - 0.5).abs() < 1e-12);
        assert!(tail_energy(&[]).is_nan());
    }
}
