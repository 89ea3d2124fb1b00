//! The progress bar: epoch, step, loss, throughput and ETA, drawn only when stderr is a
//! terminal (logs and CI output stay clean).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over optimiser steps (a no-op when hidden).
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar for `total` steps starting at `done`; hidden unless `enabled` and stderr is a
    /// terminal.
    pub fn new(enabled: bool, total: u64, done: u64) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30.cyan/blue}] step {pos}/{len} {msg} {per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_position(done);
        Progress { bar: Some(bar) }
    }

    /// Records one finished step.
    pub fn step(&self, epoch: u64, loss: f64) {
        if let Some(b) = &self.bar {
            b.set_prefix(format!("epoch {}", epoch + 1));
            b.set_message(format!("loss {loss:.4}"));
            b.inc(1);
        }
    }

    /// Prints a line above the bar (e.g. the latest validation metric).
    pub fn message(&self, text: &str) {
        if let Some(b) = &self.bar {
            b.println(text);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
