//! Benchmarks run by `cargo xtask bench`; each writes its section of `docs/benchmarks.md`.

pub mod data;
pub mod report;

/// Options of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which benchmark: train-step, ops, render or loader (all when omitted).
    pub which: Option<String>,
    /// CPU threads used by every framework compared.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

/// Runs the selected benchmarks.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    // candle's gemm and rayon both read RAYON_NUM_THREADS; it must be set before the first use.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    match args.which.as_deref() {
        Some("render") => data::render(args.threads),
        Some("loader") => data::loader(args.threads),
        Some("train-step") | Some("ops") => anyhow::bail!(
            "`bench {}` is not written yet; use `cargo bench -p crosskd-ops --bench ops` for single convolutions",
            args.which.as_deref().unwrap_or_default()
        ),
        Some(other) => anyhow::bail!("unknown benchmark `{other}`: expected train-step, ops, render or loader"),
        None => {
            data::render(args.threads)?;
            data::loader(args.threads)
        }
    }
}
