//! Every fuzz target for a fixed, deterministic number of executions: any panic, hang or
//! over-allocation fails the test and prints the target and the (minimised) input as hex.

use crosskd_fuzz::{run_campaign, Budget, CampaignConfig, CountingAllocator, TARGETS};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Executions per target: about 5 s for all targets in the test profile on 2 idle cores.
const EXECUTIONS: u64 = 2000;

#[test]
fn every_target_survives_its_fixed_budget() {
    assert!(
        crosskd_fuzz::alloc::is_installed(),
        "the counting allocator must be the global allocator"
    );
    let config = CampaignConfig {
        seed: 20240601,
        budget: Budget::Executions(EXECUTIONS),
        ..CampaignConfig::default()
    };
    let mut failures = Vec::new();
    for (name, make) in TARGETS {
        let start = std::time::Instant::now();
        let report = run_campaign(make, &config);
        eprintln!(
            "{name}: {} executions ({} accepted, {} distinct errors) in {:.2} s",
            report.executions,
            report.accepted,
            report.distinct_errors,
            start.elapsed().as_secs_f64()
        );
        failures.extend(report.failures);
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
