//! Learning-rate schedules with linear warm-up. The rate is a pure function of the step, so a
//! resumed run needs no schedule state.

use std::f64::consts::PI;

use crate::config::{ScheduleConfig, ScheduleKind};

/// The learning rate for optimiser step `step` (0-based) of `total` steps, with peak `lr`.
///
/// - warm-up (all but one-cycle): `lr · (step+1)/warmup` for `step < warmup`;
/// - `constant`: `lr`;
/// - `step`: `lr · gamma^⌊(step − warmup)/step_size⌋`;
/// - `cosine`: `lr · (f + (1 − f)·(1 + cos(π·p))/2)`, `p` the progress after warm-up in [0, 1],
///   `f = min_lr_factor`;
/// - `one-cycle`: linear from `lr/25` to `lr` over `pct_start` of the run, then cosine down to
///   `f · lr`.
pub fn learning_rate(schedule: &ScheduleConfig, lr: f64, step: u64, total: u64) -> f64 {
    let total = total.max(1);
    let f = schedule.min_lr_factor;
    if schedule.kind == ScheduleKind::OneCycle {
        let rise = ((total as f64) * schedule.pct_start).max(1.0);
        let s = step as f64;
        if s < rise {
            let start = lr / 25.0;
            return start + (lr - start) * (s / rise);
        }
        let p = ((s - rise) / ((total as f64 - rise).max(1.0))).min(1.0);
        return lr * (f + (1.0 - f) * (1.0 + (PI * p).cos()) / 2.0);
    }
    let warmup = schedule.warmup_steps;
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let after = step - warmup;
    match schedule.kind {
        ScheduleKind::Constant => lr,
        ScheduleKind::Step => lr * schedule.gamma.powi((after / schedule.step_size) as i32),
        ScheduleKind::Cosine => {
            let span = total.saturating_sub(warmup).max(1) as f64;
            let p = (after as f64 / span).min(1.0);
            lr * (f + (1.0 - f) * (1.0 + (PI * p).cos()) / 2.0)
        }
        ScheduleKind::OneCycle => lr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: ScheduleKind) -> ScheduleConfig {
        ScheduleConfig {
            kind,
            ..ScheduleConfig::default()
        }
    }

    #[test]
    fn warmup_rises_linearly_to_the_peak() {
        let s = ScheduleConfig {
            warmup_steps: 4,
            ..cfg(ScheduleKind::Constant)
        };
        let rates: Vec<f64> = (0..6).map(|i| learning_rate(&s, 1.0, i, 100)).collect();
        assert_eq!(rates, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn step_decay_multiplies_by_gamma() {
        let s = ScheduleConfig {
            step_size: 10,
            gamma: 0.5,
            ..cfg(ScheduleKind::Step)
        };
        assert_eq!(learning_rate(&s, 2.0, 9, 100), 2.0);
        assert_eq!(learning_rate(&s, 2.0, 10, 100), 1.0);
        assert_eq!(learning_rate(&s, 2.0, 25, 100), 0.5);
    }

    #[test]
    fn cosine_goes_from_peak_to_floor() {
        let s = ScheduleConfig {
            min_lr_factor: 0.1,
            ..cfg(ScheduleKind::Cosine)
        };
        assert!((learning_rate(&s, 1.0, 0, 100) - 1.0).abs() < 1e-12);
        // Half way, cos(π/2) = 0: f + (1 − f)/2.
        assert!((learning_rate(&s, 1.0, 50, 100) - 0.55).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 100, 100) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn one_cycle_peaks_after_pct_start() {
        let s = ScheduleConfig {
            pct_start: 0.25,
            min_lr_factor: 0.0,
            ..cfg(ScheduleKind::OneCycle)
        };
        assert!((learning_rate(&s, 1.0, 0, 100) - 0.04).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 25, 100) - 1.0).abs() < 1e-12);
        assert!(learning_rate(&s, 1.0, 99, 100) < 0.01);
    }
}
