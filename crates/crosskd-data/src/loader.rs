//! Batching: a seeded per-epoch shuffle, paired augmentation, normalisation and stacking into
//! candle tensors, computed by background workers behind a bounded queue. Every batch is a pure
//! function of `(seed, epoch, batch position)`, so results do not depend on the worker count.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use crossbeam_channel::{bounded, Receiver, Sender};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::{DataError, Dataset, Result, Sample, Target, IGNORE_CLASS};

/// Per-channel normalisation of input images: `x ← (x - mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    /// Channel means (one value, or one per channel).
    pub mean: Vec<f32>,
    /// Channel standard deviations (same length as `mean`, all > 0).
    pub std: Vec<f32>,
}

impl Normalization {
    /// ImageNet statistics (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225), what the
    /// ImageNet-pretrained teachers expect. The default.
    pub fn imagenet() -> Self {
        Self {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// No change (mean 0, std 1).
    pub fn identity() -> Self {
        Self {
            mean: vec![0.0],
            std: vec![1.0],
        }
    }

    /// Mean and std for channel `c` (a single value serves every channel).
    fn channel(&self, c: usize) -> (f32, f32) {
        let i = if self.mean.len() == 1 { 0 } else { c };
        (self.mean[i], self.std[i])
    }
}

impl Default for Normalization {
    fn default() -> Self {
        Self::imagenet()
    }
}

/// How the loader shuffles, augments and batches (saved with each run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoaderConfig {
    /// Samples per batch (default 16).
    pub batch_size: usize,
    /// Shuffle the order each epoch (default true); the order depends only on `(seed, epoch)`.
    pub shuffle: bool,
    /// Seed of the shuffle and of the augmentation (default 0).
    pub seed: u64,
    /// Drop a final batch smaller than `batch_size` (default true). When false the final batch
    /// is yielded with [`Batch::partial`] set, never silently.
    pub drop_last: bool,
    /// Background worker threads (default 2; 0 builds batches on the calling thread).
    pub workers: usize,
    /// Batches in flight ahead of the consumer (the bounded queue's capacity, default 4).
    pub prefetch: usize,
    /// Augmentation (default none).
    pub augment: AugmentConfig,
    /// Input normalisation (default ImageNet).
    pub normalization: Normalization,
    /// For segmentation: class ids must be `< num_classes` or [`IGNORE_CLASS`] (default: unchecked).
    pub num_classes: Option<u32>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 16,
            shuffle: true,
            seed: 0,
            drop_last: true,
            workers: 2,
            prefetch: 4,
            augment: AugmentConfig::default(),
            normalization: Normalization::default(),
            num_classes: None,
        }
    }
}

/// The targets of a batch, stacked.
#[derive(Clone, Debug)]
pub enum BatchTarget {
    /// Depth `(N, 1, H, W)` f32 metres and validity `(N, 1, H, W)` f32 in {0, 1}.
    Depth {
        /// Metres.
        depth: Tensor,
        /// 1 where the depth is known.
        valid: Tensor,
    },
    /// Class ids `(N, H, W)` u32, [`IGNORE_CLASS`] for ignored pixels.
    Segmentation {
        /// Class ids.
        classes: Tensor,
    },
    /// Target images `(N, 3, H, W)` f32 scaled to [-1, 1] (`2 x - 1`).
    Translation {
        /// Target images.
        target: Tensor,
    },
    /// Class labels `(N)` u32.
    Class {
        /// Labels.
        labels: Tensor,
    },
}

/// A batch on the CPU (move it with `to_device`).
#[derive(Clone, Debug)]
pub struct Batch {
    /// Normalised input images `(N, C, H, W)` f32.
    pub images: Tensor,
    /// Stacked targets.
    pub target: BatchTarget,
    /// Data-set indices of the samples, in batch order.
    pub indices: Vec<usize>,
    /// True for a final batch smaller than the batch size (only when `drop_last` is false).
    pub partial: bool,
}

/// Batches a data set; see [`LoaderConfig`].
pub struct DataLoader {
    shared: Arc<Shared>,
}

struct Shared {
    dataset: Arc<dyn Dataset>,
    config: LoaderConfig,
}

/// splitmix64 finaliser: decorrelates nearby seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The augmentation RNG of sample `index` in `epoch`: independent of threads and batch layout.
fn sample_rng(seed: u64, epoch: u64, index: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(seed ^ 0x5eed) ^ epoch) ^ mix(index as u64))
}

impl DataLoader {
    /// A loader over `dataset`; fails on an unusable config (zero batch size, bad ranges).
    pub fn new(dataset: Arc<dyn Dataset>, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::Config(
                "loader batch_size must be at least 1".into(),
            ));
        }
        let norm = &config.normalization;
        if norm.mean.is_empty()
            || norm.mean.len() != norm.std.len()
            || norm.std.iter().any(|&s| s <= 0.0 || !s.is_finite())
        {
            return Err(DataError::Config(format!(
                "normalization needs equal-length mean and std with std > 0, found mean {:?} std {:?}",
                norm.mean, norm.std
            )));
        }
        config.augment.validate()?;
        Ok(Self {
            shared: Arc::new(Shared { dataset, config }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.shared.config
    }

    /// Number of batches one epoch yields.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.shared.dataset.len(), self.shared.config.batch_size);
        if self.shared.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The sample order of `epoch` (a seeded shuffle, or `0..len`).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.shared.dataset.len()).collect();
        if self.shared.config.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.shared.config.seed) ^ mix(epoch));
            order.shuffle(&mut rng);
        }
        order
    }

    /// The batches of `epoch`, in order. Errors (a bad file, mismatched sizes) are yielded as
    /// `Err` for the batch they affect; iteration can continue past them.
    pub fn epoch(&self, epoch: u64) -> EpochBatches {
        let order = self.order(epoch);
        let b = self.shared.config.batch_size;
        let jobs: Vec<Vec<usize>> = order
            .chunks(b)
            .take(self.batches_per_epoch())
            .map(<[usize]>::to_vec)
            .collect();
        EpochBatches::start(self.shared.clone(), Arc::new(jobs), epoch)
    }

    /// The batches listed in `batches` (data-set indices each), built in that order as
    /// [`DataLoader::epoch`] builds its own: augmented with the randomness of `(seed, epoch,
    /// index)`, by the background workers. For callers that own the sample order (a trainer
    /// resuming mid-epoch, an evaluation pass in index order); `shuffle` and `drop_last` are not
    /// consulted, and a batch shorter than `batch_size` is flagged [`Batch::partial`].
    pub fn batches(&self, epoch: u64, batches: Vec<Vec<usize>>) -> EpochBatches {
        EpochBatches::start(self.shared.clone(), Arc::new(batches), epoch)
    }

    /// One batch of the samples at `indices`, built on the calling thread.
    pub fn batch(&self, epoch: u64, indices: &[usize]) -> Result<Batch> {
        if indices.is_empty() {
            return Err(DataError::Config(
                "a batch needs at least one sample".into(),
            ));
        }
        build_guarded(&self.shared, indices, epoch)
    }

    /// The data set batched.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.shared.dataset
    }
}

impl Shared {
    /// Loads, augments and stacks the samples at `indices`.
    fn build(&self, indices: &[usize], epoch: u64) -> Result<Batch> {
        let cfg = &self.config;
        if indices.is_empty() {
            return Err(DataError::Config(
                "a batch needs at least one sample".into(),
            ));
        }
        let load = |&index: &usize| -> Result<Sample> {
            let wrap = |e: DataError| DataError::Sample {
                index,
                source: Box::new(e),
            };
            let sample = self.dataset.get(index).map_err(wrap)?;
            sample
                .check_sizes(&format!("sample {index}"))
                .map_err(wrap)?;
            if cfg.augment.is_identity() {
                return Ok(sample);
            }
            let mut rng = sample_rng(cfg.seed, epoch, index);
            cfg.augment.apply(sample, &mut rng).map_err(wrap)
        };
        // On a compute thread (a trainer building its batch between steps, no background
        // workers) the samples are rendered or decoded over the compute threads, which would
        // otherwise wait; a background worker keeps to its own core. Either way the first
        // failing sample in batch order is the one reported.
        let loaded: Vec<Result<Sample>> =
            if rayon::current_thread_index().is_some() && indices.len() > 1 {
                indices.par_iter().map(load).collect()
            } else {
                indices.iter().map(load).collect()
            };
        let samples = loaded.into_iter().collect::<Result<Vec<_>>>()?;
        let partial = indices.len() < cfg.batch_size;
        let images = stack_images(&samples, indices, &cfg.normalization)?;
        let target = stack_targets(&samples, indices, cfg.num_classes)?;
        Ok(Batch {
            images,
            target,
            indices: indices.to_vec(),
            partial,
        })
    }
}

fn mismatch(indices: &[usize], k: usize, expected: String, found: String) -> DataError {
    DataError::SizeMismatch {
        what: format!("batch: sample {} vs sample {}", indices[0], indices[k]),
        expected,
        found,
    }
}

fn stack_images(samples: &[Sample], indices: &[usize], norm: &Normalization) -> Result<Tensor> {
    let first = &samples[0].image;
    let shape = (first.channels, first.height, first.width);
    if norm.mean.len() != 1 && norm.mean.len() != first.channels {
        return Err(DataError::Config(format!(
            "normalization has {} channel values but sample {} has {} channels",
            norm.mean.len(),
            indices[0],
            first.channels
        )));
    }
    let mut data = Vec::with_capacity(samples.len() * first.data.len());
    for (k, s) in samples.iter().enumerate() {
        let img = &s.image;
        let found = (img.channels, img.height, img.width);
        if found != shape {
            return Err(mismatch(
                indices,
                k,
                format!("image {shape:?}"),
                format!("{found:?}"),
            ));
        }
        let plane = img.height * img.width;
        for c in 0..img.channels {
            let (m, sd) = norm.channel(c);
            data.extend(
                img.data[c * plane..(c + 1) * plane]
                    .iter()
                    .map(|v| (v - m) / sd),
            );
        }
    }
    Ok(Tensor::from_vec(
        data,
        (samples.len(), shape.0, shape.1, shape.2),
        &Device::Cpu,
    )?)
}

fn stack_targets(
    samples: &[Sample],
    indices: &[usize],
    num_classes: Option<u32>,
) -> Result<BatchTarget> {
    let n = samples.len();
    let kind = samples[0].target.kind();
    let size = samples[0].target.size();
    for (k, s) in samples.iter().enumerate() {
        if s.target.kind() != kind {
            return Err(mismatch(
                indices,
                k,
                format!("{kind} target"),
                format!("{} target", s.target.kind()),
            ));
        }
        if s.target.size() != size {
            return Err(mismatch(
                indices,
                k,
                format!("target {size:?}"),
                format!("{:?}", s.target.size()),
            ));
        }
    }
    let (h, w) = size.unwrap_or((0, 0));
    let dev = &Device::Cpu;
    Ok(match &samples[0].target {
        Target::Depth { .. } => {
            let mut depth = Vec::with_capacity(n * h * w);
            let mut valid = Vec::with_capacity(n * h * w);
            for s in samples {
                if let Target::Depth { depth: d, valid: v } = &s.target {
                    depth.extend(
                        d.data
                            .iter()
                            .zip(&v.data)
                            .map(|(&d, &v)| if v { d } else { 0.0 }),
                    );
                    valid.extend(v.data.iter().map(|&v| if v { 1.0f32 } else { 0.0 }));
                }
            }
            BatchTarget::Depth {
                depth: Tensor::from_vec(depth, (n, 1, h, w), dev)?,
                valid: Tensor::from_vec(valid, (n, 1, h, w), dev)?,
            }
        }
        Target::Segmentation { .. } => {
            let mut classes = Vec::with_capacity(n * h * w);
            for (k, s) in samples.iter().enumerate() {
                if let Target::Segmentation { classes: c } = &s.target {
                    if let Some(limit) = num_classes {
                        if let Some(&bad) =
                            c.data.iter().find(|&&c| c >= limit && c != IGNORE_CLASS)
                        {
                            return Err(DataError::Sample {
                                index: indices[k],
                                source: Box::new(DataError::Config(format!(
                                    "class id {bad} outside the class table (expected < {limit} or {IGNORE_CLASS})"
                                ))),
                            });
                        }
                    }
                    classes.extend_from_slice(&c.data);
                }
            }
            BatchTarget::Segmentation {
                classes: Tensor::from_vec(classes, (n, h, w), dev)?,
            }
        }
        Target::Translation { target } => {
            let c = target.channels;
            let mut data = Vec::with_capacity(n * c * h * w);
            for (k, s) in samples.iter().enumerate() {
                if let Target::Translation { target: t } = &s.target {
                    if t.channels != c {
                        return Err(mismatch(
                            indices,
                            k,
                            format!("{c} target channels"),
                            t.channels.to_string(),
                        ));
                    }
                    data.extend(t.data.iter().map(|v| 2.0 * v - 1.0));
                }
            }
            BatchTarget::Translation {
                target: Tensor::from_vec(data, (n, c, h, w), dev)?,
            }
        }
        Target::Class(_) => {
            let labels: Vec<u32> = samples
                .iter()
                .map(|s| match s.target {
                    Target::Class(c) => c,
                    _ => 0,
                })
                .collect();
            if let Some(limit) = num_classes {
                if let Some(k) = labels.iter().position(|&c| c >= limit) {
                    return Err(DataError::Sample {
                        index: indices[k],
                        source: Box::new(DataError::Config(format!(
                            "class label {} outside the class table (expected < {limit})",
                            labels[k]
                        ))),
                    });
                }
            }
            BatchTarget::Class {
                labels: Tensor::from_vec(labels, n, dev)?,
            }
        }
    })
}

/// Runs a batch job, turning a panic in user code (a custom `Dataset`) into an error.
fn build_guarded(shared: &Shared, indices: &[usize], epoch: u64) -> Result<Batch> {
    catch_unwind(AssertUnwindSafe(|| shared.build(indices, epoch))).unwrap_or_else(|_| {
        Err(DataError::Config(format!(
            "building the batch of samples {indices:?} panicked"
        )))
    })
}

/// Iterator over one epoch's batches (see [`DataLoader::epoch`]). Dropping it stops the workers.
pub struct EpochBatches {
    shared: Arc<Shared>,
    jobs: Arc<Vec<Vec<usize>>>,
    epoch: u64,
    next_yield: usize,
    next_dispatch: usize,
    job_tx: Option<Sender<usize>>,
    result_rx: Option<Receiver<(usize, Result<Batch>)>>,
    pending: BTreeMap<usize, Result<Batch>>,
    workers: Vec<JoinHandle<()>>,
}

impl EpochBatches {
    fn start(shared: Arc<Shared>, jobs: Arc<Vec<Vec<usize>>>, epoch: u64) -> Self {
        let n_workers = shared.config.workers.min(jobs.len());
        let capacity = shared.config.prefetch.max(1);
        let mut it = Self {
            shared: shared.clone(),
            jobs: jobs.clone(),
            epoch,
            next_yield: 0,
            next_dispatch: 0,
            job_tx: None,
            result_rx: None,
            pending: BTreeMap::new(),
            workers: Vec::new(),
        };
        if n_workers == 0 {
            return it;
        }
        let (job_tx, job_rx) = bounded::<usize>(capacity);
        let (result_tx, result_rx) = bounded::<(usize, Result<Batch>)>(capacity);
        for _ in 0..n_workers {
            let (shared, jobs, job_rx, result_tx) = (
                shared.clone(),
                jobs.clone(),
                job_rx.clone(),
                result_tx.clone(),
            );
            it.workers.push(std::thread::spawn(move || {
                for job in job_rx {
                    let batch = build_guarded(&shared, &jobs[job], epoch);
                    if result_tx.send((job, batch)).is_err() {
                        break;
                    }
                }
            }));
        }
        it.job_tx = Some(job_tx);
        it.result_rx = Some(result_rx);
        it
    }

    /// Batches left in this epoch.
    pub fn remaining(&self) -> usize {
        self.jobs.len() - self.next_yield
    }
}

impl Iterator for EpochBatches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next_yield >= self.jobs.len() {
            return None;
        }
        let (Some(job_tx), Some(result_rx)) = (&self.job_tx, &self.result_rx) else {
            let batch = build_guarded(&self.shared, &self.jobs[self.next_yield], self.epoch);
            self.next_yield += 1;
            return Some(batch);
        };
        // At most `prefetch` batches are dispatched and not yet yielded, which bounds memory.
        let capacity = self.shared.config.prefetch.max(1);
        while self.next_dispatch < self.jobs.len()
            && self.next_dispatch < self.next_yield + capacity
        {
            if job_tx.send(self.next_dispatch).is_err() {
                break;
            }
            self.next_dispatch += 1;
        }
        loop {
            if let Some(batch) = self.pending.remove(&self.next_yield) {
                self.next_yield += 1;
                return Some(batch);
            }
            match result_rx.recv() {
                Ok((job, batch)) => {
                    self.pending.insert(job, batch);
                }
                Err(_) => {
                    self.next_yield = self.jobs.len();
                    return Some(Err(DataError::Config(
                        "all loader workers stopped before the epoch ended".into(),
                    )));
                }
            }
        }
    }
}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        self.job_tx = None;
        self.result_rx = None;
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Grid, Image};

    /// Sample `i`: a 2x3 RGB image filled with `i / 100`, and a target of the chosen kind. Index
    /// `fail` returns an error, index `panic_at` panics, index `odd` has a different size.
    struct Toy {
        len: usize,
        kind: &'static str,
        fail: Option<usize>,
        panic_at: Option<usize>,
        odd: Option<usize>,
    }

    fn toy(len: usize, kind: &'static str) -> Toy {
        Toy {
            len,
            kind,
            fail: None,
            panic_at: None,
            odd: None,
        }
    }

    impl Dataset for Toy {
        fn len(&self) -> usize {
            self.len
        }
        fn get(&self, i: usize) -> Result<Sample> {
            if Some(i) == self.fail {
                return Err(DataError::invalid("toy.png", "a good file", "a bad one"));
            }
            assert!(Some(i) != self.panic_at, "toy data set panics on purpose");
            let (h, w) = if Some(i) == self.odd { (3, 3) } else { (2, 3) };
            let v = i as f32 / 100.0;
            let image = Image {
                channels: 3,
                height: h,
                width: w,
                data: (0..3 * h * w).map(|p| v + p as f32 / 1000.0).collect(),
            };
            let target = match self.kind {
                "depth" => Target::Depth {
                    depth: Grid::filled(h, w, 1.0 + v),
                    valid: Grid {
                        height: h,
                        width: w,
                        data: (0..h * w).map(|p| p != 0).collect(),
                    },
                },
                "seg" => Target::Segmentation {
                    classes: Grid::filled(h, w, i as u32 % 7),
                },
                "translation" => Target::Translation {
                    target: Image {
                        channels: 3,
                        height: h,
                        width: w,
                        data: vec![v; 3 * h * w],
                    },
                },
                _ => Target::Class(i as u32),
            };
            Ok(Sample { image, target })
        }
    }

    fn loader(ds: Toy, config: LoaderConfig) -> DataLoader {
        DataLoader::new(Arc::new(ds), config).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    fn fingerprint(batch: &Batch) -> (Vec<usize>, Vec<f32>, Vec<f32>) {
        let target = match &batch.target {
            BatchTarget::Depth { depth, valid } => [flat(depth), flat(valid)].concat(),
            BatchTarget::Translation { target } => flat(target),
            BatchTarget::Segmentation { classes } => {
                flat(&classes.to_dtype(candle_core::DType::F32).unwrap())
            }
            BatchTarget::Class { labels } => {
                flat(&labels.to_dtype(candle_core::DType::F32).unwrap())
            }
        };
        (batch.indices.clone(), flat(&batch.images), target)
    }

    /// A loader config that crops, flips and jitters every sample down to 2×2.
    fn augmenting_config() -> LoaderConfig {
        LoaderConfig {
            augment: AugmentConfig {
                crop_scale: [0.5, 1.0],
                output_size: Some([2, 2]),
                horizontal_flip: true,
                brightness: 0.3,
                ..AugmentConfig::default()
            },
            ..LoaderConfig::default()
        }
    }

    #[test]
    fn batches_are_identical_for_any_worker_count_and_deterministic_per_epoch() {
        let config = |workers| LoaderConfig {
            batch_size: 4,
            seed: 9,
            workers,
            prefetch: 2,
            ..augmenting_config()
        };
        let run = |workers, epoch| {
            loader(toy(19, "depth"), config(workers))
                .epoch(epoch)
                .map(|b| fingerprint(&b.unwrap()))
                .collect::<Vec<_>>()
        };
        let inline = run(0, 1);
        assert_eq!(inline.len(), 4);
        assert_eq!(inline, run(1, 1));
        assert_eq!(inline, run(3, 1));
        assert_ne!(inline, run(3, 2));
        // Each epoch visits distinct samples.
        let mut seen: Vec<usize> = inline.iter().flat_map(|b| b.0.clone()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 16);
    }

    /// A batch built on a compute-pool thread (samples loaded in parallel) is the batch built on
    /// any other thread, and a failing sample is reported as it would be there.
    #[test]
    fn batches_built_on_a_compute_thread_are_the_same() {
        let config = LoaderConfig {
            batch_size: 6,
            seed: 3,
            ..augmenting_config()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let indices = [7, 2, 11, 0, 5, 9];
        let plain = loader(toy(12, "seg"), config.clone());
        let serial = fingerprint(&plain.batch(2, &indices).unwrap());
        let parallel = pool.install(|| {
            assert!(rayon::current_thread_index().is_some());
            fingerprint(&plain.batch(2, &indices).unwrap())
        });
        assert_eq!(serial, parallel);

        let failing = loader(
            Toy {
                fail: Some(5),
                ..toy(12, "seg")
            },
            config,
        );
        let serial = failing.batch(2, &indices).unwrap_err().to_string();
        let parallel = pool.install(|| failing.batch(2, &indices).unwrap_err().to_string());
        assert_eq!(serial, parallel);
        assert!(serial.contains("sample 5"), "{serial}");
    }

    #[test]
    fn explicit_batches_match_the_epoch_for_any_worker_count() {
        let config = |workers| LoaderConfig {
            batch_size: 3,
            seed: 4,
            workers,
            augment: AugmentConfig {
                crop_scale: [0.5, 1.0],
                output_size: Some([2, 2]),
                horizontal_flip: true,
                ..AugmentConfig::default()
            },
            ..LoaderConfig::default()
        };
        let l = loader(toy(9, "seg"), config(0));
        let order = l.order(5);
        let jobs: Vec<Vec<usize>> = order.chunks(3).map(<[usize]>::to_vec).collect();
        let from_epoch: Vec<_> = l.epoch(5).map(|b| fingerprint(&b.unwrap())).collect();
        for workers in [0, 2] {
            let listed: Vec<_> = loader(toy(9, "seg"), config(workers))
                .batches(5, jobs.clone())
                .map(|b| fingerprint(&b.unwrap()))
                .collect();
            assert_eq!(listed, from_epoch);
        }
        let one = l.batch(5, &jobs[1]).unwrap();
        assert_eq!(fingerprint(&one), from_epoch[1]);
        assert!(l.batch(5, &[]).is_err());
        // A short list is a partial batch.
        assert!(l.batch(5, &[1]).unwrap().partial);
    }

    #[test]
    fn final_partial_batch_is_dropped_or_flagged() {
        let keep = LoaderConfig {
            batch_size: 4,
            drop_last: false,
            shuffle: false,
            ..LoaderConfig::default()
        };
        let l = loader(toy(10, "class"), keep.clone());
        let batches: Vec<Batch> = l.epoch(0).map(|b| b.unwrap()).collect();
        assert_eq!(l.batches_per_epoch(), 3);
        assert_eq!(
            batches.iter().map(|b| b.partial).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(batches[2].indices, [8, 9]);
        let BatchTarget::Class { labels } = &batches[2].target else {
            panic!("class batch expected")
        };
        assert_eq!(labels.to_vec1::<u32>().unwrap(), [8, 9]);
        let drop = LoaderConfig {
            drop_last: true,
            ..keep
        };
        let batches: Vec<Batch> = loader(toy(10, "class"), drop)
            .epoch(0)
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(batches.len(), 2);
        assert!(batches.iter().all(|b| !b.partial && b.indices.len() == 4));
    }

    #[test]
    fn normalisation_and_target_layouts() {
        let config = LoaderConfig {
            batch_size: 2,
            shuffle: false,
            workers: 0,
            normalization: Normalization {
                mean: vec![0.5, 0.25, 0.0],
                std: vec![0.5, 0.5, 2.0],
            },
            ..LoaderConfig::default()
        };
        let batch = loader(toy(2, "translation"), config.clone())
            .epoch(0)
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(batch.images.dims(), [2, 3, 2, 3]);
        let images = flat(&batch.images);
        // Sample 1, channel 1, pixel 0: raw 0.01 + 6 / 1000 → (0.016 - 0.25) / 0.5.
        assert!((images[18 + 6] - (0.016 - 0.25) / 0.5).abs() < 1e-6);
        let BatchTarget::Translation { target } = &batch.target else {
            panic!("translation expected")
        };
        assert!((flat(target)[18] - (2.0 * 0.01 - 1.0)).abs() < 1e-6);
        let batch = loader(toy(2, "depth"), config.clone())
            .epoch(0)
            .next()
            .unwrap()
            .unwrap();
        let BatchTarget::Depth { depth, valid } = &batch.target else {
            panic!("depth expected")
        };
        assert_eq!(depth.dims(), [2, 1, 2, 3]);
        assert_eq!(flat(valid)[..3], [0.0, 1.0, 1.0]);
        assert_eq!(flat(depth)[..2], [0.0, 1.0]);
        let batch = loader(toy(2, "seg"), config)
            .epoch(0)
            .next()
            .unwrap()
            .unwrap();
        let BatchTarget::Segmentation { classes } = &batch.target else {
            panic!("segmentation expected")
        };
        assert_eq!(classes.dims(), [2, 2, 3]);
        assert_eq!(classes.dtype(), candle_core::DType::U32);
    }

    #[test]
    fn bad_samples_become_errors_not_panics() {
        for workers in [0, 2] {
            let config = LoaderConfig {
                batch_size: 2,
                shuffle: false,
                workers,
                ..LoaderConfig::default()
            };
            let ds = Toy {
                fail: Some(1),
                panic_at: Some(3),
                odd: Some(5),
                ..toy(8, "seg")
            };
            let results: Vec<Result<Batch>> = loader(ds, config.clone()).epoch(0).collect();
            assert_eq!(results.len(), 4);
            let err = results[0].as_ref().unwrap_err().to_string();
            assert!(err.contains("sample 1") && err.contains("toy.png"), "{err}");
            let err = results[1].as_ref().unwrap_err().to_string();
            assert!(err.contains("panicked"), "{err}");
            assert!(matches!(results[2], Err(DataError::SizeMismatch { .. })));
            assert!(results[3].is_ok());
            // Class ids outside the table.
            let strict = LoaderConfig {
                num_classes: Some(5),
                ..config
            };
            let results: Vec<Result<Batch>> = loader(toy(8, "seg"), strict).epoch(0).collect();
            assert!(results[0].is_ok() && results[1].is_ok());
            let err = results[2].as_ref().unwrap_err().to_string();
            assert!(
                err.contains("sample 5") && err.contains("class id 5"),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_configs_are_rejected() {
        let ds: Arc<dyn Dataset> = Arc::new(toy(2, "class"));
        let zero = LoaderConfig {
            batch_size: 0,
            ..LoaderConfig::default()
        };
        assert!(DataLoader::new(ds.clone(), zero).is_err());
        let bad_norm = LoaderConfig {
            normalization: Normalization {
                mean: vec![0.0, 0.0],
                std: vec![1.0],
            },
            ..LoaderConfig::default()
        };
        assert!(DataLoader::new(ds, bad_norm).is_err());
    }
}
