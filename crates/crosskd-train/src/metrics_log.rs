//! `metrics.jsonl`: one JSON object per line, a `train` line per logging interval and an `eval`
//! line per evaluation; the same records go to TensorBoard event files and `metrics.csv`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::tensorboard::EventWriter;

/// Loss terms averaged over a logging interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    /// Optimiser steps completed.
    pub step: u64,
    /// Epoch of the last step (0-based).
    pub epoch: u64,
    /// The task loss `L_task`.
    #[serde(with = "crate::json_float::plain")]
    pub task_loss: f64,
    /// The distillation loss `L_distill` (before `alpha`); 0 without a teacher.
    #[serde(with = "crate::json_float::plain")]
    pub distill_total: f64,
    /// Its knowledge-transfer term `‖Uᵀ Z_s − S Vᵀ P‖²/n` (MSE distance only, else absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::json_float::optional"
    )]
    pub transfer: Option<f64>,
    /// Its spectral term `‖(I − Π_t) Z_s‖²/n` (MSE distance only, else absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::json_float::optional"
    )]
    pub spectral: Option<f64>,
    /// The logit-KD term `T²·KL(p_t ‖ p_s)` (before its weight; logit KD only, else absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::json_float::optional"
    )]
    pub logit_kd: Option<f64>,
    /// The teacher-free regulariser `R(Z_s)` (before its weight); 0 when off.
    #[serde(with = "crate::json_float::plain")]
    pub regulariser: f64,
    /// `L_task + alpha · L_distill + λ · R`.
    #[serde(with = "crate::json_float::plain")]
    pub total_loss: f64,
    /// Learning rate of the last step.
    #[serde(with = "crate::json_float::plain")]
    pub lr: f64,
    /// Training throughput over the interval. Depends on the machine: excluded from
    /// reproducibility comparisons.
    #[serde(with = "crate::json_float::plain")]
    pub samples_per_s: f64,
}

/// Every metric of one evaluation, with the spectra used by the plots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Optimiser steps completed.
    pub step: u64,
    /// Epoch (0-based) of the last step.
    pub epoch: u64,
    /// `val` or `test`.
    pub split: String,
    /// Metric name → value (e.g. `abs_rel`, `delta1`, `miou`, `top1`, `psnr`, and `loss`).
    #[serde(with = "crate::json_float::map")]
    pub metrics: BTreeMap<String, f64>,
    /// Singular values of the projector's weight matrix, largest first (empty without one).
    #[serde(default, with = "crate::json_float::list")]
    pub projector_singular_values: Vec<f64>,
    /// Singular values of the student's distilled feature on a validation batch (rows = samples ×
    /// positions), largest first.
    #[serde(default, with = "crate::json_float::list")]
    pub student_singular_values: Vec<f64>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// A logging-interval line.
    Train(TrainRecord),
    /// An evaluation line.
    Eval(EvalRecord),
}

impl Record {
    /// The step the record belongs to.
    pub fn step(&self) -> u64 {
        match self {
            Record::Train(r) => r.step,
            Record::Eval(r) => r.step,
        }
    }
}

/// Appends records to `metrics.jsonl`, flushing every line, and mirrors them into the run
/// folder's TensorBoard event file ([`crate::tensorboard`]) and, on request, `metrics.csv`
/// ([`crate::metrics_csv`]).
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    events: EventWriter,
    records: Vec<Record>,
}

impl MetricsLog {
    /// Creates (truncating) the log, and starts the event files afresh.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| TrainError::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
            events: EventWriter::rebuild(run_folder(path), &[])?,
            records: Vec::new(),
        })
    }

    /// Opens the log of a resumed run, keeping only the records up to `step` (lines written after
    /// the checkpoint being resumed from would otherwise appear twice). A torn last line (the
    /// process was killed while writing it) is dropped like any other record past the checkpoint;
    /// an unreadable line before the end is still an error.
    pub fn resume(path: &Path, step: u64) -> Result<Self> {
        let kept: Vec<Record> = if path.exists() {
            read_records_until_torn_tail(path)?
                .into_iter()
                .filter(|r| r.step() <= step)
                .collect()
        } else {
            Vec::new()
        };
        let mut text = String::new();
        for r in &kept {
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        crate::checkpoint::write_atomic(path, text.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
            events: EventWriter::rebuild(run_folder(path), &kept)?,
            records: kept,
        })
    }

    /// Rewrites `metrics.csv` beside the log from every record so far.
    pub fn write_csv(&self) -> Result<()> {
        crate::metrics_csv::write(run_folder(&self.path), &self.records)
    }

    /// Appends one record.
    pub fn write(&mut self, record: &Record) -> Result<()> {
        let line = serde_json::to_string(record).map_err(|e| TrainError::RunFolder {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        writeln!(self.file, "{line}").map_err(|e| TrainError::io(&self.path, e))?;
        self.file
            .flush()
            .map_err(|e| TrainError::io(&self.path, e))?;
        self.events.write_record(record)?;
        self.records.push(record.clone());
        Ok(())
    }
}

/// The folder a log file lives in (its run folder).
fn run_folder(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Reads every record of a `metrics.jsonl`; errors name the line.
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let (records, torn) = parse_records(path)?;
    match torn {
        Some(error) => Err(error),
        None => Ok(records),
    }
}

/// Like [`read_records`], but a last line that does not parse (a write cut short by a crash) is
/// left out instead of failing the read.
pub fn read_records_until_torn_tail(path: &Path) -> Result<Vec<Record>> {
    Ok(parse_records(path)?.0)
}

/// The records of a log and, when its last non-empty line does not parse, that line's error.
/// An unreadable line before the last is an error.
fn parse_records(path: &Path) -> Result<(Vec<Record>, Option<TrainError>)> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    // A torn write can also cut a multi-byte character in two: read lossily, then let the JSON
    // parser reject the damaged line.
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let mut out = Vec::with_capacity(lines.len());
    for (k, (i, line)) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(e) => {
                let error = TrainError::RunFolder {
                    path: path.to_path_buf(),
                    message: format!("line {}: {e}", i + 1),
                };
                if k + 1 == lines.len() {
                    return Ok((out, Some(error)));
                }
                return Err(error);
            }
        }
    }
    Ok((out, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train(step: u64) -> Record {
        Record::Train(TrainRecord {
            step,
            epoch: 0,
            task_loss: 1.0 / step as f64,
            distill_total: 0.0,
            transfer: None,
            spectral: Some(0.5),
            logit_kd: None,
            regulariser: 0.0,
            total_loss: 1.0,
            lr: 0.1,
            samples_per_s: 3.0,
        })
    }

    #[test]
    fn resume_drops_records_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        for s in [1, 2, 3, 4] {
            log.write(&train(s)).unwrap();
        }
        drop(log);
        let mut log = MetricsLog::resume(&path, 2).unwrap();
        log.write(&train(3)).unwrap();
        let steps: Vec<u64> = read_records(&path)
            .unwrap()
            .iter()
            .map(Record::step)
            .collect();
        assert_eq!(steps, vec![1, 2, 3]);
        assert_eq!(read_records(&path).unwrap()[0], train(1));
    }

    #[test]
    fn resume_drops_a_torn_last_line_but_not_a_damaged_middle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        for s in [1, 2] {
            log.write(&train(s)).unwrap();
        }
        drop(log);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"kind\":\"train\",\"step\":3,\"epo");
        std::fs::write(&path, &text).unwrap();
        assert!(read_records(&path)
            .unwrap_err()
            .to_string()
            .contains("line 3"));
        drop(MetricsLog::resume(&path, 2).unwrap());
        assert_eq!(read_records(&path).unwrap().len(), 2);

        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{{broken\n{}\n", lines[0], lines[1])).unwrap();
        let err = MetricsLog::resume(&path, 2).err().unwrap().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn non_finite_metrics_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::create(&path).unwrap();
        log.write(&Record::Eval(EvalRecord {
            step: 1,
            epoch: 0,
            split: "val".into(),
            metrics: BTreeMap::from([("abs_rel".to_string(), f64::NAN)]),
            projector_singular_values: vec![f64::INFINITY],
            student_singular_values: Vec::new(),
        }))
        .unwrap();
        let back = read_records(&path).unwrap();
        let Record::Eval(e) = &back[0] else {
            panic!("expected an eval record")
        };
        assert!(e.metrics["abs_rel"].is_nan());
        assert_eq!(e.projector_singular_values, vec![f64::INFINITY]);
    }
}
