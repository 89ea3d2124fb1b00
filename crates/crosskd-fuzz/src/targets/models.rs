//! Targets of crosskd-models: PyTorch `.pth` files (zip and legacy pickle), model checkpoints
//! (safetensors with an architecture in the metadata) and the teacher-feature cache (manifest
//! JSON and safetensors shards).

use std::io::{Read, Write};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use crosskd_models::arch::ArchitectureConfig;
use crosskd_models::cache::{CacheKey, FeatureCache, IndexedBatch};
use crosskd_models::checkpoint::{load_checkpoint_network, save_varmap_checkpoint};
use crosskd_models::students::small_resnet::SmallResnetConfig;
use crosskd_models::teacher::FrozenTeacher;
use crosskd_models::weights::{convert_to_safetensors, read_pytorch_checkpoint, to_candle_tensors};

use super::{put, refused, Target};

/// A zip checkpoint written by `torch.save` (see crosskd-models' `fixtures/make_fixtures.py`).
const ZIP_PLAIN: &[u8] =
    include_bytes!("../../../crosskd-models/src/weights/fixtures/zip_plain.pth");
/// A legacy (pre-1.6) checkpoint with the state dict nested under a key.
const LEGACY_NESTED: &[u8] =
    include_bytes!("../../../crosskd-models/src/weights/fixtures/legacy_nested.pth");

/// `zip` re-packed with every member deflated (torch stores them; other writers compress).
fn deflated(zip_bytes: &[u8]) -> Option<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).ok()?;
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for i in 0..archive.len() {
        let mut member = archive.by_index(i).ok()?;
        let mut bytes = Vec::new();
        member.read_to_end(&mut bytes).ok()?;
        out.start_file(member.name().to_owned(), options).ok()?;
        out.write_all(&bytes).ok()?;
    }
    Some(out.finish().ok()?.into_inner())
}

/// PyTorch checkpoints through the reader, the candle conversion and the safetensors writer.
pub(crate) struct Pth;

impl Target for Pth {
    fn name(&self) -> &'static str {
        "pth"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds = vec![ZIP_PLAIN.to_vec(), LEGACY_NESTED.to_vec()];
        seeds.extend(deflated(ZIP_PLAIN));
        seeds
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"PK\x03\x04",
            b"PK\x01\x02",
            b"PK\x05\x06",
            b"\x80\x02\x8a",
            b"ctorch._utils\n_rebuild_tensor_v2\n",
            b"ccollections\nOrderedDict\n",
            b"ctorch\nFloatStorage\n",
            b"\x8c\x07storage",
            b"(",
            b"t",
            b"R",
            b"Q",
            b"q\x00",
            b"h\x00",
            b"\x94",
            b"\x93",
            b"}",
            b"u",
            b".",
        ]
    }

    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String> {
        let path = put(dir, "model.pth", input)?;
        let tensors = read_pytorch_checkpoint(&path).map_err(refused)?;
        to_candle_tensors(&tensors, &Device::Cpu).map_err(refused)?;
        convert_to_safetensors(&path, &dir.join("model.safetensors")).map_err(refused)?;
        Ok(())
    }
}

fn tiny_resnet() -> ArchitectureConfig {
    ArchitectureConfig::SmallResnet(SmallResnetConfig {
        widths: vec![4, 8],
        blocks: vec![1, 1],
        ..SmallResnetConfig::default()
    })
}

/// A model checkpoint (safetensors, architecture JSON in the metadata) through
/// [`load_checkpoint_network`], which validates every tensor against the architecture.
pub(crate) struct ModelCheckpoint;

impl Target for ModelCheckpoint {
    fn name(&self) -> &'static str {
        "model-checkpoint"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let Ok(dir) = tempfile::tempdir() else {
            return Vec::new();
        };
        let path = dir.path().join("model.safetensors");
        let Ok((_, varmap)) =
            crosskd_models::build_seeded(&tiny_resnet(), 3, DType::F32, &Device::Cpu)
        else {
            return Vec::new();
        };
        if save_varmap_checkpoint(&path, &tiny_resnet(), &varmap).is_err() {
            return Vec::new();
        }
        std::fs::read(path).into_iter().collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        SAFETENSORS_TOKENS
    }

    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String> {
        let path = put(dir, "model.safetensors", input)?;
        load_checkpoint_network(&path, DType::F32, &Device::Cpu)
            .map(|_| ())
            .map_err(refused)
    }
}

/// Header tokens of safetensors files.
pub(crate) const SAFETENSORS_TOKENS: &[&[u8]] = &[
    b"\"dtype\":\"F32\"",
    b"\"dtype\":\"U8\"",
    b"\"dtype\":\"F64\"",
    b"\"shape\":[]",
    b"\"shape\":[1000000,1000000]",
    b"\"data_offsets\":[0,0]",
    b"\"data_offsets\":[0,1000000000000]",
    b"\"__metadata__\":{}",
    b"{}",
    b"                ",
];

/// A feature cache written by [`FeatureCache::build`] with a real (small, random) teacher: the
/// files, and the key that names its folder.
#[derive(Clone)]
struct CacheFiles {
    key: CacheKey,
    manifest: Vec<u8>,
    shards: Vec<(String, Vec<u8>)>,
}

fn build_cache() -> Option<CacheFiles> {
    let root = tempfile::tempdir().ok()?;
    let teacher = FrozenTeacher::random(&tiny_resnet(), 1, None, &Device::Cpu).ok()?;
    let key = CacheKey::new(&teacher, "pooled", "fuzz:n=5", "none");
    let batches: Vec<Result<IndexedBatch, String>> = [vec![3usize, 0, 4], vec![1, 2]]
        .into_iter()
        .map(|indices| {
            let v: Vec<f32> = (0..indices.len() * 3 * 8 * 8)
                .map(|i| (i % 17) as f32 / 16.0)
                .collect();
            Tensor::from_vec(v, (indices.len(), 3, 8, 8), &Device::Cpu)
                .map(|t| (indices, t))
                .map_err(|e| e.to_string())
        })
        .collect();
    let cache = FeatureCache::build(root.path(), &key, &teacher, 2, batches, &Device::Cpu).ok()?;
    let manifest = std::fs::read(cache.dir().join("manifest.json")).ok()?;
    let mut shards = Vec::new();
    for entry in std::fs::read_dir(cache.dir()).ok()? {
        let path = entry.ok()?.path();
        let name = path.file_name()?.to_string_lossy().into_owned();
        if name.ends_with(".safetensors") {
            shards.push((name, std::fs::read(&path).ok()?));
        }
    }
    shards.sort();
    Some(CacheFiles {
        key,
        manifest,
        shards,
    })
}

/// Opens the cache under `root`, verifies every shard and reads every sample.
fn read_cache(root: &Path, key: &CacheKey) -> Result<(), String> {
    let cache = FeatureCache::open(root, key, &Device::Cpu).map_err(refused)?;
    cache.verify().map_err(refused)?;
    for i in 0..cache.len().min(16) {
        cache.get(i).map_err(refused)?;
    }
    Ok(())
}

/// The cache's `manifest.json` (the shards stay valid).
#[derive(Default)]
pub(crate) struct CacheManifest {
    files: Option<CacheFiles>,
}

impl Target for CacheManifest {
    fn name(&self) -> &'static str {
        "cache-manifest"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        build_cache().map(|f| f.manifest).into_iter().collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"\"num-samples\":",
            b"\"feature-shape\":",
            b"\"indices\":",
            b"\"file\":",
            b"1000000000000",
            b"18446744073709551615",
            b"[]",
            b"\"../manifest.json\"",
        ]
    }

    fn prepare(&mut self, dir: &Path) -> std::io::Result<()> {
        let files = build_cache().ok_or_else(|| std::io::Error::other("building the cache"))?;
        let folder = dir.join(files.key.digest());
        std::fs::create_dir_all(&folder)?;
        for (name, bytes) in &files.shards {
            std::fs::write(folder.join(name), bytes)?;
        }
        self.files = Some(files);
        Ok(())
    }

    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String> {
        let key = &self.files.as_ref().ok_or("no cache files")?.key;
        put(dir, &format!("{}/manifest.json", key.digest()), input)?;
        read_cache(dir, key)
    }
}

/// The cache's first shard, with the manifest's SHA-256 updated to match, so the safetensors
/// parsing and the shape checks behind the hash are reached.
#[derive(Default)]
pub(crate) struct CacheShard {
    files: Option<CacheFiles>,
    manifest: Option<serde_json::Value>,
}

impl Target for CacheShard {
    fn name(&self) -> &'static str {
        "cache-shard"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        build_cache()
            .and_then(|f| f.shards.into_iter().next())
            .map(|(_, bytes)| bytes)
            .into_iter()
            .collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        SAFETENSORS_TOKENS
    }

    fn prepare(&mut self, dir: &Path) -> std::io::Result<()> {
        let files = build_cache().ok_or_else(|| std::io::Error::other("building the cache"))?;
        let folder = dir.join(files.key.digest());
        std::fs::create_dir_all(&folder)?;
        for (name, bytes) in &files.shards {
            std::fs::write(folder.join(name), bytes)?;
        }
        self.manifest = serde_json::from_slice(&files.manifest).ok();
        self.files = Some(files);
        Ok(())
    }

    fn execute(&mut self, dir: &Path, input: &[u8]) -> Result<(), String> {
        let files = self.files.as_ref().ok_or("no cache files")?;
        let mut manifest = self.manifest.clone().ok_or("no manifest")?;
        let folder = files.key.digest();
        let first = &files.shards.first().ok_or("no shards")?.0;
        manifest["shards"][0]["sha256"] =
            serde_json::Value::String(crosskd_models::storage::sha256_hex(input));
        let text = serde_json::to_vec(&manifest).map_err(refused)?;
        put(dir, &format!("{folder}/manifest.json"), &text)?;
        put(dir, &format!("{folder}/{first}"), input)?;
        read_cache(dir, &files.key)
    }
}
