//! The teacher-feature cache in training (`train.cache-teacher`): the frozen teacher's distilled
//! tensor (the feature at its tap, or its logits for logit KD) is computed once per training
//! sample into a [`FeatureCache`] under the run folder, `<run>/teacher-cache/`, and read back by
//! sample instead of recomputed every step.
//!
//! Valid when a teacher is configured and every training input is a fixed function of its sample
//! index and of what the cache keys on. Today's only augmentation, the horizontal flip, is keyed:
//! entry `2·index + flipped` holds the teacher's output on the (flipped) sample, so a flipped
//! batch reads its own entries. The teacher runs in eval mode (batch norm from running
//! statistics), so a sample's feature does not depend on the batch it is computed in, and a run
//! with the cache is bit-identical to one without (tested on CPU).
//!
//! The cache lives in the run folder because it belongs to the run's data and teacher (both in
//! the config hash), it is reused when the run resumes, and no two runs write one folder.

use crate::config::{Augment, AugmentSettings};
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use crosskd_models::cache::{CacheMode, CacheStatus, FeatureCache, IndexedBatch};

use crate::config::{CacheTeacher, Config};
use crate::error::{Result, TrainError};
use crate::session::Session;
use crate::task::{component, Batch};

/// The cache's folder under the run folder.
pub const CACHE_DIR: &str = "teacher-cache";

/// Under `auto`, features larger than this (all keys together, f32) are computed every step
/// instead: the cache keeps them all in memory.
const AUTO_MEMORY_BUDGET_BYTES: usize = 1 << 30;

/// Samples per shard file.
const SHARD_SIZE: usize = 512;

/// Why the teacher cache cannot serve this config (`None` when it can).
pub fn blocker(config: &Config) -> Option<String> {
    if !config.teacher.is_some() {
        return Some("no teacher is configured (teacher.kind = \"none\")".into());
    }
    // The whole-batch flip of `data.augment = true` is keyed; the per-sample table's random
    // crops, flips and jitter draw a new input every epoch, which no key can name.
    match &config.data.augment {
        Augment::Settings(s) if *s != AugmentSettings::default() => Some(
            "data.augment applies per-sample random crops, flips or colour jitter, which the cache \
             cannot key on"
                .into(),
        ),
        _ => None,
    }
}

/// Whether training batches are mirrored as a whole (the keyed flip of `data.augment`).
fn flips_batches(config: &Config) -> bool {
    config.data.augment.flips_whole_batches()
}

/// The `[data]` section without the keyed flip (which is in the key's preprocessing part).
fn data_without_flip(config: &Config) -> crate::config::DataConfig {
    let mut data = config.data.clone();
    data.augment = Augment::Switch(false);
    data
}

/// The cache key of training sample `index`, flipped or not.
pub fn key(index: usize, flipped: bool) -> usize {
    2 * index + usize::from(flipped)
}

/// The key of the same sample mirrored.
pub fn flip_key(key: usize) -> usize {
    key ^ 1
}

/// Cached teacher outputs of the training samples, by [`key`].
pub struct TeacherCache {
    cache: FeatureCache,
}

impl TeacherCache {
    /// The teacher outputs of `keys`, stacked `(keys.len(), ..)`.
    pub fn get(&self, keys: &[usize]) -> Result<Tensor> {
        self.cache
            .get_batch(keys)
            .map_err(|e| component("teacher cache", e))
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        self.cache.dir()
    }
}

/// Opens (or builds) the cache for `session` under `run_dir` when `train.cache-teacher` and the
/// config allow, and attaches it to the session's teacher; returns the folder used and whether it
/// was built, or `None` when the teacher runs every step. `load` builds the un-augmented training
/// batch of the given sample indices exactly as the trainer's data phase does (same loader, same
/// resizing), so the cached features are those of the images the student will see.
pub fn attach<L>(
    session: &mut Session,
    run_dir: &Path,
    load: L,
) -> Result<Option<(PathBuf, CacheStatus)>>
where
    L: Fn(&Session, &[usize]) -> Result<Batch>,
{
    let mode = session.config.train.cache_teacher;
    if mode == CacheTeacher::Off || session.teacher.is_none() {
        return Ok(None);
    }
    if let Some(why) = blocker(&session.config) {
        return match mode {
            CacheTeacher::On => Err(TrainError::config(
                "train.cache-teacher",
                format!("\"on\" cannot hold: {why}"),
            )),
            _ => Ok(None),
        };
    }
    let flips = flips_batches(&session.config);
    let train_len = session.data.train.len();
    let n_keys = train_len * if flips { 2 } else { 1 };
    let bytes = n_keys.saturating_mul(target_elements(session)?.saturating_mul(4));
    if mode == CacheTeacher::Auto && bytes > AUTO_MEMORY_BUDGET_BYTES {
        tracing::info!(
            "teacher cache skipped: {n_keys} entries would take {} MiB (auto caches up to {} MiB; \
             train.cache-teacher = \"on\" caches anyway)",
            bytes >> 20,
            AUTO_MEMORY_BUDGET_BYTES >> 20
        );
        return Ok(None);
    }
    let Some(side) = session.teacher.as_ref() else {
        return Ok(None);
    };
    let root = run_dir.join(CACHE_DIR);
    let batch_size = session.config.train.batch_size.max(1);
    let shared: &Session = session;
    let fill = || {
        fill_batches(train_len, batch_size, flips, move |i: &[usize]| {
            load(shared, i)
        })
    };
    let (cache, status) = FeatureCache::open_or_build(
        &root,
        side.teacher.as_ref(),
        &side.target,
        &dataset_identity(&session.config, train_len),
        if flips {
            "key=2*index+hflip"
        } else {
            "key=2*index"
        },
        CacheMode::BuildIfMissing,
        SHARD_SIZE,
        fill,
        &session.device,
    )
    .map_err(|e| component("teacher cache", e))?;
    let dir = cache.dir().to_path_buf();
    if let Some(side) = session.teacher.as_mut() {
        side.cache = Some(TeacherCache { cache });
    }
    Ok(Some((dir, status)))
}

/// Elements of one sample's teacher output.
fn target_elements(session: &Session) -> Result<usize> {
    let Some(side) = &session.teacher else {
        return Ok(0);
    };
    let s = session
        .data
        .train
        .get(0)
        .map_err(|e| component("training data", e))?;
    let shapes = side
        .teacher
        .validate_taps((s.image.height, s.image.width), &[side.target.as_str()])
        .map_err(|e| component("teacher", e))?;
    Ok(shapes
        .first()
        .map(|(_, shape)| shape.iter().product())
        .unwrap_or(0))
}

/// Names the training data the features belong to: the `[data]` section (the flip is in the
/// preprocessing part of the key instead), the student architecture (its input channels choose
/// grey or RGB samples) and the training-set size.
fn dataset_identity(config: &Config, train_len: usize) -> String {
    let data = data_without_flip(config);
    let student = config
        .student_arch()
        .map(|a| a.to_json())
        .unwrap_or_default();
    format!(
        "{};student={student};train-len={train_len}",
        serde_json::to_string(&data).unwrap_or_default()
    )
}

/// The training samples `0..n` in index order, `batch_size` at a time, with their keys; each
/// batch also mirrored when the run flips.
fn fill_batches<L>(
    n: usize,
    batch_size: usize,
    flips: bool,
    load: L,
) -> impl Iterator<Item = Result<IndexedBatch>>
where
    L: Fn(&[usize]) -> Result<Batch>,
{
    (0..n.div_ceil(batch_size)).flat_map(move |b| {
        let indices: Vec<usize> = (b * batch_size..((b + 1) * batch_size).min(n)).collect();
        let batch = load(&indices);
        let mut out = Vec::with_capacity(2);
        match batch {
            Err(e) => out.push(Err(e)),
            Ok(batch) => {
                let plain = indices.iter().map(|&i| key(i, false)).collect();
                let mirrored = if flips {
                    Some(
                        batch
                            .flipped()
                            .map(|f| (indices.iter().map(|&i| key(i, true)).collect(), f.images)),
                    )
                } else {
                    None
                };
                out.push(Ok((plain, batch.images)));
                out.extend(mirrored);
            }
        }
        out
    })
}
