//! Evaluation phases of a run: metrics of a split, spectra of the projector and the student's
//! feature, and the pictures of a run folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};
use crate::metrics_log::read_records;
use crate::session::Session;
use crate::task::{component, prediction_rows, Batch};

use super::batches::{load_batch, loader, on_device};
use super::scalar;

/// At most this many singular values are logged per spectrum.
const MAX_LOGGED_SINGULAR_VALUES: usize = 64;

/// Metrics of `split` (`val`, `test` or `train`) with the current weights, plus the task loss as
/// `loss`.
pub fn evaluate_session(session: &Session, split: &str) -> Result<BTreeMap<String, f64>> {
    let ds = match split {
        "val" => &session.data.val,
        "test" => &session.data.test,
        "train" => &session.data.train,
        other => {
            return Err(TrainError::config(
                "split",
                format!("expected \"val\", \"test\" or \"train\", found \"{other}\""),
            ))
        }
    };
    let mut metrics = session.student.head.new_metrics();
    let bs = session.config.train.batch_size.max(1);
    let (mut loss_sum, mut n) = (0.0, 0usize);
    let indices: Vec<usize> = (0..ds.len()).collect();
    let jobs: Vec<Vec<usize>> = indices.chunks(bs).map(<[usize]>::to_vec).collect();
    for next in loader(session, ds, false)?.batches(0, jobs) {
        let batch = on_device(session, split, next)?;
        let pass = session.student.forward(&batch.images, false)?;
        let loss = crate::task::task_loss(&session.config, &pass.prediction, &batch)?;
        let k = batch.indices.len();
        loss_sum += scalar(&loss)? * k as f64;
        n += k;
        metrics
            .update(&pass.prediction, &batch.target, batch.valid.as_ref())
            .map_err(|e| component("metrics", e))?;
    }
    let mut out = metrics.compute();
    // Per-class IoUs make the log and the plots unreadable; mIoU summarises them.
    out.retain(|k, _| !k.starts_with("iou/"));
    if n > 0 {
        out.insert("loss".into(), loss_sum / n as f64);
    }
    Ok(out)
}

/// The spectra logged with an evaluation.
pub(super) struct Spectra {
    /// Singular values of the projector, largest first (empty without one).
    pub projector: Vec<f64>,
    /// Effective rank of the projector (0 without one).
    pub projector_effective_rank: f64,
    /// Singular values of the student's distilled feature on `batch`.
    pub student: Vec<f64>,
}

/// Spectra of the projector and of the student's feature on `batch`.
pub(super) fn spectra(session: &Session, batch: &Batch) -> Result<Spectra> {
    let (mut projector, mut projector_effective_rank) = (Vec::new(), 0.0);
    if let Some(m) = &session.method {
        if let Some(p) = m.projectors().first() {
            let s = crosskd_losses::projector_spectrum(p)
                .map_err(|e| component("projector spectrum", e))?;
            projector_effective_rank = s.effective_rank;
            projector = s.singular_values;
        }
    }
    let pass = session.student.forward(&batch.images, false)?;
    let mut student = crosskd_losses::feature_spectrum(&pass.feature)
        .map_err(|e| component("feature spectrum", e))?
        .singular_values;
    projector.truncate(MAX_LOGGED_SINGULAR_VALUES);
    student.truncate(MAX_LOGGED_SINGULAR_VALUES);
    Ok(Spectra {
        projector,
        projector_effective_rank,
        student,
    })
}

/// The first validation batch: the fixed input of the spectra and the prediction pictures.
pub(super) fn first_val_batch(session: &Session) -> Result<Batch> {
    let n = session
        .data
        .val
        .len()
        .min(session.config.train.batch_size.max(2));
    let idx: Vec<usize> = (0..n).collect();
    load_batch(session, "val", &session.data.val, &idx)
}

/// Writes the plots and the prediction grid of a run folder.
pub fn write_plots(session: &Session, run_dir: &Path) -> Result<Vec<PathBuf>> {
    let records = read_records(&run_dir.join("metrics.jsonl"))?;
    let mut files = crate::plots::plot_records(run_dir, &records)?;
    if session.config.task.is_dense() {
        let batch = first_val_batch(session)?;
        let pass = session.student.forward(&batch.images, false)?;
        let rows = prediction_rows(session.config.task, &batch, &pass.prediction, 4)?;
        let path = run_dir.join("predictions.png");
        let zoom = (128 / session.config.data.image_size.max(1)).max(1) as u32;
        crate::plots::save_image_grid(&path, &rows, zoom)?;
        files.push(path);
    }
    Ok(files)
}
