//! Paper-style markdown tables: mean ± std over seeds and the change against no distillation,
//! with a plain verdict on whether that change exceeds the seed spread (unpaired; see
//! [`super::paired`] for the paired intervals).

/// Mean and sample standard deviation (n − 1; 0 for a single value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// `mean ± std` with `digits` decimals.
pub fn format_mean_std(values: &[f64], digits: usize) -> String {
    if values.is_empty() {
        return "–".to_string();
    }
    let (m, s) = mean_std(values);
    format!("{m:.digits$} ± {s:.digits$}")
}

/// How a row compares with the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Better by more than the two rows' seed spreads together.
    Better,
    /// Worse by more than the spreads.
    Worse,
    /// The difference is within the seed spread: no conclusion.
    WithinSpread,
}

impl Verdict {
    fn text(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::WithinSpread => "within spread",
        }
    }
}

/// Compares `row` with `baseline` under a metric where larger is better or not. The difference
/// counts only when it exceeds `std(row) + std(baseline)`.
pub fn verdict(row: &[f64], baseline: &[f64], higher_is_better: bool) -> Verdict {
    let (m, s) = mean_std(row);
    let (b, sb) = mean_std(baseline);
    let gain = if higher_is_better { m - b } else { b - m };
    if gain.abs() <= s + sb || !gain.is_finite() {
        Verdict::WithinSpread
    } else if gain > 0.0 {
        Verdict::Better
    } else {
        Verdict::Worse
    }
}

/// One table row: a variant's per-seed test values.
#[derive(Debug, Clone)]
pub struct Row {
    /// The variant's label.
    pub label: String,
    /// The hyper-parameters the sweep chose.
    pub chosen: String,
    /// The primary metric, one value per seed.
    pub primary: Vec<f64>,
    /// Secondary metrics, in the order of [`Table::secondary`], one value per seed.
    pub secondary: Vec<Vec<f64>>,
    /// Effective rank of the learned projector per seed (empty without a projector).
    pub projector_rank: Vec<f64>,
}

/// One task's table.
#[derive(Debug, Clone)]
pub struct Table {
    /// The caption, e.g. `Depth on rendered scenes (test split, 3 seeds)`.
    pub caption: String,
    /// The primary metric's name.
    pub primary: String,
    /// Whether larger primary values are better.
    pub higher_is_better: bool,
    /// Secondary metrics `(name, higher is better)`.
    pub secondary: Vec<(String, bool)>,
    /// The rows; the first is the no-distillation baseline.
    pub rows: Vec<Row>,
}

fn arrow(higher_is_better: bool) -> &'static str {
    if higher_is_better {
        "↑"
    } else {
        "↓"
    }
}

impl Table {
    /// The markdown table.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("**{}**\n\n", self.caption);
        let mut header = format!(
            "| variant | chosen | {} {} | Δ vs no KD | vs no KD |",
            self.primary,
            arrow(self.higher_is_better)
        );
        for (name, hib) in &self.secondary {
            header.push_str(&format!(" {name} {} |", arrow(*hib)));
        }
        header.push_str(" projector eff. rank |\n");
        out.push_str(&header);
        out.push_str(&"|---".repeat(5 + self.secondary.len() + 1));
        out.push_str("|\n");
        let baseline = self
            .rows
            .first()
            .map(|r| r.primary.clone())
            .unwrap_or_default();
        let (base_mean, _) = mean_std(&baseline);
        for (i, row) in self.rows.iter().enumerate() {
            let (m, _) = mean_std(&row.primary);
            let (delta, against) = if i == 0 {
                ("–".to_string(), "baseline".to_string())
            } else {
                let d = m - base_mean;
                let rel = if base_mean != 0.0 {
                    100.0 * d / base_mean.abs()
                } else {
                    f64::NAN
                };
                (
                    format!("{d:+.4} ({rel:+.1}%)"),
                    verdict(&row.primary, &baseline, self.higher_is_better)
                        .text()
                        .to_string(),
                )
            };
            let mut line = format!(
                "| {} | {} | {} | {delta} | {against} |",
                row.label,
                row.chosen,
                format_mean_std(&row.primary, 4)
            );
            for values in &row.secondary {
                line.push_str(&format!(" {} |", format_mean_std(values, 4)));
            }
            let rank = if row.projector_rank.is_empty() {
                "–".to_string()
            } else {
                format_mean_std(&row.projector_rank, 1)
            };
            line.push_str(&format!(" {rank} |\n"));
            out.push_str(&line);
        }
        out
    }

    /// One sentence per teacher family comparing inverted with standard projectors (rank and
    /// metric), for the rows whose labels end in `, standard` / `, inverted`.
    pub fn projector_comparisons(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for row in &self.rows {
            let Some(family) = row.label.strip_suffix(", inverted") else {
                continue;
            };
            let Some(standard) = self
                .rows
                .iter()
                .find(|r| r.label == format!("{family}, standard"))
            else {
                continue;
            };
            let (ri, _) = mean_std(&row.projector_rank);
            let (rs, _) = mean_std(&standard.projector_rank);
            let v = verdict(&row.primary, &standard.primary, self.higher_is_better);
            lines.push(format!(
                "{family}: inverted vs standard projector — {} ({} vs {}); effective rank {ri:.1} vs {rs:.1}",
                match v {
                    Verdict::Better => "inverted better beyond the seed spread",
                    Verdict::Worse => "inverted worse beyond the seed spread",
                    Verdict::WithinSpread => "difference within the seed spread",
                },
                format_mean_std(&row.primary, 4),
                format_mean_std(&standard.primary, 4),
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(higher_is_better: bool) -> Table {
        Table {
            caption: "Toy".to_string(),
            primary: "m".to_string(),
            higher_is_better,
            secondary: vec![("s".to_string(), true)],
            rows: vec![
                Row {
                    label: "no KD".into(),
                    chosen: "–".into(),
                    primary: vec![0.5, 0.6, 0.7],
                    secondary: vec![vec![1.0, 1.0, 1.0]],
                    projector_rank: vec![],
                },
                Row {
                    label: "random teacher, standard".into(),
                    chosen: "α=1".into(),
                    primary: vec![0.55, 0.6, 0.65],
                    secondary: vec![vec![2.0, 2.0, 2.0]],
                    projector_rank: vec![10.0, 12.0, 14.0],
                },
                Row {
                    label: "random teacher, inverted".into(),
                    chosen: "α=0.1".into(),
                    primary: vec![0.9, 0.91, 0.92],
                    secondary: vec![vec![3.0, 3.0, 3.0]],
                    projector_rank: vec![3.0, 3.0, 3.0],
                },
            ],
        }
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        // Sample variance of 1..4 is 5/3.
        assert!((s - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[7.0]), (7.0, 0.0));
        assert!(mean_std(&[]).0.is_nan());
    }

    #[test]
    fn verdict_respects_direction_and_spread() {
        let base = [0.5, 0.6, 0.7]; // std 0.1
        let tight_high = [0.9, 0.9, 0.9];
        assert_eq!(verdict(&tight_high, &base, true), Verdict::Better);
        assert_eq!(verdict(&tight_high, &base, false), Verdict::Worse);
        // 0.65 vs 0.6 with spreads 0.1 + 0: inside.
        assert_eq!(verdict(&[0.65, 0.65], &base, true), Verdict::WithinSpread);
    }

    #[test]
    fn markdown_has_paper_shape() {
        let md = table(true).to_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "**Toy**");
        assert_eq!(
            lines[2],
            "| variant | chosen | m ↑ | Δ vs no KD | vs no KD | s ↑ | projector eff. rank |"
        );
        assert_eq!(lines[3], "|---|---|---|---|---|---|---|");
        assert_eq!(
            lines[4],
            "| no KD | – | 0.6000 ± 0.1000 | – | baseline | 1.0000 ± 0.0000 | – |"
        );
        assert_eq!(
            lines[6],
            "| random teacher, inverted | α=0.1 | 0.9100 ± 0.0100 | +0.3100 (+51.7%) | better | 3.0000 ± 0.0000 | 3.0 ± 0.0 |"
        );
        assert!(lines[5].contains("within spread"), "{}", lines[5]);
    }

    #[test]
    fn lower_is_better_flips_the_verdict_not_the_sign() {
        let md = table(false).to_markdown();
        let inverted = md
            .lines()
            .find(|l| l.starts_with("| random teacher, inverted"))
            .unwrap();
        assert!(
            inverted.contains("+0.3100") && inverted.contains("| worse |"),
            "{inverted}"
        );
    }

    #[test]
    fn projector_comparison_pairs_families() {
        let lines = table(true).projector_comparisons();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0]
                .starts_with("random teacher: inverted vs standard projector — inverted better"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].ends_with("effective rank 3.0 vs 12.0"),
            "{}",
            lines[0]
        );
    }
}
