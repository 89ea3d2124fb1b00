//! Whether the baseline ran in the regime the paper's claims are about: trained to its plateau,
//! and able to overfit its few labelled images (so a regulariser has something to do). Read from
//! the no-KD runs' `metrics.jsonl`, not assumed from the budget.

use std::path::Path;

use anyhow::Context;
use crosskd_train::metrics_log::{read_records, Record};
use crosskd_train::RunSummary;

/// Share of the epochs whose validation scores count as "the end of training".
const LAST_FRACTION: f64 = 0.2;
/// The best score over the last epochs may miss the overall best by at most this (relative).
pub const PLATEAU_TOLERANCE: f64 = 0.01;
/// Final training task loss at most this times the validation task loss: the student overfits.
pub const OVERFIT_RATIO: f64 = 0.8;

/// The curves of one run that the regime checks use.
#[derive(Debug, Clone, Default)]
pub struct Curves {
    /// `(epoch + 1, primary metric)` of every validation.
    pub val_primary: Vec<(f64, f64)>,
    /// `(epoch + 1, validation task loss)`.
    pub val_loss: Vec<(f64, f64)>,
    /// `(epoch + 1 at the logged step, training task loss over the logging interval)`.
    pub train_loss: Vec<(f64, f64)>,
}

/// Reads the curves of the run in `dir` (validation records only, test excluded).
pub fn read_curves(dir: &Path, primary: &str) -> anyhow::Result<Curves> {
    let path = dir.join("metrics.jsonl");
    let records = read_records(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut curves = Curves::default();
    for record in records {
        match record {
            Record::Eval(e) if e.split == "val" => {
                let x = (e.epoch + 1) as f64;
                if let Some(v) = e.metrics.get(primary) {
                    curves.val_primary.push((x, *v));
                }
                if let Some(v) = e.metrics.get("loss") {
                    curves.val_loss.push((x, *v));
                }
            }
            Record::Train(t) => curves.train_loss.push(((t.epoch + 1) as f64, t.task_loss)),
            Record::Eval(_) => {}
        }
    }
    Ok(curves)
}

/// The two regime conditions for one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegimeCheck {
    /// How far the best score of the last 20% of epochs is from the overall best, relative to
    /// it (0 = the best is at the end).
    pub plateau_gap: f64,
    /// Final training task loss / final validation task loss.
    pub train_val_ratio: f64,
}

impl RegimeCheck {
    /// Trained to its plateau.
    pub fn plateaued(&self) -> bool {
        self.plateau_gap <= PLATEAU_TOLERANCE
    }

    /// Fits its training images clearly better than unseen ones.
    pub fn overfits(&self) -> bool {
        self.train_val_ratio <= OVERFIT_RATIO
    }
}

/// Checks `curves`; `None` when there are too few validations to say.
pub fn check(curves: &Curves, higher_is_better: bool) -> Option<RegimeCheck> {
    let last_epoch = curves.val_primary.last()?.0;
    let cutoff = last_epoch * (1.0 - LAST_FRACTION);
    let better = |a: f64, b: f64| if higher_is_better { a > b } else { a < b };
    let best_of = |values: &mut dyn Iterator<Item = f64>| {
        values.fold(None, |best: Option<f64>, v| match best {
            Some(b) if !better(v, b) => Some(b),
            _ if v.is_finite() => Some(v),
            _ => best,
        })
    };
    let overall = best_of(&mut curves.val_primary.iter().map(|p| p.1))?;
    let late = best_of(
        &mut curves
            .val_primary
            .iter()
            .filter(|p| p.0 > cutoff)
            .map(|p| p.1),
    )?;
    let plateau_gap = (late - overall).abs() / overall.abs().max(f64::MIN_POSITIVE);
    // The last logging interval's training loss against the last validation loss.
    let train = curves.train_loss.last()?.1;
    let val = curves.val_loss.last()?.1;
    Some(RegimeCheck {
        plateau_gap,
        train_val_ratio: train / val,
    })
}

/// Checks every seed of the baseline cell; runs that cannot be read count as not checked.
pub fn check_runs(summaries: &[RunSummary]) -> Vec<Option<RegimeCheck>> {
    summaries
        .iter()
        .map(|s| {
            read_curves(&s.run_dir, &s.primary_metric)
                .ok()
                .and_then(|c| check(&c, s.primary_higher_is_better))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curves(val: &[f64], train_loss: f64, val_loss: f64) -> Curves {
        Curves {
            val_primary: val
                .iter()
                .enumerate()
                .map(|(i, v)| ((i + 1) as f64, *v))
                .collect(),
            val_loss: vec![(val.len() as f64, val_loss)],
            train_loss: vec![(val.len() as f64, train_loss)],
        }
    }

    #[test]
    fn a_run_still_improving_has_not_plateaued() {
        // Higher is better; the best (0.9) is at the end: gap 0.
        let rising = curves(
            &[0.1, 0.3, 0.5, 0.7, 0.8, 0.85, 0.87, 0.88, 0.89, 0.9],
            0.5,
            1.0,
        );
        let c = check(&rising, true).unwrap();
        assert_eq!(c.plateau_gap, 0.0);
        assert!(c.plateaued());
        // Lower is better and the run peaked early then degraded by 10%: not a plateau.
        let degraded = curves(
            &[0.5, 0.3, 0.2, 0.2, 0.21, 0.21, 0.21, 0.22, 0.22, 0.22],
            0.5,
            1.0,
        );
        let c = check(&degraded, false).unwrap();
        assert!((c.plateau_gap - 0.1).abs() < 1e-12, "{c:?}");
        assert!(!c.plateaued());
    }

    #[test]
    fn overfitting_compares_the_final_losses() {
        let fits = curves(&[0.5, 0.6], 0.4, 1.0);
        assert!(check(&fits, true).unwrap().overfits());
        let underfits = curves(&[0.5, 0.6], 0.9, 1.0);
        let c = check(&underfits, true).unwrap();
        assert!((c.train_val_ratio - 0.9).abs() < 1e-12);
        assert!(!c.overfits());
        assert!(check(&Curves::default(), true).is_none());
    }
}
