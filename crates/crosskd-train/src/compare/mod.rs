//! Comparing runs: mean ± std per variant over seeds, and paired differences with 95% intervals
//! where seeds match. One module for `crosskd compare` and the reproduction's report
//! (`cargo xtask reproduce`), so both state results the same way.

pub mod paired;
pub mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use paired::{t_975, PairedDifference, PairedVerdict};
pub use table::{format_mean_std, mean_std, verdict, Row, Table, Verdict};

use crate::config::{Config, TeacherConfig};
use crate::error::{Result, TrainError};
use crate::train::{load_run_config, RunSummary};

/// The secondary metrics shown beside a task's primary one, with whether larger is better. One
/// list for `crosskd compare` and the reproduction's tables.
pub fn secondary_metrics(task: crate::Task) -> Vec<(&'static str, bool)> {
    use crate::Task;
    match task {
        Task::Depth => vec![("delta1", true), ("rmse", false)],
        Task::Segmentation => vec![("pixel_accuracy", true)],
        Task::Translation => vec![("psnr", true), ("l1", false)],
        Task::Classification => vec![("top5", true)],
    }
}

/// One finished run as `compare` reads it.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The run folder.
    pub dir: PathBuf,
    /// Its resolved config.
    pub config: Config,
    /// Its summary.
    pub summary: RunSummary,
}

/// Reads the config and summary of each run folder; a folder without a finished run is an error
/// naming it.
pub fn read_runs(dirs: &[PathBuf]) -> Result<Vec<RunResult>> {
    dirs.iter()
        .map(|dir| {
            let config = load_run_config(dir)?;
            let path = dir.join("summary.json");
            let text = std::fs::read_to_string(&path).map_err(|e| TrainError::RunFolder {
                path: path.clone(),
                message: format!("no summary (the run has not finished): {e}"),
            })?;
            let summary: RunSummary =
                serde_json::from_str(&text).map_err(|e| TrainError::RunFolder {
                    path,
                    message: format!("unreadable summary: {e}"),
                })?;
            Ok(RunResult {
                dir: dir.clone(),
                config,
                summary,
            })
        })
        .collect()
}

/// What makes runs the same variant: the config without its seed (and without execution
/// settings, which [`Config::hash`] already leaves out).
fn variant_key(config: &Config) -> String {
    let mut c = config.clone();
    c.seed = 0;
    if let TeacherConfig::Random { seed, .. } = &mut c.teacher {
        *seed = None;
    }
    c.hash()
}

/// A short human label: teacher, projector direction and regulariser.
fn variant_label(config: &Config) -> String {
    let teacher = match &config.teacher {
        TeacherConfig::None => None,
        TeacherConfig::Random { .. } => Some("random teacher"),
        TeacherConfig::Checkpoint { .. } => Some("checkpoint teacher"),
        TeacherConfig::Pretrained { .. } => Some("pretrained teacher"),
    };
    let method = serde_json::to_value(&config.distill).unwrap_or_default();
    let direction = method
        .get("direction")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_string();
    let regulariser = config.regulariser.map(|r| {
        serde_json::to_value(r)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
            .unwrap_or_default()
    });
    let mut parts = Vec::new();
    match teacher {
        Some(t) if !direction.is_empty() => parts.push(format!("{t}, {direction}")),
        Some(t) => parts.push(t.to_string()),
        None => {}
    }
    if let Some(r) = regulariser {
        parts.push(format!("regulariser {r}"));
    }
    if parts.is_empty() {
        "no KD".to_string()
    } else {
        parts.join(", ")
    }
}

/// A comparison of variants on one task.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The mean ± std table; the first row is the baseline.
    pub table: Table,
    /// Per row after the first: the paired difference against the baseline on the primary
    /// metric, when at least two seeds match.
    pub paired: Vec<(String, Option<PairedDifference>)>,
    /// Seeds of each row, in the order of the table's values.
    pub seeds: Vec<Vec<u64>>,
}

/// Groups `runs` (one task) into variants and compares them. The baseline is the variant
/// without teacher and regulariser when present, else the first variant given.
pub fn compare(runs: &[RunResult]) -> Result<Comparison> {
    let first = runs
        .first()
        .ok_or_else(|| TrainError::config("runs", "expected at least one run folder"))?;
    if let Some(other) = runs.iter().find(|r| r.config.task != first.config.task) {
        return Err(TrainError::RunFolder {
            path: other.dir.clone(),
            message: format!(
                "task {} differs from {} of {}: compare runs of one task",
                other.config.task.name(),
                first.config.task.name(),
                first.dir.display()
            ),
        });
    }
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&RunResult>> = BTreeMap::new();
    for r in runs {
        let key = variant_key(&r.config);
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    if let Some(i) = order.iter().position(|k| {
        let c = &groups[k][0].config;
        !c.teacher.is_some() && c.regulariser.is_none()
    }) {
        let base = order.remove(i);
        order.insert(0, base);
    }
    let primary = first.summary.primary_metric.clone();
    let higher = first.summary.primary_higher_is_better;
    let secondary = secondary_metrics(first.config.task);
    let mut rows = Vec::new();
    let mut seeds = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for key in &order {
        let mut members = groups[key].clone();
        members.sort_by_key(|r| r.config.seed);
        let mut label = variant_label(&members[0].config);
        if labels.contains(&label) {
            label = format!("{label} [{}]", &key[..8]);
        }
        labels.push(label.clone());
        let value = |r: &RunResult, k: &str| r.summary.test.get(k).copied().unwrap_or(f64::NAN);
        rows.push(Row {
            label,
            chosen: "–".into(),
            primary: members.iter().map(|r| value(r, &primary)).collect(),
            secondary: secondary
                .iter()
                .map(|(k, _)| members.iter().map(|r| value(r, k)).collect())
                .collect(),
            projector_rank: if members[0].config.teacher.is_some() {
                members
                    .iter()
                    .map(|r| r.summary.projector_effective_rank)
                    .collect()
            } else {
                Vec::new()
            },
        });
        seeds.push(members.iter().map(|r| r.config.seed).collect::<Vec<_>>());
    }
    let paired = (1..rows.len())
        .map(|i| {
            let matched: Vec<(f64, f64)> = seeds[i]
                .iter()
                .zip(&rows[i].primary)
                .filter_map(|(s, v)| {
                    let j = seeds[0].iter().position(|b| b == s)?;
                    Some((*v, rows[0].primary[j]))
                })
                .collect();
            let d = (matched.len() >= 2).then(|| {
                let (v, b): (Vec<f64>, Vec<f64>) = matched.into_iter().unzip();
                PairedDifference::new(&v, &b, higher)
            });
            (rows[i].label.clone(), d)
        })
        .collect();
    let caption = format!(
        "{} — test split, mean ± std over seeds",
        first.config.task.name()
    );
    Ok(Comparison {
        table: Table {
            caption,
            primary,
            higher_is_better: higher,
            secondary: secondary.iter().map(|(k, h)| (k.to_string(), *h)).collect(),
            rows,
        },
        paired,
        seeds,
    })
}

impl Comparison {
    /// The table and the paired differences as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = self.table.to_markdown();
        if !self.paired.is_empty() {
            out.push_str(&format!(
                "\nPaired difference of {} against {} over matching seeds (mean ± 95% half-width, Student t):\n\n",
                self.table.primary,
                self.table.rows[0].label
            ));
            out.push_str("| variant | difference | verdict |\n|---|---|---|\n");
            for (label, d) in &self.paired {
                let (text, verdict) = match d {
                    Some(d) => (d.describe(4), d.verdict.text()),
                    None => ("fewer than 2 matching seeds".to_string(), "undecided"),
                };
                out.push_str(&format!("| {label} | {text} | {verdict} |\n"));
            }
        }
        out
    }

    /// One CSV row per variant: label, seeds, mean and std of the primary metric, and the paired
    /// difference, half-width and verdict.
    pub fn to_csv(&self) -> String {
        let mut out =
            String::from("variant,seeds,n,mean,std,paired_difference,paired_half_width,verdict\n");
        for (i, row) in self.table.rows.iter().enumerate() {
            let (m, s) = mean_std(&row.primary);
            let seeds: Vec<String> = self.seeds[i].iter().map(u64::to_string).collect();
            let (d, h, v) = match i.checked_sub(1).and_then(|j| self.paired[j].1.as_ref()) {
                Some(d) => (
                    format!("{:?}", d.mean),
                    format!("{:?}", d.half_width),
                    d.verdict.text(),
                ),
                None if i == 0 => (String::new(), String::new(), "baseline"),
                None => (String::new(), String::new(), "undecided"),
            };
            out.push_str(&format!(
                "\"{}\",{},{},{m:?},{s:?},{d},{h},{v}\n",
                row.label.replace('"', "'"),
                seeds.join(" "),
                row.primary.len()
            ));
        }
        out
    }
}

/// Reads the run folders and compares them (see [`compare`]).
pub fn compare_dirs(dirs: &[PathBuf]) -> Result<Comparison> {
    compare(&read_runs(dirs)?)
}

/// Expands arguments that are folders of run folders (e.g. `runs/reproduce/runs`) into the
/// run folders inside them; a run folder is kept as it is.
pub fn expand_run_dirs(args: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for a in args {
        if a.join("config.toml").exists() || !a.is_dir() {
            out.push(a.clone());
            continue;
        }
        let mut inner: Vec<PathBuf> = std::fs::read_dir(a)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("summary.json").exists())
            .collect();
        inner.sort();
        out.extend(inner);
    }
    out
}
