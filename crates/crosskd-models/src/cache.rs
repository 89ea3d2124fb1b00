//! The teacher-feature cache: run a frozen teacher once over a data set and store the feature at
//! one tap in safetensors shards, so training reads features instead of recomputing them.
//!
//! Layout under a root folder: one folder per [`CacheKey`], named by the first 16 hex digits of
//! the SHA-256 of the key's JSON, holding `manifest.json` and `shard-NNNNN.safetensors` files
//! (tensor `features`, `(n, ..feature shape)`, f32; tensor `indices`, `(n)`, u32). The manifest
//! records the full key, the feature shape, and for every shard its sample indices and SHA-256.
//!
//! - Any change of teacher identity (weights, architecture, input normalisation), tap, data set
//!   identity or preprocessing gives another key, hence another folder: the old features are
//!   never read for the new setting. [`CacheMode::RequireExisting`] refuses a missing key with an
//!   error naming the caches that do exist and which key parts differ.
//! - A cache is built in a temporary folder and renamed into place when complete, so a crashed
//!   build leaves nothing that looks valid.
//! - Each shard's SHA-256 is checked when it is first loaded: a corrupted shard is an error
//!   naming the file.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::storage::{sha256_hex, write_atomic, write_safetensors};
use crate::teacher::Teacher;

/// The manifest's format tag.
pub const CACHE_FORMAT_V1: &str = "crosskd-feature-cache-v1";

/// Everything the cached features depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CacheKey {
    /// [`Teacher::identity`] of the teacher.
    pub teacher: String,
    /// The tap whose features are stored.
    pub tap: String,
    /// Names the data set and split (e.g. `scenes:seed=3:n=2000:size=64`), supplied by the caller.
    pub dataset: String,
    /// Names the deterministic preprocessing applied before the teacher (resize, crop, ...).
    pub preprocessing: String,
}

impl CacheKey {
    /// The key of `teacher`'s features at `tap`.
    pub fn new(teacher: &dyn Teacher, tap: &str, dataset: &str, preprocessing: &str) -> Self {
        Self {
            teacher: teacher.identity(),
            tap: tap.into(),
            dataset: dataset.into(),
            preprocessing: preprocessing.into(),
        }
    }

    /// First 16 hex digits of the SHA-256 of the key's JSON: the cache folder's name.
    pub fn digest(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        sha256_hex(json.as_bytes())[..16].to_string()
    }

    /// The names of the parts in which `self` and `other` differ.
    pub fn differences(&self, other: &CacheKey) -> Vec<&'static str> {
        let mut d = Vec::new();
        if self.teacher != other.teacher {
            d.push("teacher");
        }
        if self.tap != other.tap {
            d.push("tap");
        }
        if self.dataset != other.dataset {
            d.push("dataset");
        }
        if self.preprocessing != other.preprocessing {
            d.push("preprocessing");
        }
        d
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ShardEntry {
    file: String,
    sha256: String,
    indices: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Manifest {
    format: String,
    key: CacheKey,
    feature_shape: Vec<usize>,
    num_samples: usize,
    shards: Vec<ShardEntry>,
}

/// What to do when no cache exists for the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Build it with the teacher.
    BuildIfMissing,
    /// Refuse with an error naming the caches present.
    RequireExisting,
}

/// Whether [`FeatureCache::open_or_build`] found the cache or built it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// The features were already there.
    Hit,
    /// The teacher ran over the data set.
    Built,
}

/// One batch from the data source: the samples' indices and their images `(n, 3, H, W)`.
pub type IndexedBatch = (Vec<usize>, Tensor);

/// Features of one teacher tap over one data set, read by sample index.
pub struct FeatureCache {
    dir: PathBuf,
    manifest: Manifest,
    /// Sample index → (shard, row).
    location: HashMap<usize, (usize, usize)>,
    loaded: Mutex<(HashMap<usize, Tensor>, VecDeque<usize>)>,
    max_loaded_shards: usize,
    device: Device,
}

fn cache_err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Cache {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl FeatureCache {
    /// Opens the cache of `teacher` at `tap` for `dataset`/`preprocessing` under `root`, building
    /// it when absent (or unreadable) and `mode` allows: `batches()` is then called once and must
    /// yield every sample exactly once; features are written `shard_size` samples per shard.
    #[allow(clippy::too_many_arguments)]
    pub fn open_or_build<F, I, E>(
        root: &Path,
        teacher: &dyn Teacher,
        tap: &str,
        dataset: &str,
        preprocessing: &str,
        mode: CacheMode,
        shard_size: usize,
        batches: F,
        dev: &Device,
    ) -> Result<(Self, CacheStatus)>
    where
        F: FnOnce() -> I,
        I: IntoIterator<Item = std::result::Result<IndexedBatch, E>>,
        E: Display,
    {
        let key = CacheKey::new(teacher, tap, dataset, preprocessing);
        match (Self::open(root, &key, dev), mode) {
            (Ok(cache), _) => Ok((cache, CacheStatus::Hit)),
            (Err(e), CacheMode::RequireExisting) => Err(e),
            (Err(_), CacheMode::BuildIfMissing) => Ok((
                Self::build(root, &key, teacher, shard_size, batches(), dev)?,
                CacheStatus::Built,
            )),
        }
    }

    /// Opens an existing cache for `key`; a missing one is an error listing the caches under
    /// `root` and how their keys differ from `key`.
    pub fn open(root: &Path, key: &CacheKey, dev: &Device) -> Result<Self> {
        let dir = root.join(key.digest());
        let manifest_path = dir.join("manifest.json");
        if !manifest_path.exists() {
            return Err(cache_err(
                &dir,
                format!(
                    "no cache for key {key:?}.\n{}",
                    describe_existing(root, key)
                ),
            ));
        }
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| ModelError::io(&manifest_path, e))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            cache_err(
                &manifest_path,
                format!("unreadable manifest ({e}); delete the folder to rebuild"),
            )
        })?;
        if manifest.format != CACHE_FORMAT_V1 {
            return Err(cache_err(
                &manifest_path,
                format!("format {:?}, expected {CACHE_FORMAT_V1:?}", manifest.format),
            ));
        }
        if &manifest.key != key {
            return Err(cache_err(
                &manifest_path,
                format!(
                    "manifest key differs from the requested one in {:?}",
                    manifest.key.differences(key)
                ),
            ));
        }
        // `num-samples` is checked against the indices actually listed before it sizes anything:
        // a manifest announcing 10^12 samples must be an error, not a 10^12-entry allocation.
        let listed: usize = manifest.shards.iter().map(|s| s.indices.len()).sum();
        if listed != manifest.num_samples {
            return Err(cache_err(
                &manifest_path,
                format!(
                    "num-samples is {}, but the shards list {listed} sample indices",
                    manifest.num_samples
                ),
            ));
        }
        let mut location = HashMap::with_capacity(listed);
        for (s, shard) in manifest.shards.iter().enumerate() {
            let path = dir.join(&shard.file);
            if !path.is_file() {
                return Err(cache_err(&path, "shard listed in the manifest is missing"));
            }
            for (row, &index) in shard.indices.iter().enumerate() {
                if let Some((other, _)) = location.insert(index, (s, row)) {
                    return Err(cache_err(
                        &manifest_path,
                        format!(
                            "sample index {index} is listed in shard {} and in shard {}",
                            manifest.shards[other].file, shard.file
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            dir,
            manifest,
            location,
            loaded: Mutex::new((HashMap::new(), VecDeque::new())),
            max_loaded_shards: usize::MAX,
            device: dev.clone(),
        })
    }

    /// Runs `teacher` at `key.tap` over `batches` and writes the cache for `key` (replacing any
    /// previous one for the same key).
    pub fn build<I, E>(
        root: &Path,
        key: &CacheKey,
        teacher: &dyn Teacher,
        shard_size: usize,
        batches: I,
        dev: &Device,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = std::result::Result<IndexedBatch, E>>,
        E: Display,
    {
        if shard_size == 0 {
            return Err(cache_err(root, "shard size must be positive"));
        }
        if key.teacher != teacher.identity() {
            return Err(cache_err(
                root,
                "the key's teacher identity is not the given teacher's",
            ));
        }
        std::fs::create_dir_all(root).map_err(|e| ModelError::io(root, e))?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = root.join(format!(
            ".building-{}-{}-{}",
            key.digest(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = write_cache_folder(&tmp, key, teacher, shard_size, batches);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let dir = root.join(key.digest());
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| ModelError::io(&dir, e))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| ModelError::io(&dir, e))?;
        Self::open(root, key, dev)
    }

    /// Keeps at most `n` shards in memory (default: all), dropping the least recently loaded.
    pub fn with_max_loaded_shards(mut self, n: usize) -> Self {
        self.max_loaded_shards = n.max(1);
        self
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key the features belong to.
    pub fn key(&self) -> &CacheKey {
        &self.manifest.key
    }

    /// Per-sample feature shape.
    pub fn feature_shape(&self) -> &[usize] {
        &self.manifest.feature_shape
    }

    /// Number of cached samples.
    pub fn len(&self) -> usize {
        self.manifest.num_samples
    }

    /// True when no sample is cached.
    pub fn is_empty(&self) -> bool {
        self.manifest.num_samples == 0
    }

    /// The feature of sample `index`, shape [`FeatureCache::feature_shape`].
    pub fn get(&self, index: usize) -> Result<Tensor> {
        let &(shard, row) = self.location.get(&index).ok_or_else(|| {
            cache_err(
                &self.dir,
                format!(
                    "sample index {index} is not in the cache ({} samples)",
                    self.len()
                ),
            )
        })?;
        Ok(self.shard(shard)?.get(row)?)
    }

    /// The features of `indices` stacked: `(indices.len(), ..feature shape)`.
    pub fn get_batch(&self, indices: &[usize]) -> Result<Tensor> {
        let rows = indices
            .iter()
            .map(|&i| self.get(i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// Loads every shard once, checking its hash (a full integrity check).
    pub fn verify(&self) -> Result<()> {
        for s in 0..self.manifest.shards.len() {
            self.read_shard(s)?;
        }
        Ok(())
    }

    fn shard(&self, s: usize) -> Result<Tensor> {
        {
            let loaded = self
                .loaded
                .lock()
                .map_err(|_| cache_err(&self.dir, "shard table lock poisoned"))?;
            if let Some(t) = loaded.0.get(&s) {
                return Ok(t.clone());
            }
        }
        let t = self.read_shard(s)?;
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| cache_err(&self.dir, "shard table lock poisoned"))?;
        let (table, order) = &mut *loaded;
        if table.insert(s, t.clone()).is_none() {
            order.push_back(s);
        }
        while table.len() > self.max_loaded_shards {
            match order.pop_front() {
                Some(old) => {
                    table.remove(&old);
                }
                None => break,
            }
        }
        Ok(t)
    }

    fn read_shard(&self, s: usize) -> Result<Tensor> {
        let entry = &self.manifest.shards[s];
        let path = self.dir.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        let found = sha256_hex(&bytes);
        if found != entry.sha256 {
            return Err(cache_err(
                &path,
                format!("corrupted shard: SHA-256 {found}, manifest says {}; delete the cache folder to rebuild", entry.sha256),
            ));
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, &self.device)
            .map_err(|e| cache_err(&path, format!("unreadable shard: {e}")))?;
        let features = tensors
            .get("features")
            .ok_or_else(|| cache_err(&path, "no `features` tensor"))?;
        let mut want = vec![entry.indices.len()];
        want.extend_from_slice(&self.manifest.feature_shape);
        if features.dims() != want.as_slice() {
            return Err(cache_err(
                &path,
                format!(
                    "features have shape {:?}, expected {want:?}",
                    features.dims()
                ),
            ));
        }
        Ok(features.clone())
    }
}

/// Runs the teacher and writes shards and manifest into `dir` (a fresh temporary folder).
fn write_cache_folder<I, E>(
    dir: &Path,
    key: &CacheKey,
    teacher: &dyn Teacher,
    shard_size: usize,
    batches: I,
) -> Result<()>
where
    I: IntoIterator<Item = std::result::Result<IndexedBatch, E>>,
    E: Display,
{
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut seen = std::collections::HashSet::new();
    let mut pending_rows: Vec<Tensor> = Vec::new();
    let mut pending_indices: Vec<usize> = Vec::new();
    let mut shards = Vec::new();
    let mut feature_shape: Option<Vec<usize>> = None;
    for (b, batch) in batches.into_iter().enumerate() {
        let (indices, images) =
            batch.map_err(|e| cache_err(dir, format!("data source failed at batch {b}: {e}")))?;
        let n = images.dim(0)?;
        if n != indices.len() {
            return Err(cache_err(
                dir,
                format!("batch {b}: {} indices for {n} images", indices.len()),
            ));
        }
        let feats = teacher.features(&images, &[key.tap.as_str()])?;
        let f = feats
            .get(&key.tap)
            .ok_or_else(|| {
                cache_err(
                    dir,
                    format!("teacher returned no feature for tap {}", key.tap),
                )
            })?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?;
        let shape = f.dims()[1..].to_vec();
        if let Some(s) = &feature_shape {
            if *s != shape {
                return Err(cache_err(
                    dir,
                    format!("batch {b}: feature shape {shape:?} differs from earlier {s:?}"),
                ));
            }
        }
        feature_shape.get_or_insert(shape);
        for (row, &index) in indices.iter().enumerate() {
            if !seen.insert(index) {
                return Err(cache_err(
                    dir,
                    format!("sample index {index} appears twice (batch {b})"),
                ));
            }
            pending_rows.push(f.get(row)?);
            pending_indices.push(index);
            if pending_rows.len() == shard_size {
                shards.push(write_shard(
                    dir,
                    shards.len(),
                    &mut pending_rows,
                    &mut pending_indices,
                )?);
            }
        }
    }
    if !pending_rows.is_empty() {
        shards.push(write_shard(
            dir,
            shards.len(),
            &mut pending_rows,
            &mut pending_indices,
        )?);
    }
    let manifest = Manifest {
        format: CACHE_FORMAT_V1.into(),
        key: key.clone(),
        feature_shape: feature_shape.unwrap_or_default(),
        num_samples: seen.len(),
        shards,
    };
    let json =
        serde_json::to_string_pretty(&manifest).map_err(|e| cache_err(dir, e.to_string()))?;
    write_atomic(&dir.join("manifest.json"), json.as_bytes())
}

fn write_shard(
    dir: &Path,
    number: usize,
    rows: &mut Vec<Tensor>,
    indices: &mut Vec<usize>,
) -> Result<ShardEntry> {
    let file = format!("shard-{number:05}.safetensors");
    let features = Tensor::stack(rows, 0)?;
    let index_tensor = Tensor::from_vec(
        indices.iter().map(|&i| i as u32).collect::<Vec<u32>>(),
        indices.len(),
        &Device::Cpu,
    )?;
    let sha256 = write_safetensors(
        &dir.join(&file),
        &[
            ("features".to_string(), features),
            ("indices".to_string(), index_tensor),
        ],
        &BTreeMap::new(),
    )?;
    rows.clear();
    Ok(ShardEntry {
        file,
        sha256,
        indices: std::mem::take(indices),
    })
}

/// Lists the caches under `root` with the key parts in which each differs from `key`.
fn describe_existing(root: &Path, key: &CacheKey) -> String {
    let mut lines = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root) {
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        for dir in dirs {
            let Ok(text) = std::fs::read_to_string(dir.join("manifest.json")) else {
                continue;
            };
            let Ok(m) = serde_json::from_str::<Manifest>(&text) else {
                continue;
            };
            lines.push(format!(
                "  {}: tap {:?}, dataset {:?}; differs in {:?}",
                dir.display(),
                m.key.tap,
                m.key.dataset,
                m.key.differences(key)
            ));
        }
    }
    if lines.is_empty() {
        format!("No caches under {}.", root.display())
    } else {
        format!(
            "Caches present under {}:\n{}",
            root.display(),
            lines.join("\n")
        )
    }
}
