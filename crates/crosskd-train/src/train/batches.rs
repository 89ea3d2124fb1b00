//! The data phase: which samples form each batch, and the `crosskd_data::DataLoader` that builds
//! them (background workers, per-sample augmentation) for training and evaluation alike.
//!
//! Images reach the student as they are stored, in [0, 1]: the loader does not normalise them
//! (identity normalisation), because a teacher normalises its own input (its
//! `input-normalization`), so the teacher sees exactly the student's augmented batch, normalised
//! once.

use std::sync::Arc;

use crosskd_data::{AugmentConfig, DataLoader, Dataset, LoaderConfig, Normalization};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::Task;
use crate::error::{Result, TrainError};
use crate::session::Session;
use crate::task::Batch;

/// Seed offset of the per-epoch data order.
const ORDER_SEED_OFFSET: u64 = 0x4f52_4445;

/// The order of training samples in `epoch`: a permutation seeded by `(seed, epoch)`, so any
/// position `(epoch, batch)` can be recomputed on resume. It depends on nothing but the seed and
/// the training-set size, so every variant of one seed (teacher or not) sees the same batches.
pub(super) fn epoch_order(seed: u64, epoch: u64, len: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ORDER_SEED_OFFSET);
    rng.set_stream(epoch);
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rng);
    order
}

/// The batches of an epoch from batch `first` on: consecutive runs of `batch_size` samples of
/// `order`, `steps_per_epoch` batches in all (the last may be short when the split is smaller
/// than one batch).
pub(super) fn epoch_jobs(
    order: &[usize],
    first: u64,
    steps_per_epoch: u64,
    batch_size: usize,
) -> Vec<Vec<usize>> {
    (first..steps_per_epoch)
        .map(|b| {
            let start = b as usize * batch_size;
            order[start.min(order.len())..(start + batch_size).min(order.len())].to_vec()
        })
        .filter(|job| !job.is_empty())
        .collect()
}

/// Brings the training and validation samples into memory when their data sets keep samples
/// once loaded (rendered scenes), so that the first epoch's steps and evaluations read them
/// like every later one's. The test split is read once, at the end, so it is left to load then.
/// Returns how many samples were loaded.
pub(crate) fn preload(session: &Session) -> Result<usize> {
    let mut loaded = 0;
    for (split, ds) in [
        ("training", &session.data.train),
        ("validation", &session.data.val),
    ] {
        loaded += ds
            .preload()
            .map_err(|e| TrainError::Component(format!("{split} data: {e}")))?;
    }
    Ok(loaded)
}

/// The loader of a split: training splits get the configured augmentation, others none; samples
/// of sources on disk are resized to `data.image-size`, and so are augmented crops.
pub(crate) fn loader(session: &Session, ds: &Arc<dyn Dataset>, train: bool) -> Result<DataLoader> {
    let cfg = &session.config;
    let size = cfg.data.image_size;
    let augment = &cfg.data.augment;
    let per_sample = train && matches!(augment, crate::config::Augment::Settings(_));
    let output_size = (session.data.resize || per_sample).then_some([size, size]);
    let augment = if train {
        augment.sample_config(output_size)
    } else {
        AugmentConfig {
            output_size,
            ..AugmentConfig::default()
        }
    };
    let workers = crate::threads::loader_workers(cfg.data.workers, cfg.threads);
    let config = LoaderConfig {
        batch_size: cfg.train.batch_size,
        shuffle: false,
        seed: cfg.seed,
        drop_last: false,
        workers,
        prefetch: (2 * workers).max(2),
        augment,
        normalization: Normalization::identity(),
        num_classes: matches!(cfg.task, Task::Segmentation | Task::Classification)
            .then_some(cfg.data.num_classes as u32),
    };
    DataLoader::new(ds.clone(), config)
        .map_err(|e| TrainError::config("data.augment", e.to_string()))
}

/// A loader batch (or its error, which names the file) on the session's device.
pub(super) fn on_device(
    session: &Session,
    split: &str,
    batch: crosskd_data::Result<crosskd_data::Batch>,
) -> Result<Batch> {
    let batch = batch.map_err(|e| TrainError::Component(format!("{split} data: {e}")))?;
    Batch::from_loader(session.config.task, batch, &session.device)
}

/// The samples `indices` of a split, built on the calling thread without augmentation.
pub(super) fn load_batch(
    session: &Session,
    split: &str,
    ds: &Arc<dyn Dataset>,
    indices: &[usize],
) -> Result<Batch> {
    let batch = loader(session, ds, false)?.batch(0, indices);
    on_device(session, split, batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_jobs_cover_the_rest_of_the_epoch() {
        let order: Vec<usize> = (0..10).rev().collect();
        let jobs = epoch_jobs(&order, 1, 3, 3);
        assert_eq!(jobs, vec![vec![6, 5, 4], vec![3, 2, 1]]);
        // A split smaller than one batch is one short batch.
        assert_eq!(epoch_jobs(&order[..2], 0, 1, 8), vec![vec![9, 8]]);
    }
}
