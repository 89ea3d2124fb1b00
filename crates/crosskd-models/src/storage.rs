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

/// Metadata entry holding a file's content digest (see [`content_digest`]).
pub const CONTENT_DIGEST_KEY: &str = "crosskd.content-sha256";

/// What [`verify_content_digest`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestCheck {
    /// The file records a digest and its content matches it.
    Verified,
    /// The file records no digest (written by another tool): nothing could be checked.
    Absent,
    /// The content differs from the recorded digest: the file is corrupt.
    Mismatch {
        /// The digest the file records.
        recorded: String,
        /// The digest of what the file holds now.
        actual: String,
    },
}

/// SHA-256 (hex) of a safetensors file's *content*: every metadata entry but the digest itself,
/// then every tensor's name, dtype, shape and bytes, all in name order.
///
/// A digest of the whole file cannot be stored inside it; this one can, and it still covers
/// everything a reader uses (a flipped byte in a tensor, a shape or a metadata value changes it).
pub fn content_digest<'a>(
    metadata: &HashMap<String, String>,
    tensors: impl IntoIterator<Item = (&'a str, safetensors::Dtype, &'a [usize], &'a [u8])>,
) -> String {
    let mut hasher = Sha256::new();
    let mut entries: Vec<(&String, &String)> = metadata
        .iter()
        .filter(|(k, _)| k.as_str() != CONTENT_DIGEST_KEY)
        .collect();
    entries.sort();
    // Lengths before every variable-size field keep the encoding unambiguous.
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for (k, v) in entries {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    let mut tensors: Vec<_> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    for (name, dtype, shape, data) in tensors {
        field(name.as_bytes());
        field(format!("{dtype:?}").as_bytes());
        let dims: Vec<u8> = shape
            .iter()
            .flat_map(|d| (*d as u64).to_le_bytes())
            .collect();
        field(&dims);
        field(data);
    }
    hex::encode(hasher.finalize())
}

/// A tensor as the digest reads it: name, dtype, shape and bytes.
type TensorBytes<'a> = (
    &'a str,
    safetensors::Dtype,
    Vec<usize>,
    std::borrow::Cow<'a, [u8]>,
);

/// Serialises `tensors` with `metadata` plus a [`CONTENT_DIGEST_KEY`] entry, so a reader can
/// tell a corrupt file from an intact one ([`verify_content_digest`]).
pub fn serialize_with_digest(
    tensors: &[(&str, &Tensor)],
    mut metadata: HashMap<String, String>,
) -> std::result::Result<Vec<u8>, safetensors::SafeTensorError> {
    use safetensors::View;
    let data: Vec<TensorBytes<'_>> = tensors
        .iter()
        .map(|(n, t)| (*n, View::dtype(t), View::shape(t).to_vec(), View::data(t)))
        .collect();
    let digest = content_digest(
        &metadata,
        data.iter()
            .map(|(n, d, s, b)| (*n, *d, s.as_slice(), b.as_ref())),
    );
    metadata.insert(CONTENT_DIGEST_KEY.to_string(), digest);
    safetensors::serialize(tensors.iter().map(|(n, t)| (*n, *t)), Some(metadata))
}

/// Checks a safetensors file's bytes against the content digest it records.
pub fn verify_content_digest(
    bytes: &[u8],
) -> std::result::Result<DigestCheck, safetensors::SafeTensorError> {
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let Some(recorded) = metadata.get(CONTENT_DIGEST_KEY).cloned() else {
        return Ok(DigestCheck::Absent);
    };
    let views = st.tensors();
    let actual = content_digest(
        &metadata,
        views
            .iter()
            .map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())),
    );
    Ok(if actual == recorded {
        DigestCheck::Verified
    } else {
        DigestCheck::Mismatch { recorded, actual }
    })
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a whole safetensors file. A file that records a content digest
/// ([`CONTENT_DIGEST_KEY`]) is checked against it; a mismatch is an error naming the file.
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
    match verify_content_digest(&bytes).map_err(|e| st_err(e.to_string()))? {
        DigestCheck::Verified | DigestCheck::Absent => {}
        DigestCheck::Mismatch { recorded, actual } => {
            return Err(st_err(format!(
                "corrupt file: its content hashes to {actual}, but it was written with {recorded} (re-create or re-download it)"
            )))
        }
    }
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, dev).map_err(|e| st_err(e.to_string()))?;
    Ok(SafetensorsFile {
        tensors,
        metadata,
        sha256: sha256_hex(&bytes),
    })
}

/// Serialises `tensors` (written in name order) with `metadata` and a content digest, and writes the file atomically
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
    let bytes = serialize_with_digest(&sorted, info).map_err(|e| ModelError::Safetensors {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(String, Tensor)> {
        vec![
            (
                "b".to_string(),
                Tensor::new(&[1.0f32, 2.0, 3.0], &Device::Cpu).unwrap(),
            ),
            (
                "a".to_string(),
                Tensor::new(&[[7u32, 8]], &Device::Cpu).unwrap(),
            ),
        ]
    }

    #[test]
    fn written_files_verify_and_a_flipped_byte_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
        write_safetensors(&path, &sample(), &meta).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            verify_content_digest(&bytes).unwrap(),
            DigestCheck::Verified
        );
        let back = read_safetensors(&path, &Device::Cpu).unwrap();
        assert_eq!(
            back.tensors["b"].to_vec1::<f32>().unwrap(),
            vec![1.0, 2.0, 3.0]
        );

        let mut bad = bytes.clone();
        let end = bad.len() - 1;
        bad[end] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            verify_content_digest(&bad).unwrap(),
            DigestCheck::Mismatch { .. }
        ));
        let e = read_safetensors(&path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupt") && e.contains("w.safetensors"), "{e}");
    }

    #[test]
    fn files_without_a_digest_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("foreign.safetensors");
        let t = sample();
        let views: Vec<(&str, &Tensor)> = t.iter().map(|(n, t)| (n.as_str(), t)).collect();
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(verify_content_digest(&bytes).unwrap(), DigestCheck::Absent);
        assert_eq!(
            read_safetensors(&path, &Device::Cpu).unwrap().tensors.len(),
            2
        );
    }

    #[test]
    fn the_digest_does_not_depend_on_tensor_order_but_on_every_value() {
        let t = sample();
        let forward: Vec<(&str, &Tensor)> = t.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let backward: Vec<(&str, &Tensor)> = forward.iter().rev().cloned().collect();
        let digest = |v: &[(&str, &Tensor)]| {
            let bytes = serialize_with_digest(v, HashMap::new()).unwrap();
            let (_, h) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            h.metadata().clone().unwrap()[CONTENT_DIGEST_KEY].clone()
        };
        assert_eq!(digest(&forward), digest(&backward));
        let other = Tensor::new(&[1.0f32, 2.0, 3.5], &Device::Cpu).unwrap();
        let changed = vec![("b", &other), forward[1]];
        assert_ne!(digest(&forward), digest(&changed));
    }
}
