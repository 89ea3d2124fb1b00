//! The three splits of a run and the seeded carving of validation samples out of a training
//! split.

use std::sync::Arc;

use crosskd_data::{DataError, Dataset, Subset};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::DataConfig;
use crate::error::{Result, TrainError};

/// The train, validation and test data sets of a run.
pub struct Splits {
    /// Training samples.
    pub train: Arc<dyn Dataset>,
    /// Validation samples (best-checkpoint selection).
    pub val: Arc<dyn Dataset>,
    /// Test samples.
    pub test: Arc<dyn Dataset>,
    /// True when samples come at their files' own sizes and the loader resizes them to
    /// `data.image-size` (sources on disk); false when they already have that size.
    pub resize: bool,
    /// The class count found in the data, for sources that count their classes.
    pub num_classes: Option<usize>,
}

impl Splits {
    /// `(channels, height, width)` of the student's input: the first training sample's channels
    /// at the size batches have.
    pub fn input_shape(&self, image_size: usize) -> Result<(usize, usize, usize)> {
        let s = self
            .train
            .get(0)
            .map_err(|e| TrainError::Component(format!("training data: {e}")))?;
        if self.resize {
            Ok((s.image.channels, image_size, image_size))
        } else {
            Ok((s.image.channels, s.image.height, s.image.width))
        }
    }
}

/// The splits of a source's training and test sets: `val-samples` and `train-samples` (0 = all
/// the rest) drawn from the training set by a shuffle seeded with `data.seed`, and the first
/// `test-samples` of the test set. `resize` as in [`Splits`]; `what` names the data in errors.
pub(crate) fn carve(
    train_all: Arc<dyn Dataset>,
    test_all: Arc<dyn Dataset>,
    d: &DataConfig,
    resize: bool,
    what: &str,
) -> Result<Splits> {
    let mut order: Vec<usize> = (0..train_all.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(d.seed));
    let n_val = d.val_samples.min(order.len());
    let rest = order.len() - n_val;
    if rest == 0 {
        return Err(TrainError::config(
            "data.val-samples",
            format!(
                "{} validation samples leave none of the {} training samples of {what} to train on",
                d.val_samples,
                order.len()
            ),
        ));
    }
    if test_all.is_empty() {
        return Err(TrainError::config(
            "data.root",
            format!("expected test samples in {what}, found none"),
        ));
    }
    let n_train = if d.train_samples == 0 {
        rest
    } else {
        d.train_samples.min(rest)
    };
    let val = order[..n_val].to_vec();
    let train = order[n_val..n_val + n_train].to_vec();
    let test: Vec<usize> = (0..d.test_samples.min(test_all.len())).collect();
    let sub = |ds: &Arc<dyn Dataset>, idx: Vec<usize>| -> Result<Arc<dyn Dataset>> {
        Ok(Arc::new(
            Subset::new(ds.clone(), idx).map_err(|e| TrainError::Component(e.to_string()))?,
        ))
    };
    Ok(Splits {
        train: sub(&train_all, train)?,
        val: sub(&train_all, val)?,
        test: sub(&test_all, test)?,
        resize,
        num_classes: None,
    })
}

/// A data error met while opening a source, as a config error on `data.root` (the message
/// names the file).
pub(crate) fn open_error(what: &str, e: DataError) -> TrainError {
    TrainError::config("data.root", format!("{what}: {e}"))
}
