//! `cargo xtask`: project automation for crosskd — fetch teachers, reproduce the paper's claims,
//! benchmarks, rendering sample scenes, and fuzzing the parsers of outside input.

mod bench;
mod fetch;
mod fuzz;
mod render;
mod reproduce;

use clap::{Parser, Subcommand};

/// Counts heap bytes per fuzz execution (`cargo xtask fuzz`'s memory cap); threads outside an
/// execution pay one thread-local read per allocation.
#[global_allocator]
static ALLOCATOR: crosskd_fuzz::CountingAllocator = crosskd_fuzz::CountingAllocator;

/// crosskd project automation.
#[derive(Parser)]
#[command(name = "xtask", about = "crosskd project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run benchmarks (train-step, students, ops, render, loader) and update docs/benchmarks.md.
    Bench(bench::BenchArgs),
    /// Fuzz every parser of outside input (IDX, PNG, .pth, safetensors, TOML, JSON lines).
    Fuzz(fuzz::FuzzArgs),
    /// Download the default teachers (models/teachers.toml) into the hf-hub cache and verify them.
    FetchTeachers(crosskd_train::cli::FetchTeachersArgs),
    /// Run the reproduction grid: quick (the pipeline, ~15 min on 2 cores, report beside its
    /// runs), standard (the evidence, ~90 min, writes docs/results.md) or full (for a GPU).
    Reproduce(reproduce::ReproduceArgs),
    /// Render procedural scenes to PNGs (RGB, colourised depth, palette labels side by side).
    Render(render::RenderArgs),
}

fn main() -> anyhow::Result<()> {
    crosskd_train::memory::keep_freed_memory();
    match Cli::parse().command {
        Command::Bench(args) => bench::run(&args),
        Command::Render(args) => render::run(&args),
        Command::FetchTeachers(args) => fetch::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Reproduce(args) => reproduce::run(&args),
    }
}
