//! Reading and atomically writing safetensors files with their metadata and content hash.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// The tensors, metadata and SHA-256 (hex) of one safetensors file.
#[derive(Debug)]
pub struct SafetensorsFile {
    /// Tensors by name, on the requested device, in the file's dtypes.
    pub tensors: HashMap<String, Tensor>,
    /// The `__metadata__` entries (empty when absent).
    pub metadata: BTreeMap<String, String>,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a whole safetensors file.
pub fn read_safetensors(path: &Path, dev: &Device) -> Result<SafetensorsFile> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let st_err = |m: String| ModelError::Safetensors {
        path: path.to_path_buf(),
        message: m,
    };
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| st_err(e.to_string()))?;
    let metadata = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, dev).map_err(|e| st_err(e.to_string()))?;
    Ok(SafetensorsFile {
        tensors,
        metadata,
        sha256: sha256_hex(&bytes),
    })
}

/// Serialises `tensors` (written in name order) with `metadata`, and writes the file atomically
/// (a temporary file in the same folder, flushed, then renamed over `path`). Returns the file's
/// SHA-256.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<String> {
    let mut sorted: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let info: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let bytes = safetensors::serialize(sorted, if info.is_empty() { None } else { Some(info) })
        .map_err(|e| ModelError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    write_atomic(path, &bytes)?;
    Ok(sha256_hex(&bytes))
}

/// Writes `bytes` to `path` through a temporary sibling file and a rename, so readers never see
/// a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{unique}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::io(path, e));
    }
    Ok(())
}
