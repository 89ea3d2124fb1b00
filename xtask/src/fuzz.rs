//! `cargo xtask fuzz`: every parser of outside input under seeded structured mutation for a time
//! budget per target (crates/crosskd-fuzz), with a per-target table of executions, CPU time,
//! distinct refusals and failures.

use std::time::Duration;

use anyhow::{bail, Context};
use crosskd_fuzz::{run_campaign, Budget, CampaignConfig, TARGETS};

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Wall-clock seconds per target.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Fuzz only this target (see `--list`).
    #[arg(long)]
    pub target: Option<String>,
    /// Seed of the mutation generator (runs with equal seeds and budgets in executions repeat).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// An execution taking longer than this many seconds is reported as a hang.
    #[arg(long, default_value_t = 2)]
    pub deadline: u64,
    /// List the targets and exit.
    #[arg(long)]
    pub list: bool,
}

/// Runs the campaigns and prints one row per target; fails when any target failed.
pub fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    if args.list {
        for (name, _) in TARGETS {
            println!("{name}");
        }
        return Ok(());
    }
    if !crosskd_fuzz::alloc::is_installed() {
        bail!("the counting allocator is not the global allocator: memory caps cannot be checked");
    }
    let selected: Vec<_> = TARGETS
        .iter()
        .filter(|(name, _)| args.target.as_deref().is_none_or(|t| t == *name))
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
        bail!(
            "unknown target `{}`: expected one of {names:?}",
            args.target.as_deref().unwrap_or_default()
        );
    }
    let config = CampaignConfig {
        seed: args.seed,
        budget: Budget::Time(Duration::from_secs(args.seconds)),
        deadline: Duration::from_secs(args.deadline.max(1)),
        ..CampaignConfig::default()
    };
    println!(
        "| target | executions | CPU-seconds | accepted | distinct errors | corpus | failures |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut failures = Vec::new();
    for (_, make) in selected {
        let r = run_campaign(*make, &config);
        println!(
            "| {} | {} | {:.1} | {} | {} | {} | {} |",
            r.target,
            r.executions,
            r.cpu_seconds,
            r.accepted,
            r.distinct_errors,
            r.corpus,
            r.failures.len()
        );
        for e in &r.sample_errors {
            eprintln!("  {}: refused: {e}", r.target);
        }
        failures.extend(r.failures);
    }
    for f in &failures {
        eprintln!("{f}");
    }
    if !failures.is_empty() {
        return Err(anyhow::anyhow!(
            "{} failure(s), inputs above",
            failures.len()
        ))
        .context("cargo xtask fuzz");
    }
    Ok(())
}
