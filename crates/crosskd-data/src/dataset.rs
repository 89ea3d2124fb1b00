//! The `Dataset` trait (length + sample by index) and wrappers that compose data sets.

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{DataError, Result, Sample};

/// A finite, indexable collection of samples. `get` must be a pure function of the index so
/// that results do not depend on which worker thread asks, or in which order.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// The sample at `index` (`index < len()`), or an error naming the file that failed.
    fn get(&self, index: usize) -> Result<Sample>;

    /// True when the data set has no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Brings every sample into memory ahead of the first epoch, for data sets that keep their
    /// samples once loaded (rendered scenes): all at once, over the compute pool, rather than a
    /// batch at a time inside the training steps of the first epoch. Returns how many samples it
    /// loaded. The default keeps nothing and loads nothing; wrappers that select or map samples
    /// ([`Subset`], [`Mapped`]) do not pass it on.
    fn preload(&self) -> Result<usize> {
        Ok(0)
    }
}

impl<D: Dataset + ?Sized> Dataset for Arc<D> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        (**self).get(index)
    }
    fn preload(&self) -> Result<usize> {
        (**self).preload()
    }
}

impl<D: Dataset + ?Sized> Dataset for Box<D> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        (**self).get(index)
    }
    fn preload(&self) -> Result<usize> {
        (**self).preload()
    }
}

/// Checks `index < len` with the error every data set reports.
pub(crate) fn check_index(index: usize, len: usize) -> Result<()> {
    if index < len {
        Ok(())
    } else {
        Err(DataError::IndexOutOfRange { index, len })
    }
}

/// The samples of `inner` at the listed indices, in that order.
pub struct Subset<D> {
    inner: D,
    indices: Vec<usize>,
}

impl<D: Dataset> Subset<D> {
    /// A view of `inner` restricted to `indices` (each must be `< inner.len()`).
    pub fn new(inner: D, indices: Vec<usize>) -> Result<Self> {
        let len = inner.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
            return Err(DataError::IndexOutOfRange { index: bad, len });
        }
        Ok(Self { inner, indices })
    }

    /// The indices into the wrapped data set.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl<D: Dataset> Dataset for Subset<D> {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.indices.len())?;
        self.inner.get(self.indices[index])
    }
}

/// Splits `inner` into (train, validation) with `round(fraction * len)` validation samples chosen
/// by a seeded shuffle, so the same `(seed, fraction)` always carves the same validation split.
/// Both parts keep ascending index order.
pub fn split<D: Dataset + Clone>(
    inner: D,
    validation_fraction: f64,
    seed: u64,
) -> Result<(Subset<D>, Subset<D>)> {
    if !(0.0..=1.0).contains(&validation_fraction) {
        return Err(DataError::Config(format!(
            "validation fraction must be in [0, 1], found {validation_fraction}"
        )));
    }
    let len = inner.len();
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_val = (validation_fraction * len as f64).round() as usize;
    let mut val = order[..n_val].to_vec();
    let mut train = order[n_val..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Ok((Subset::new(inner.clone(), train)?, Subset::new(inner, val)?))
}

/// Applies a deterministic function to every sample of `inner` (e.g. a fixed resize, or turning
/// a segmentation sample into a translation pair).
pub struct Mapped<D, F> {
    inner: D,
    map: F,
}

impl<D, F> Mapped<D, F>
where
    D: Dataset,
    F: Fn(usize, Sample) -> Result<Sample> + Send + Sync,
{
    /// Wraps `inner`; `map` receives the index and the sample.
    pub fn new(inner: D, map: F) -> Self {
        Self { inner, map }
    }
}

impl<D, F> Dataset for Mapped<D, F>
where
    D: Dataset,
    F: Fn(usize, Sample) -> Result<Sample> + Send + Sync,
{
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let sample = self.inner.get(index)?;
        (self.map)(index, sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Image, Target};

    /// A data set whose sample `i` carries class label `i`.
    #[derive(Clone)]
    struct Labels(usize);

    impl Dataset for Labels {
        fn len(&self) -> usize {
            self.0
        }
        fn get(&self, index: usize) -> Result<Sample> {
            check_index(index, self.0)?;
            Ok(Sample {
                image: Image {
                    channels: 1,
                    height: 1,
                    width: 1,
                    data: vec![0.0],
                },
                target: Target::Class(index as u32),
            })
        }
    }

    fn label(d: &impl Dataset, i: usize) -> u32 {
        match d.get(i).unwrap().target {
            Target::Class(c) => c,
            _ => unreachable!(),
        }
    }

    #[test]
    fn split_is_a_deterministic_partition() {
        let (train, val) = split(Labels(100), 0.2, 7).unwrap();
        assert_eq!((train.len(), val.len()), (80, 20));
        let mut all: Vec<usize> = train
            .indices()
            .iter()
            .chain(val.indices())
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let (_, val2) = split(Labels(100), 0.2, 7).unwrap();
        assert_eq!(val.indices(), val2.indices());
        let (_, val3) = split(Labels(100), 0.2, 8).unwrap();
        assert_ne!(val.indices(), val3.indices());
        assert_eq!(label(&val, 3), val.indices()[3] as u32);
    }

    #[test]
    fn subset_and_mapped_check_indices() {
        assert!(matches!(
            Subset::new(Labels(3), vec![0, 3]),
            Err(DataError::IndexOutOfRange { index: 3, len: 3 })
        ));
        let mapped = Mapped::new(Labels(3), |i, mut s: Sample| {
            s.target = Target::Class(10 + i as u32);
            Ok(s)
        });
        assert_eq!(label(&mapped, 2), 12);
        assert!(mapped.get(3).is_err());
        assert!(split(Labels(3), 1.5, 0).is_err());
    }
}
