//! Fashion-MNIST splits: validation carved from the training file by a seeded shuffle.

use std::path::PathBuf;
use std::sync::Arc;

use crosskd_data::{Dataset, FashionMnist, FashionMnistOptions, Split, Subset};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::Config;
use crate::error::{Result, TrainError};
use crate::task::Splits;

/// Train / validation / test splits of Fashion-MNIST as the config asks: `val-samples` and
/// `train-samples` (0 = all the rest) drawn from the 60,000 training images by a shuffle seeded
/// with `data.seed`, and the first `test-samples` test images.
pub fn fashion_mnist_splits(config: &Config) -> Result<Splits> {
    let d = &config.data;
    let dir = d
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from(FashionMnist::DEFAULT_DIR));
    if !dir.exists() {
        return Err(TrainError::config(
            "data.root",
            format!(
                "Fashion-MNIST not found in {} (install the Debian package `dataset-fashion-mnist`, or set data.root)",
                dir.display()
            ),
        ));
    }
    let rgb = match config.student_arch() {
        Some(crosskd_models::ArchitectureConfig::SmallResnet(c)) => c.in_channels == 3,
        _ => false,
    };
    let options = FashionMnistOptions {
        rgb,
        size: if d.image_size == 28 {
            None
        } else {
            Some(d.image_size)
        },
    };
    let load = |split| {
        FashionMnist::load(&dir, split, options)
            .map(Arc::new)
            .map_err(|e| {
                TrainError::config(
                    "data.root",
                    format!("Fashion-MNIST in {}: {e}", dir.display()),
                )
            })
    };
    let train_all = load(Split::Train)?;
    let test_all = load(Split::Test)?;
    let mut order: Vec<usize> = (0..train_all.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(d.seed));
    let n_val = d.val_samples.min(order.len());
    let rest = order.len() - n_val;
    let n_train = if d.train_samples == 0 {
        rest
    } else {
        d.train_samples.min(rest)
    };
    let val: Vec<usize> = order[..n_val].to_vec();
    let train: Vec<usize> = order[n_val..n_val + n_train].to_vec();
    let test: Vec<usize> = (0..d.test_samples.min(test_all.len())).collect();
    let sub = |ds: &Arc<FashionMnist>, idx: Vec<usize>| -> Result<Box<dyn Dataset>> {
        Ok(Box::new(
            Subset::new(ds.clone(), idx).map_err(|e| TrainError::Component(e.to_string()))?,
        ))
    };
    Ok(Splits {
        train: sub(&train_all, train)?,
        val: sub(&train_all, val)?,
        test: sub(&test_all, test)?,
    })
}
