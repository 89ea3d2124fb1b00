//! Checkpoints: one safetensors file holding the student, the projector, the optimiser state and,
//! in its metadata, the step, the data-loader position, the RNG state and the config hash.
//!
//! Files are written atomically (temporary file, fsync, rename, fsync of the folder), so an
//! interrupted write never leaves a truncated `last.safetensors` behind, and each records a
//! digest of its content (`crosskd.content-sha256`), so a file damaged later (a flipped bit on
//! disk, a bad copy) is refused on load instead of silently resuming from wrong weights.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TrainError};

/// Value of the `format` metadata entry of every checkpoint this crate writes.
pub const CHECKPOINT_FORMAT: &str = "crosskd-checkpoint-1";

/// Writes `bytes` to `path` atomically: a temporary file in the same folder is written and
/// fsynced, renamed over `path`, and the folder is fsynced so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| TrainError::io(p, e)
    };
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    pause_for_crash_tests(path);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    // Directory fsync makes the rename durable; some file systems refuse to open folders, and the
    // data itself is already safe then, so a failure here is not an error.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Environment variable of the crash tests' pause hook: milliseconds to sleep inside every
/// checkpoint write, between the complete temporary file and its rename.
pub const PAUSE_HOOK_ENV: &str = "CROSSKD_TEST_PAUSE_IN_CHECKPOINT_WRITE_MS";

/// Test-only: when [`PAUSE_HOOK_ENV`] is set, announces on stderr that a checkpoint write is in
/// progress and sleeps, so a test can SIGKILL the process exactly there. Unset (always, outside
/// the crash tests), it costs one environment lookup per file written.
fn pause_for_crash_tests(path: &Path) {
    let is_checkpoint = path.extension().is_some_and(|e| e == "safetensors");
    if let Some(ms) = std::env::var(PAUSE_HOOK_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| is_checkpoint)
    {
        eprintln!(
            "crosskd-test-hook: paused in checkpoint write {}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Where training stands: what a resumed run needs besides the tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingPosition {
    /// Optimiser steps completed.
    pub step: u64,
    /// The epoch the next batch belongs to (0-based).
    pub epoch: u64,
    /// Index of the next batch within that epoch.
    pub batch_in_epoch: u64,
    /// State of the trainer's random generator (augmentation, sampling).
    pub rng: RngState,
    /// Best validation value of the primary metric so far, and the step it was reached at.
    pub best: Option<(f64, u64)>,
}

/// The exact state of a `ChaCha8Rng`: seed, stream and word position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RngState {
    /// The 32-byte seed.
    pub seed: [u8; 32],
    /// The stream number.
    pub stream: u64,
    /// Position in the key stream, in 32-bit words.
    pub word_pos: u128,
}

impl RngState {
    /// Captures a generator's state.
    pub fn capture(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos(),
        }
    }

    /// A generator in exactly this state.
    pub fn restore(&self) -> ChaCha8Rng {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos);
        rng
    }

    fn encode(&self) -> String {
        format!(
            "{}:{}:{}",
            hex::encode(self.seed),
            self.stream,
            self.word_pos
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let seed_hex = parts.next()?;
        let stream = parts.next()?.parse().ok()?;
        let word_pos = parts.next()?.parse().ok()?;
        let bytes = hex::decode(seed_hex).ok()?;
        let seed: [u8; 32] = bytes.try_into().ok()?;
        Some(RngState {
            seed,
            stream,
            word_pos,
        })
    }
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Every tensor, by name (`student.…`, `projector.…`, `optim.…`).
    pub tensors: HashMap<String, Tensor>,
    /// Where training stands.
    pub position: TrainingPosition,
    /// [`crate::config::Config::hash`] of the run that wrote it.
    pub config_hash: String,
    /// Further metadata entries (the `crosskd.*` model-checkpoint contract of
    /// `crosskd_models::checkpoint`, the trainer's logging state).
    pub extra: HashMap<String, String>,
}

impl Checkpoint {
    /// Serialises the checkpoint and writes it atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let p = &self.position;
        let mut meta = self.extra.clone();
        meta.insert("format".to_string(), CHECKPOINT_FORMAT.to_string());
        meta.insert("step".to_string(), p.step.to_string());
        meta.insert("epoch".to_string(), p.epoch.to_string());
        meta.insert("batch_in_epoch".to_string(), p.batch_in_epoch.to_string());
        meta.insert("rng".to_string(), p.rng.encode());
        meta.insert("config_hash".to_string(), self.config_hash.clone());
        if let Some((value, step)) = p.best {
            // `{:?}` prints the shortest text that parses back to the same f64.
            meta.insert("best_value".to_string(), format!("{value:?}"));
            meta.insert("best_step".to_string(), step.to_string());
        }
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let data: Vec<(&str, &Tensor)> = names
            .iter()
            .map(|n| (n.as_str(), &self.tensors[*n]))
            .collect();
        let bytes = crosskd_models::storage::serialize_with_digest(&data, meta).map_err(|e| {
            TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        write_atomic(path, &bytes)
    }

    /// Whether the file at `path` is an intact checkpoint: readable, and its content matches the
    /// digest recorded when it was written. The error says what is wrong.
    pub fn verify(path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        Self::verify_bytes(path, &bytes)
    }

    fn verify_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
        use crosskd_models::storage::{verify_content_digest, DigestCheck};
        let bad = |message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        match verify_content_digest(bytes).map_err(|e| bad(format!("unreadable: {e}")))? {
            DigestCheck::Verified => Ok(()),
            DigestCheck::Absent => Err(bad(
                "records no content digest, so it cannot be checked (not written by this version of crosskd)".into(),
            )),
            DigestCheck::Mismatch { recorded, actual } => Err(bad(format!(
                "corrupt: its content hashes to {actual}, but it was written with {recorded}"
            ))),
        }
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path, device: &Device) -> Result<Checkpoint> {
        let bad = |message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        Self::verify_bytes(path, &bytes)?;
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| {
            meta.get(key)
                .ok_or_else(|| bad(format!("metadata entry `{key}` is missing")))
        };
        let format = get("format")?;
        if format != CHECKPOINT_FORMAT {
            return Err(bad(format!(
                "expected format \"{CHECKPOINT_FORMAT}\", found \"{format}\""
            )));
        }
        let num = |key: &str| -> Result<u64> {
            get(key)?
                .parse()
                .map_err(|_| bad(format!("metadata entry `{key}` is not a number")))
        };
        let rng = RngState::decode(get("rng")?)
            .ok_or_else(|| bad("metadata entry `rng` is malformed".into()))?;
        let best = match (meta.get("best_value"), meta.get("best_step")) {
            (Some(v), Some(s)) => Some((
                v.parse()
                    .map_err(|_| bad("metadata entry `best_value` is not a number".into()))?,
                s.parse()
                    .map_err(|_| bad("metadata entry `best_step` is not a number".into()))?,
            )),
            _ => None,
        };
        let position = TrainingPosition {
            step: num("step")?,
            epoch: num("epoch")?,
            batch_in_epoch: num("batch_in_epoch")?,
            rng,
            best,
        };
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)?;
        let config_hash = get("config_hash")?.clone();
        let own = [
            "format",
            "step",
            "epoch",
            "batch_in_epoch",
            "rng",
            "config_hash",
            "best_value",
            "best_step",
            crosskd_models::storage::CONTENT_DIGEST_KEY,
        ];
        let extra = meta
            .into_iter()
            .filter(|(k, _)| !own.contains(&k.as_str()))
            .collect();
        Ok(Checkpoint {
            tensors,
            position,
            config_hash,
            extra,
        })
    }

    /// The tensors under `prefix.` with the prefix removed (e.g. the student's weights).
    pub fn section(&self, prefix: &str) -> HashMap<String, Tensor> {
        let p = format!("{prefix}.");
        self.tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&p).map(|rest| (rest.to_string(), v.clone())))
            .collect()
    }
}

/// Paths of the checkpoints inside a run folder.
pub fn checkpoint_path(run_dir: &Path, which: &str) -> PathBuf {
    run_dir
        .join("checkpoints")
        .join(format!("{which}.safetensors"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn interrupted_write_keeps_the_previous_file() {
        // A crash between writing the temporary and renaming it leaves the old file intact: the
        // temporary lives under another name.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        write_atomic(&path, b"good").unwrap();
        std::fs::write(
            dir.path()
                .join(format!(".last.safetensors.tmp-{}", std::process::id())),
            b"partial",
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"good");
        write_atomic(&path, b"newer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"newer");
    }

    #[test]
    fn checkpoint_round_trip_restores_tensors_position_and_rng() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        rng.set_stream(3);
        for _ in 0..5 {
            rng.next_u32();
        }
        let mut tensors = HashMap::new();
        tensors.insert(
            "student.w".to_string(),
            Tensor::new(&[1.5f32, -2.0], &Device::Cpu).unwrap(),
        );
        let ck = Checkpoint {
            tensors,
            position: TrainingPosition {
                step: 12,
                epoch: 1,
                batch_in_epoch: 4,
                rng: RngState::capture(&rng),
                best: Some((0.1 + 0.2, 8)),
            },
            config_hash: "abc".into(),
            extra: HashMap::from([("crosskd.task".to_string(), "depth".to_string())]),
        };
        let path = dir.path().join("c.safetensors");
        ck.save(&path).unwrap();
        let back = Checkpoint::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back.position, ck.position);
        assert_eq!(back.config_hash, "abc");
        assert_eq!(back.extra, ck.extra);
        assert_eq!(
            back.section("student")["w"].to_vec1::<f32>().unwrap(),
            vec![1.5, -2.0]
        );
        let mut restored = back.position.rng.restore();
        assert_eq!(restored.next_u64(), rng.next_u64());
    }

    #[test]
    fn flipped_bytes_are_detected_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let ck = Checkpoint {
            tensors: HashMap::from([(
                "student.w".to_string(),
                Tensor::new(&[1.5f32, -2.0, 0.25, 8.0], &Device::Cpu).unwrap(),
            )]),
            position: TrainingPosition {
                step: 12,
                epoch: 1,
                batch_in_epoch: 4,
                rng: RngState::capture(&ChaCha8Rng::seed_from_u64(1)),
                best: None,
            },
            config_hash: "abc".into(),
            extra: HashMap::new(),
        };
        let path = dir.path().join("c.safetensors");
        ck.save(&path).unwrap();
        Checkpoint::verify(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        // One byte of tensor data (the file ends with it), then one digit of the step number in
        // the header's metadata: both change what a resumed run would do.
        let mut data_flip = good.clone();
        let last = data_flip.len() - 1;
        data_flip[last] ^= 0x10;
        let mut meta_flip = good.clone();
        let text = String::from_utf8_lossy(&good).into_owned();
        let at = text.find("\"step\":\"12\"").unwrap() + "\"step\":\"".len();
        meta_flip[at] = b'7';
        for (what, bytes) in [("tensor data", data_flip), ("metadata", meta_flip)] {
            std::fs::write(&path, &bytes).unwrap();
            let err = Checkpoint::load(&path, &Device::Cpu)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("corrupt") && err.contains("c.safetensors"),
                "{what}: {err}"
            );
        }
    }
}
