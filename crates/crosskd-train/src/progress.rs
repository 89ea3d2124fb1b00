//! Progress of a run: a bar (epoch, step, loss, throughput, ETA) when stderr is a terminal, and
//! otherwise (nohup, SLURM, CI) one log line per logging interval with the same facts, so a run
//! off a terminal is never silent until it ends.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress over optimiser steps: a bar, log lines, or nothing (when disabled).
pub struct Progress {
    bar: Option<ProgressBar>,
    /// Log lines instead of a bar (enabled, stderr not a terminal).
    lines: bool,
    total: u64,
    started_at_step: u64,
    started: Instant,
}

impl Progress {
    /// A bar for `total` steps starting at `done`; hidden unless `enabled` and stderr is a
    /// terminal.
    pub fn new(enabled: bool, total: u64, done: u64) -> Self {
        let mut progress = Progress {
            bar: None,
            lines: false,
            total,
            started_at_step: done,
            started: Instant::now(),
        };
        if !enabled {
            return progress;
        }
        if !std::io::stderr().is_terminal() {
            progress.lines = true;
            return progress;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30.cyan/blue}] step {pos}/{len} {msg} {per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_position(done);
        progress.bar = Some(bar);
        progress
    }

    /// One line per logging interval when there is no bar: step, epoch, losses, throughput, ETA.
    pub fn interval(&self, record: &crate::metrics_log::TrainRecord) {
        if !self.lines {
            return;
        }
        let done = record.step.saturating_sub(self.started_at_step);
        let secs = self.started.elapsed().as_secs_f64();
        let eta = if done > 0 {
            secs / done as f64 * self.total.saturating_sub(record.step) as f64
        } else {
            0.0
        };
        tracing::info!(
            "step {}/{} epoch {} loss {:.4} (task {:.4}, distill {:.4}) lr {:.3e} {:.0} samples/s ETA {}",
            record.step,
            self.total,
            record.epoch + 1,
            record.total_loss,
            record.task_loss,
            record.distill_total,
            record.lr,
            record.samples_per_s,
            clock(eta)
        );
    }

    /// Records one finished step.
    pub fn step(&self, epoch: u64, loss: f64) {
        if let Some(b) = &self.bar {
            b.set_prefix(format!("epoch {}", epoch + 1));
            b.set_message(format!("loss {loss:.4}"));
            b.inc(1);
        }
    }

    /// Prints a line above the bar, or logs it without one (e.g. the latest validation metric).
    pub fn message(&self, text: &str) {
        if let Some(b) = &self.bar {
            b.println(text);
        } else if self.lines {
            tracing::info!("{text}");
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Seconds as `1h02m03s`, `2m03s` or `3s`.
fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, sec) => format!("{h}h{m:02}m{sec:02}s"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clock_reads_like_a_duration() {
        assert_eq!(super::clock(3.4), "3s");
        assert_eq!(super::clock(123.0), "2m03s");
        assert_eq!(super::clock(3723.0), "1h02m03s");
    }
}
