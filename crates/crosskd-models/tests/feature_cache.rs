//! The teacher-feature cache: hit, miss after any key change, corruption detected.

use std::cell::Cell;

use candle_core::{Device, Tensor};
use crosskd_models::arch::ArchitectureConfig;
use crosskd_models::cache::{CacheKey, CacheMode, CacheStatus, FeatureCache, IndexedBatch};
use crosskd_models::students::small_resnet::SmallResnetConfig;
use crosskd_models::teacher::{FrozenTeacher, Teacher};
use crosskd_models::Result;

const N: usize = 10;

fn teacher(seed: u64) -> Result<FrozenTeacher> {
    let arch = ArchitectureConfig::SmallResnet(SmallResnetConfig {
        widths: vec![4, 8],
        blocks: vec![1, 1],
        ..SmallResnetConfig::default()
    });
    FrozenTeacher::random(&arch, seed, None, &Device::Cpu)
}

fn image(index: usize) -> Result<Tensor> {
    let v: Vec<f32> = (0..3 * 8 * 8)
        .map(|i| ((i * 7 + index * 13) % 17) as f32 / 16.0)
        .collect();
    Ok(Tensor::from_vec(v, (1, 3, 8, 8), &Device::Cpu)?)
}

/// Batches of 4 (the last one short), in a shuffled index order.
fn batches(calls: &Cell<usize>) -> Vec<std::result::Result<IndexedBatch, String>> {
    calls.set(calls.get() + 1);
    let order = [3, 7, 0, 9, 1, 4, 8, 2, 6, 5];
    order
        .chunks(4)
        .map(|chunk| {
            let imgs: Vec<Tensor> = chunk
                .iter()
                .map(|&i| image(i))
                .collect::<Result<_>>()
                .map_err(|e| e.to_string())?;
            Ok((
                chunk.to_vec(),
                Tensor::cat(&imgs, 0).map_err(|e| e.to_string())?,
            ))
        })
        .collect()
}

fn open(
    root: &std::path::Path,
    t: &FrozenTeacher,
    tap: &str,
    dataset: &str,
    calls: &Cell<usize>,
) -> Result<(FeatureCache, CacheStatus)> {
    FeatureCache::open_or_build(
        root,
        t,
        tap,
        dataset,
        "none",
        CacheMode::BuildIfMissing,
        3,
        || batches(calls),
        &Device::Cpu,
    )
}

#[test]
fn hit_returns_the_teachers_features_without_running_it() -> Result<()> {
    let root = tempfile::tempdir().expect("temporary folder");
    let t = teacher(1)?;
    let calls = Cell::new(0);
    let (built, status) = open(root.path(), &t, "stage2", "toy:n=10", &calls)?;
    assert_eq!(
        (status, calls.get(), built.len()),
        (CacheStatus::Built, 1, N)
    );
    assert_eq!(built.feature_shape(), &[8, 4, 4]);
    let (cache, status) = open(root.path(), &t, "stage2", "toy:n=10", &calls)?;
    assert_eq!(
        (status, calls.get()),
        (CacheStatus::Hit, 1),
        "the teacher did not run again"
    );
    for index in 0..N {
        let want = t.features(&image(index)?, &["stage2"])?["stage2"].squeeze(0)?;
        let got = cache.get(index)?;
        assert_eq!(
            (got - want)?.abs()?.sum_all()?.to_scalar::<f32>()?,
            0.0,
            "sample {index}"
        );
    }
    assert_eq!(cache.get_batch(&[9, 0, 4])?.dims(), &[3, 8, 4, 4]);
    assert!(cache.get(N).is_err());
    cache.verify()?;
    // With one shard in memory at a time, reads still agree.
    let small =
        FeatureCache::open(root.path(), cache.key(), &Device::Cpu)?.with_max_loaded_shards(1);
    for index in [0, 9, 0, 5] {
        assert_eq!(
            (small.get(index)? - cache.get(index)?)?
                .abs()?
                .sum_all()?
                .to_scalar::<f32>()?,
            0.0
        );
    }
    Ok(())
}

#[test]
fn any_key_change_misses() -> Result<()> {
    let root = tempfile::tempdir().expect("temporary folder");
    let calls = Cell::new(0);
    let t1 = teacher(1)?;
    let (base, _) = open(root.path(), &t1, "stage2", "toy:n=10", &calls)?;
    let (other_data, s1) = open(root.path(), &t1, "stage2", "toy:n=10:v2", &calls)?;
    let (other_tap, s2) = open(root.path(), &t1, "stage1", "toy:n=10", &calls)?;
    let t2 = teacher(2)?;
    let (other_teacher, s3) = open(root.path(), &t2, "stage2", "toy:n=10", &calls)?;
    assert_eq!([s1, s2, s3], [CacheStatus::Built; 3]);
    assert_eq!(calls.get(), 4);
    let dirs = [
        base.dir(),
        other_data.dir(),
        other_tap.dir(),
        other_teacher.dir(),
    ];
    for (i, a) in dirs.iter().enumerate() {
        for b in &dirs[i + 1..] {
            assert_ne!(a, b);
        }
    }
    let d = (base.get(0)? - other_teacher.get(0)?)?
        .abs()?
        .sum_all()?
        .to_scalar::<f32>()?;
    assert!(d > 0.0, "another teacher gives other features");

    let wanted = CacheKey::new(&t1, "stage2", "toy:n=10", "resize=16");
    let msg = FeatureCache::open(root.path(), &wanted, &Device::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("no cache for key"), "{msg}");
    assert!(msg.contains("differs in [\"preprocessing\"]"), "{msg}");
    let required = FeatureCache::open_or_build(
        root.path(),
        &t1,
        "stage2",
        "toy:n=10",
        "resize=16",
        CacheMode::RequireExisting,
        3,
        || batches(&calls),
        &Device::Cpu,
    );
    assert!(required.is_err());
    assert_eq!(calls.get(), 4, "RequireExisting never runs the teacher");
    Ok(())
}

#[test]
fn a_corrupted_shard_is_detected() -> Result<()> {
    let root = tempfile::tempdir().expect("temporary folder");
    let calls = Cell::new(0);
    let t = teacher(1)?;
    let (cache, _) = open(root.path(), &t, "pooled", "toy:n=10", &calls)?;
    let shard = cache.dir().join("shard-00001.safetensors");
    let mut bytes = std::fs::read(&shard).expect("read shard");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&shard, bytes).expect("write shard");
    let reopened = FeatureCache::open(root.path(), cache.key(), &Device::Cpu)?;
    let msg = reopened
        .verify()
        .expect_err("corruption detected")
        .to_string();
    assert!(
        msg.contains("shard-00001.safetensors") && msg.contains("corrupted shard"),
        "{msg}"
    );
    // Samples of intact shards still read; those of the damaged one do not.
    assert!(reopened.get(3).is_ok(), "shard 0 holds sample 3");
    assert!(reopened.get(9).is_err(), "shard 1 holds sample 9");
    Ok(())
}

#[test]
fn duplicate_indices_and_failing_sources_are_refused() -> Result<()> {
    let root = tempfile::tempdir().expect("temporary folder");
    let t = teacher(1)?;
    let key = CacheKey::new(&t, "pooled", "dup", "none");
    let dup: Vec<std::result::Result<IndexedBatch, String>> =
        vec![Ok((vec![1, 1], Tensor::cat(&[image(1)?, image(1)?], 0)?))];
    let msg = FeatureCache::build(root.path(), &key, &t, 4, dup, &Device::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("appears twice"), "{msg}");
    let failing: Vec<std::result::Result<IndexedBatch, String>> = vec![Err("disk on fire".into())];
    let msg = FeatureCache::build(root.path(), &key, &t, 4, failing, &Device::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("disk on fire"), "{msg}");
    let leftovers = std::fs::read_dir(root.path()).expect("list").count();
    assert_eq!(leftovers, 0, "failed builds leave nothing behind");
    Ok(())
}

/// Found by `cargo xtask fuzz` (target cache-manifest): a manifest announcing 10^12 samples made
/// `open` reserve a 10^12-entry table (an abort, not an error). The count is now checked against
/// the indices the shards list, and an index listed twice is refused too.
#[test]
fn manifest_counts_are_checked_before_use() -> Result<()> {
    let root = tempfile::tempdir().expect("temporary folder");
    let calls = Cell::new(0);
    let t = teacher(1)?;
    let (cache, _) = open(root.path(), &t, "pooled", "toy:n=10", &calls)?;
    let manifest = cache.dir().join("manifest.json");
    let text = std::fs::read_to_string(&manifest).expect("read manifest");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("manifest JSON");
    json["num-samples"] = 1_000_000_000_000u64.into();
    std::fs::write(&manifest, json.to_string()).expect("write manifest");
    let msg = FeatureCache::open(root.path(), cache.key(), &Device::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        msg.contains("manifest.json") && msg.contains("num-samples is 1000000000000"),
        "{msg}"
    );
    json["num-samples"] = N.into();
    json["shards"][1]["indices"][0] = json["shards"][0]["indices"][0].clone();
    std::fs::write(&manifest, json.to_string()).expect("write manifest");
    let msg = FeatureCache::open(root.path(), cache.key(), &Device::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(msg.contains("is listed in shard shard-00000"), "{msg}");
    Ok(())
}
