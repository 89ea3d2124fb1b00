//! The data phase of a step: which samples form the next batch, and loading them.

use crosskd_data::Dataset;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::session::Session;
use crate::task::{collate, component, Batch};

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

/// The samples `indices` of `ds`, collated on the session's device.
pub(super) fn load_batch(session: &Session, ds: &dyn Dataset, indices: &[usize]) -> Result<Batch> {
    let samples = indices
        .iter()
        .map(|&i| {
            ds.get(i)
                .map(|s| (i, s))
                .map_err(|e| component(&format!("sample {i}"), e))
        })
        .collect::<Result<Vec<_>>>()?;
    collate(session.config.task, &samples, &session.device)
}
