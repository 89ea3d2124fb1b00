//! crosskd-fuzz: fuzzing of every crosskd parser of outside input on the stable toolchain (no
//! libFuzzer): IDX, PNG/JPEG depth and label maps, PyTorch `.pth` (zip and legacy pickle),
//! safetensors checkpoints and feature-cache shards, the cache manifest, TOML configs and
//! `metrics.jsonl`.
//!
//! - [`mutate`]: seeded structured mutation (bit flips, insertion, deletion, splicing, integer
//!   boundaries in 1/2/4/8-byte fields, truncation, length-field inflation, format tokens);
//! - [`runner`]: campaigns — each execution in a worker thread under `catch_unwind`, with a
//!   deadline (hangs) and a memory cap proportional to the input (over-allocation);
//! - [`alloc`]: the counting global allocator behind the memory cap;
//! - [`targets`]: one target per parser, seeded with real files of its format.
//!
//! `cargo test -p crosskd-fuzz` runs every target for a fixed, deterministic number of
//! executions; `cargo xtask fuzz --seconds N` runs longer.
//!
//! Allowed dependencies: every crosskd library crate (it sits at the top, beside xtask, and
//! nothing but xtask depends on it), candle, safetensors, image, flate2, zip, serde_json, sha2,
//! hex, rand, rand_chacha, tempfile, thiserror, libc.

pub mod alloc;
pub mod mutate;
pub mod runner;
pub mod targets;

pub use alloc::CountingAllocator;
pub use runner::{
    run_campaign, run_one, Budget, CampaignConfig, CampaignReport, Failure, FailureKind,
};
pub use targets::{MakeTarget, Target, TARGETS};
