//! Benchmarks run by `cargo xtask bench`; each writes its section of `docs/benchmarks.md`.

pub mod data;
pub mod distill;
pub mod report;
pub mod students;
pub mod students_row;
pub mod train_step;

use crosskd_train::device::DeviceChoice;
use crosskd_train::threads::on_compute_pool;

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which benchmark: train-step, students, distill, ops, render or loader (all but students
    /// when omitted).
    pub which: Option<String>,
    /// CPU threads used by every framework compared.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// train-step only: time the crosskd column and its per-op breakdown alone (no candle or
    /// PyTorch column, docs/benchmarks.md left as it is) — the loop for working on the ops.
    #[arg(long)]
    pub crosskd_only: bool,
    /// train-step only: where the crosskd, candle and PyTorch columns run — cpu, cuda (GPU 0) or
    /// cuda:N (needs xtask built with `--features cuda` and a GPU).
    #[arg(long, default_value = "cpu", value_parser = DeviceChoice::parse)]
    pub device: DeviceChoice,
    /// students only: runs of each side per row (the median run is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// students only: measure this row alone and print its JSON line (the bench runs every row
    /// and side in a process of its own this way).
    #[arg(long, hide = true)]
    pub row: Option<String>,
    /// students only, with `--row`: `crosskd` (the timed step) or `trainer` (the trainer's loop).
    #[arg(long, hide = true, default_value = "crosskd")]
    pub part: String,
}

/// Runs the selected benchmarks.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    // candle's gemm and rayon both read RAYON_NUM_THREADS; it must be set before the first use.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    crosskd_train::threads::apply(args.threads);
    if args.device != DeviceChoice::Cpu && args.which.as_deref() != Some("train-step") {
        anyhow::bail!(
            "--device {} applies to `cargo xtask bench train-step` only: render, loader and ops \
             are CPU benchmarks",
            args.device.label()
        );
    }
    match args.which.as_deref() {
        Some("render") => data::render(args.threads),
        Some("loader") => data::loader(args.threads),
        // Every column on a compute thread, as `run_training_with` runs the trainer.
        Some("train-step") if args.crosskd_only => {
            on_compute_pool(|| train_step::run_crosskd_only(args.threads, args.device))
        }
        Some("train-step") => on_compute_pool(|| train_step::run(args.threads, args.device)),
        Some("distill") => distill::run(args.threads),
        Some("students") => match &args.row {
            Some(row) => students_row::run_part(row, &args.part, args.threads),
            None => students::run(args.threads, args.repeats),
        },
        Some("ops") => ops(args.threads),
        Some(other) => {
            anyhow::bail!(
                "unknown benchmark `{other}`: expected train-step, students, distill, ops, render or loader"
            )
        }
        None => {
            on_compute_pool(|| train_step::run(args.threads, DeviceChoice::Cpu))?;
            distill::run(args.threads)?;
            data::render(args.threads)?;
            data::loader(args.threads)
        }
    }
}

/// `cargo xtask bench ops`: the criterion benchmarks of single ops (convolutions, pooling, norms).
fn ops(threads: usize) -> anyhow::Result<()> {
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "-p", "crosskd-ops", "--bench", "ops"])
            .env("RAYON_NUM_THREADS", threads.to_string())
            .status()?;
    anyhow::ensure!(
        status.success(),
        "`cargo bench -p crosskd-ops --bench ops` failed: {status}"
    );
    Ok(())
}
