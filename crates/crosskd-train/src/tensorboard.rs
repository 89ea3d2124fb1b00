//! TensorBoard event files: every `metrics.jsonl` record also goes to
//! `events.out.tfevents.<time>.crosskd` in the run folder, so `tensorboard --logdir runs` shows
//! every run.
//!
//! The format is TFRecord framing around `tensorflow.Event` protocol buffers. Only the few fields
//! a summary writer needs are encoded, by hand: the Rust crates for it are unmaintained
//! (`tensorboard-rs`, archived) or write scalars only, and a protobuf code generator would be a
//! build dependency for five messages. The files are checked with TensorBoard's own reader in
//! `tests/tensorboard_reader.rs` (opt-in: it needs PyPI `tensorboard`).
//!
//! Scalars: `train/<term>` (every loss term, `lr`, `samples_per_s`), `val/<metric>` and
//! `test/<metric>`; histograms: `spectrum/projector` and `spectrum/student` (singular values at
//! each evaluation).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};
use crate::metrics_log::Record;

/// Prefix TensorBoard looks for in file names.
const FILE_PREFIX: &str = "events.out.tfevents.";

/// Appends events to one event file.
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// Starts a new event file in `dir` (with the `file_version` event every file opens with).
    pub fn create(dir: &Path) -> Result<Self> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let path = dir.join(format!("{FILE_PREFIX}{secs}.crosskd"));
        let file = File::create(&path).map_err(|e| TrainError::io(&path, e))?;
        let mut writer = EventWriter { path, file };
        let mut event = Proto::default();
        event.double(1, wall_time());
        event.string(3, "brain.Event:2");
        writer.write_event(&event)?;
        Ok(writer)
    }

    /// Starts over: removes the folder's earlier event files and writes `records` into a new
    /// one. A resumed run calls this after dropping the records past its checkpoint, so the event
    /// files never show steps twice.
    pub fn rebuild(dir: &Path, records: &[Record]) -> Result<Self> {
        for old in event_files(dir)? {
            std::fs::remove_file(&old).map_err(|e| TrainError::io(&old, e))?;
        }
        let mut writer = EventWriter::create(dir)?;
        for r in records {
            writer.write_record(r)?;
        }
        Ok(writer)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the scalars (and spectra histograms) of one record.
    pub fn write_record(&mut self, record: &Record) -> Result<()> {
        let mut values: Vec<Proto> = Vec::new();
        let mut scalar = |tag: String, v: f64| values.push(scalar_value(&tag, v));
        let step = record.step();
        match record {
            Record::Train(t) => {
                scalar("train/task_loss".into(), t.task_loss);
                scalar("train/distill_total".into(), t.distill_total);
                if let Some(v) = t.transfer {
                    scalar("train/transfer".into(), v);
                }
                if let Some(v) = t.logit_kd {
                    scalar("train/logit_kd".into(), v);
                }
                if let Some(v) = t.spectral {
                    scalar("train/spectral".into(), v);
                }
                scalar("train/regulariser".into(), t.regulariser);
                scalar("train/total_loss".into(), t.total_loss);
                scalar("train/lr".into(), t.lr);
                scalar("train/samples_per_s".into(), t.samples_per_s);
            }
            Record::Eval(e) => {
                for (name, v) in &e.metrics {
                    scalar(format!("{}/{name}", e.split), *v);
                }
                for (tag, sv) in [
                    ("spectrum/projector", &e.projector_singular_values),
                    ("spectrum/student", &e.student_singular_values),
                ] {
                    if !sv.is_empty() {
                        values.push(histogram_value(tag, sv));
                    }
                }
            }
        }
        let mut summary = Proto::default();
        for v in &values {
            summary.message(1, v);
        }
        let mut event = Proto::default();
        event.double(1, wall_time());
        event.varint(2, step);
        event.message(5, &summary);
        self.write_event(&event)
    }

    fn write_event(&mut self, event: &Proto) -> Result<()> {
        let framed = tfrecord(&event.bytes);
        self.file
            .write_all(&framed)
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }
}

/// The event files in `dir`.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TrainError::io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with(FILE_PREFIX) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `Summary.Value { tag = 1, simple_value = 2 }`.
fn scalar_value(tag: &str, v: f64) -> Proto {
    let mut value = Proto::default();
    value.string(1, tag);
    value.float(2, v as f32);
    value
}

/// `Summary.Value { tag = 1, histo = 5 }` with one bucket per distinct value, so TensorBoard's
/// histogram shows where the singular values lie.
fn histogram_value(tag: &str, values: &[f64]) -> Proto {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mut sorted = finite.clone();
    sorted.sort_by(f64::total_cmp);
    let mut limits: Vec<f64> = Vec::new();
    let mut counts: Vec<f64> = Vec::new();
    for v in &sorted {
        if limits.last() == Some(v) {
            if let Some(c) = counts.last_mut() {
                *c += 1.0;
            }
        } else {
            limits.push(*v);
            counts.push(1.0);
        }
    }
    let mut h = Proto::default();
    h.double(1, sorted.first().copied().unwrap_or(0.0));
    h.double(2, sorted.last().copied().unwrap_or(0.0));
    h.double(3, finite.len() as f64);
    h.double(4, finite.iter().sum());
    h.double(5, finite.iter().map(|v| v * v).sum());
    h.packed_doubles(6, &limits);
    h.packed_doubles(7, &counts);
    let mut value = Proto::default();
    value.string(1, tag);
    value.message(5, &h);
    value
}

/// A protocol-buffer message being encoded (fields must be added in field-number order only for
/// readability; decoders accept any order).
#[derive(Default)]
struct Proto {
    bytes: Vec<u8>,
}

impl Proto {
    fn key(&mut self, field: u32, wire_type: u8) {
        push_varint(
            &mut self.bytes,
            (u64::from(field) << 3) | u64::from(wire_type),
        );
    }

    fn varint(&mut self, field: u32, v: u64) {
        self.key(field, 0);
        push_varint(&mut self.bytes, v);
    }

    fn double(&mut self, field: u32, v: f64) {
        self.key(field, 1);
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn float(&mut self, field: u32, v: f32) {
        self.key(field, 5);
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn length_delimited(&mut self, field: u32, payload: &[u8]) {
        self.key(field, 2);
        push_varint(&mut self.bytes, payload.len() as u64);
        self.bytes.extend_from_slice(payload);
    }

    fn string(&mut self, field: u32, s: &str) {
        self.length_delimited(field, s.as_bytes());
    }

    fn message(&mut self, field: u32, m: &Proto) {
        self.length_delimited(field, &m.bytes);
    }

    fn packed_doubles(&mut self, field: u32, values: &[f64]) {
        let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.length_delimited(field, &payload);
    }
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// TFRecord framing: length, masked CRC-32C of the length, data, masked CRC-32C of the data.
fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// TFRecord's CRC mask (rotate right by 15, add a constant): a CRC stored next to the data it
/// covers would otherwise be easy to confuse with data.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_crc_match_the_reference_encodings() {
        let mut v = Vec::new();
        push_varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        // CRC-32C check value of the ASCII digits "123456789".
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn records_are_framed_with_their_lengths_and_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.write_record(&Record::Train(crate::metrics_log::TrainRecord {
            step: 7,
            epoch: 0,
            task_loss: 0.5,
            distill_total: 0.25,
            transfer: Some(0.125),
            spectral: Some(0.125),
            logit_kd: None,
            regulariser: 0.0,
            total_loss: 0.75,
            lr: 0.001,
            samples_per_s: 100.0,
        }))
        .unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        // Walk the frames: each must be complete and its checksums must hold.
        let (mut at, mut frames) = (0usize, 0);
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
            assert_eq!(len_crc, masked_crc(&bytes[at..at + 8]));
            let data = &bytes[at + 12..at + 12 + len];
            let data_crc =
                u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(data_crc, masked_crc(data));
            at += 16 + len;
            frames += 1;
        }
        assert_eq!((at, frames), (bytes.len(), 2));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("brain.Event:2") && text.contains("train/spectral"));
    }
}
