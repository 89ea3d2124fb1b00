//! `metrics.csv`: the records of `metrics.jsonl` as one flat table for pandas and spreadsheets.
//!
//! One row per record; the columns are `kind`, `step`, `epoch`, `split`, then every loss term and
//! every metric that appears in any record (blank where a record has none). Spectra stay in the
//! JSONL file and the TensorBoard events. Non-finite values are written `NaN`, `inf`, `-inf`,
//! which pandas reads as floats. The table is rewritten from the records at every evaluation and
//! when the run ends, so it always matches `metrics.jsonl`, also after a resume.

use std::collections::BTreeMap;
use std::path::Path;

use crate::checkpoint::write_atomic;
use crate::error::Result;
use crate::metrics_log::Record;

/// The fixed leading columns.
const KEY_COLUMNS: [&str; 4] = ["kind", "step", "epoch", "split"];

/// The flat row of one record: column → cell text.
fn row(record: &Record) -> BTreeMap<String, String> {
    let mut cells = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        cells.insert(k.to_string(), v);
    };
    match record {
        Record::Train(t) => {
            put("kind", "train".into());
            put("step", t.step.to_string());
            put("epoch", t.epoch.to_string());
            put("split", String::new());
            put("task_loss", number(t.task_loss));
            put("distill_total", number(t.distill_total));
            if let Some(v) = t.transfer {
                put("transfer", number(v));
            }
            if let Some(v) = t.spectral {
                put("spectral", number(v));
            }
            if let Some(v) = t.logit_kd {
                put("logit_kd", number(v));
            }
            put("regulariser", number(t.regulariser));
            put("total_loss", number(t.total_loss));
            put("lr", number(t.lr));
            put("samples_per_s", number(t.samples_per_s));
        }
        Record::Eval(e) => {
            put("kind", "eval".into());
            put("step", e.step.to_string());
            put("epoch", e.epoch.to_string());
            put("split", e.split.clone());
            for (name, v) in &e.metrics {
                // Metric names never contain commas; the prefix keeps `loss` apart from the
                // training columns.
                put(&format!("metric_{name}"), number(*v));
            }
        }
    }
    cells
}

/// A float as pandas reads it back exactly (`{:?}` is the shortest exact text).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:?}")
    }
}

/// The CSV text of `records`.
pub fn to_csv(records: &[Record]) -> String {
    let rows: Vec<BTreeMap<String, String>> = records.iter().map(row).collect();
    let mut columns: Vec<String> = KEY_COLUMNS.iter().map(|s| s.to_string()).collect();
    let mut rest: Vec<String> = rows
        .iter()
        .flat_map(|r| r.keys())
        .filter(|k| !KEY_COLUMNS.contains(&k.as_str()))
        .cloned()
        .collect();
    rest.sort();
    rest.dedup();
    columns.extend(rest);
    let mut out = columns.join(",");
    out.push('\n');
    for r in &rows {
        let cells: Vec<&str> = columns
            .iter()
            .map(|c| r.get(c).map(String::as_str).unwrap_or(""))
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// Writes `metrics.csv` of `records` into `run_dir` (atomically).
pub fn write(run_dir: &Path, records: &[Record]) -> Result<()> {
    write_atomic(&run_dir.join("metrics.csv"), to_csv(records).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics_log::{EvalRecord, TrainRecord};

    #[test]
    fn one_flat_row_per_record_with_the_union_of_columns() {
        let records = vec![
            Record::Train(TrainRecord {
                step: 2,
                epoch: 0,
                task_loss: 0.5,
                distill_total: 0.0,
                transfer: None,
                spectral: None,
                logit_kd: None,
                regulariser: 0.0,
                total_loss: 0.5,
                lr: 0.1,
                samples_per_s: 3.0,
            }),
            Record::Eval(EvalRecord {
                step: 2,
                epoch: 0,
                split: "val".into(),
                metrics: BTreeMap::from([("miou".into(), f64::NAN), ("loss".into(), 1.25)]),
                projector_singular_values: vec![1.0],
                student_singular_values: vec![],
            }),
        ];
        let text = to_csv(&records);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let header: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(&header[..4], &KEY_COLUMNS);
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let train: Vec<&str> = lines[1].split(',').collect();
        let eval: Vec<&str> = lines[2].split(',').collect();
        assert_eq!(train.len(), header.len());
        assert_eq!(train[col("task_loss")], "0.5");
        assert_eq!(train[col("metric_miou")], "");
        assert_eq!(eval[col("metric_miou")], "NaN");
        assert_eq!(eval[col("metric_loss")], "1.25");
        assert_eq!(eval[col("split")], "val");
    }
}
