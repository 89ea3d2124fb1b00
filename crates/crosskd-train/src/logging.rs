//! Log output of the binaries: `tracing` to stderr, its level from `-v`/`-q` or `RUST_LOG`.
//!
//! Command results (metrics tables, `wrote …` lines) go to stdout with `println!`; everything
//! about the run's progress goes through `tracing`, so `-q` silences it, `-v` adds detail and
//! `RUST_LOG=crosskd_train=debug,crosskd_models=trace` picks per crate.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Verbosity flags shared by every binary.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Verbosity {
    /// More log output (-v: debug, -vv: trace). `RUST_LOG`, when set, takes precedence.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (-q: warnings and errors only, -qq: errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

impl Verbosity {
    /// The filter directive these flags stand for: the crosskd crates at the chosen level, other
    /// crates at `warn`.
    pub fn directive(&self) -> String {
        let level = match (self.verbose, self.quiet) {
            (0, 0) => "info",
            (1, _) => "debug",
            (v, _) if v >= 2 => "trace",
            (_, 1) => "warn",
            _ => "error",
        };
        let crates = [
            "crosskd",
            "crosskd_train",
            "crosskd_models",
            "crosskd_data",
            "crosskd_losses",
            "crosskd_projectors",
            "crosskd_heads",
            "crosskd_ops",
            "xtask",
            "train_depth",
            "train_segmentation",
            "train_translation",
            "train_classification",
        ];
        let mut d = String::from("warn");
        for c in crates {
            d.push_str(&format!(",{c}={level}"));
        }
        d
    }
}

/// Installs the stderr logger (once; later calls are no-ops). `RUST_LOG` overrides the flags.
pub fn init(verbosity: Verbosity) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(verbosity.directive()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes are noise in log files, nohup.out and CI output.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_levels() {
        let d = |verbose, quiet| Verbosity { verbose, quiet }.directive();
        assert!(d(0, 0).contains("crosskd_train=info"));
        assert!(d(1, 0).contains("crosskd_train=debug"));
        assert!(d(3, 0).contains("crosskd_train=trace"));
        assert!(d(0, 1).contains("crosskd_train=warn"));
        assert!(d(0, 2).contains("crosskd_train=error"));
        assert!(d(0, 0).starts_with("warn,"));
    }
}
