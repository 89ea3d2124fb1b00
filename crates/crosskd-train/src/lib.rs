//! crosskd-train: the training library behind the `crosskd` binary — run configuration,
//! training loop, optimisers, checkpoints, metrics logs and plots.
//!
//! One TOML file ([`Config`]) describes a run; [`run_training`] trains it into a run folder
//! (resolved `config.toml`, `metrics.jsonl`, safetensors checkpoints, PNG plots,
//! `summary.json`), and [`evaluate`] scores a finished run. Runs are bit-reproducible from their
//! config and seed on one machine and thread count, also across `--resume`.
//!
//! Allowed dependencies: every crosskd library crate below it, plus candle, serde, toml, clap,
//! indicatif, plotters, signal-hook, tracing, anyhow, libc (allocator settings on glibc), hf-hub
//! (hub teachers, [`teachers`]).

pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod compare;
pub mod config;
pub mod datasets;
pub mod device;
pub mod error;
pub mod json_float;
pub mod logging;
pub mod memory;
pub mod metrics_csv;
pub mod metrics_log;
pub mod optim;
pub mod plots;
pub mod predict;
pub mod progress;
pub mod schedule;
pub mod session;
pub mod task;
pub mod task_kind;
pub mod teacher_cache;
pub mod teacher_logits;
pub mod teachers;
pub mod tensorboard;
pub mod threads;
pub mod train;

pub use config::{Config, Task};
pub use error::{Result, TrainError};
pub use train::{
    evaluate, load_run, load_run_on, run_training, run_training_with, RunOptions, RunSummary,
    StopReason,
};
