//! Paired differences over seeds: when seed `s` fixes a run's initial weights, data order and
//! augmentation for every variant, the per-seed difference `variant − baseline` removes most of
//! the seed-to-seed noise that an unpaired comparison of two means carries.
//!
//! Reported as the mean difference with a 95% confidence interval from Student's t over the
//! seeds, and a verdict that is *better* or *worse* only when the interval excludes 0.

/// Two-sided 95% quantiles of Student's t for 1–30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The 0.975 quantile of Student's t with `df` degrees of freedom (table up to 30, then the
/// Cornish–Fisher expansion around the normal quantile, within 1e-3 of the exact value).
pub fn t_975(df: usize) -> f64 {
    match df {
        0 => f64::NAN,
        1..=30 => T_975[df - 1],
        _ => {
            let z: f64 = 1.959_964;
            let v = df as f64;
            z + (z.powi(3) + z) / (4.0 * v)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
        }
    }
}

/// What an interval says about a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairedVerdict {
    /// The interval lies on the better side of 0.
    Better,
    /// The interval lies on the worse side of 0.
    Worse,
    /// The interval contains 0 (or there are fewer than two pairs).
    Undecided,
}

impl PairedVerdict {
    /// The word used in tables.
    pub fn text(self) -> &'static str {
        match self {
            PairedVerdict::Better => "better",
            PairedVerdict::Worse => "worse",
            PairedVerdict::Undecided => "undecided",
        }
    }
}

/// The paired difference of a variant against a baseline over matching seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedDifference {
    /// Number of seed pairs.
    pub pairs: usize,
    /// Mean of `variant − baseline`.
    pub mean: f64,
    /// Half-width of the 95% interval (`t · sd / √n`); NaN with fewer than two pairs.
    pub half_width: f64,
    /// The verdict under the metric's direction.
    pub verdict: PairedVerdict,
}

impl PairedDifference {
    /// Pairs `variant[i]` with `baseline[i]` (same seed), for a metric where larger is better
    /// or not. Pairs where either value is not finite are left out.
    pub fn new(variant: &[f64], baseline: &[f64], higher_is_better: bool) -> Self {
        let diffs: Vec<f64> = variant
            .iter()
            .zip(baseline)
            .map(|(v, b)| v - b)
            .filter(|d| d.is_finite())
            .collect();
        let (mean, sd) = super::table::mean_std(&diffs);
        let n = diffs.len();
        let half_width = if n >= 2 {
            t_975(n - 1) * sd / (n as f64).sqrt()
        } else {
            f64::NAN
        };
        let (lo, hi) = (mean - half_width, mean + half_width);
        let verdict = if !(half_width.is_finite()) {
            PairedVerdict::Undecided
        } else if lo > 0.0 {
            if higher_is_better {
                PairedVerdict::Better
            } else {
                PairedVerdict::Worse
            }
        } else if hi < 0.0 {
            if higher_is_better {
                PairedVerdict::Worse
            } else {
                PairedVerdict::Better
            }
        } else {
            PairedVerdict::Undecided
        };
        PairedDifference {
            pairs: n,
            mean,
            half_width,
            verdict,
        }
    }

    /// `+0.0123 ± 0.0045 (n = 5)`.
    pub fn describe(&self, digits: usize) -> String {
        format!(
            "{:+.digits$} ± {:.digits$} (n = {})",
            self.mean, self.half_width, self.pairs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_tables_and_approach_the_normal() {
        assert_eq!(t_975(1), 12.706);
        assert_eq!(t_975(10), 2.228);
        // Exact values: df 40 → 2.0211, df 120 → 1.9799.
        assert!((t_975(40) - 2.0211).abs() < 1e-3, "{}", t_975(40));
        assert!((t_975(120) - 1.9799).abs() < 1e-3, "{}", t_975(120));
        assert!(t_975(0).is_nan());
    }

    #[test]
    fn pairing_removes_the_shared_seed_noise() {
        // Seed effects of ±0.1 swamp a constant gain of 0.01 in an unpaired comparison, but
        // every pair shows it.
        let baseline = [0.50, 0.70, 0.60, 0.40, 0.80];
        let variant: Vec<f64> = baseline
            .iter()
            .zip([0.011, 0.009, 0.010, 0.012, 0.008])
            .map(|(b, g)| b + g)
            .collect();
        assert_eq!(
            super::super::table::verdict(&variant, &baseline, true),
            super::super::table::Verdict::WithinSpread
        );
        let d = PairedDifference::new(&variant, &baseline, true);
        assert_eq!(d.pairs, 5);
        assert!((d.mean - 0.01).abs() < 1e-12);
        // sd of the gains is 0.00158; t(4) = 2.776; half-width 0.00196.
        assert!((d.half_width - 2.776 * 0.001_581_14 / 5f64.sqrt()).abs() < 1e-6);
        assert_eq!(d.verdict, PairedVerdict::Better);
        assert_eq!(
            PairedDifference::new(&variant, &baseline, false).verdict,
            PairedVerdict::Worse
        );
    }

    #[test]
    fn an_interval_containing_zero_is_undecided() {
        let d = PairedDifference::new(&[1.0, 2.0, 3.0], &[1.5, 1.5, 2.5], true);
        assert_eq!(d.verdict, PairedVerdict::Undecided);
        let one = PairedDifference::new(&[1.0], &[0.0], true);
        assert_eq!((one.pairs, one.verdict), (1, PairedVerdict::Undecided));
        assert!(one.half_width.is_nan());
    }
}
