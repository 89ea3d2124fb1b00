//! PyTorch checkpoint import without Python and without executing pickle code.
//!
//! [`read_pytorch_checkpoint`] reads both `torch.save` formats (zip, torch >= 1.6, and the legacy
//! pre-1.6 format) with a pickle reader that accepts only the opcodes and globals a state dict is
//! made of and refuses everything else by name ([`WeightsError::UnsupportedOpcode`],
//! [`WeightsError::ForbiddenGlobal`]). [`convert_to_safetensors`] writes the result atomically;
//! [`check_state_dict`] compares what a model expects with what a file holds and lists every
//! difference.

mod checkpoint;
mod error;
mod pickle;
mod tensor;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

pub use checkpoint::{
    read_pytorch_checkpoint, read_pytorch_checkpoint_with, Checkpoint, CheckpointFormat,
    ReadOptions, NESTED_STATE_DICT_KEYS,
};
pub use error::{Result, WeightsError};
pub use tensor::{NamedTensor, StorageDtype};

/// What [`convert_to_safetensors`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionReport {
    /// The checkpoint's container format.
    pub format: CheckpointFormat,
    /// Number of tensors written.
    pub tensors: usize,
    /// Total number of elements over all tensors (`Σ ∏ shape`).
    pub elements: u64,
    /// Total tensor payload in bytes.
    pub payload_bytes: u64,
    /// Number of tensors of each dtype.
    pub tensors_by_dtype: BTreeMap<StorageDtype, usize>,
    /// The safetensors file written.
    pub out: PathBuf,
}

/// Converts a PyTorch checkpoint to safetensors (the state dict found by default
/// [`ReadOptions`]).
pub fn convert_to_safetensors(from: &Path, out: &Path) -> Result<ConversionReport> {
    convert_to_safetensors_with(from, out, &ReadOptions::default())
}

/// [`convert_to_safetensors`] with options. The file is written to a temporary file beside `out`,
/// flushed to disk and renamed over `out`, so a crash never leaves a half-written `out`.
pub fn convert_to_safetensors_with(
    from: &Path,
    out: &Path,
    options: &ReadOptions,
) -> Result<ConversionReport> {
    let checkpoint = read_pytorch_checkpoint_with(from, options)?;
    let metadata = HashMap::from([
        ("format".to_owned(), "pt".to_owned()),
        (
            "source".to_owned(),
            from.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    ]);
    let mut metadata = metadata;
    // The digest lets every later reader (`read_safetensors`) tell a corrupted copy from the
    // imported weights.
    let digest = crate::storage::content_digest(
        &metadata,
        checkpoint.tensors.iter().map(|(name, t)| {
            (
                name.as_str(),
                safetensors::View::dtype(&t),
                t.shape.as_slice(),
                t.data.as_slice(),
            )
        }),
    );
    metadata.insert(crate::storage::CONTENT_DIGEST_KEY.to_owned(), digest);
    let views = checkpoint
        .tensors
        .iter()
        .map(|(name, t)| (name.as_str(), t));
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| WeightsError::Safetensors {
            path: out.to_owned(),
            message: e.to_string(),
        })?;
    write_atomically(out, &bytes)?;
    let mut tensors_by_dtype = BTreeMap::new();
    for (_, t) in &checkpoint.tensors {
        *tensors_by_dtype.entry(t.dtype).or_insert(0) += 1;
    }
    Ok(ConversionReport {
        format: checkpoint.format,
        tensors: checkpoint.tensors.len(),
        elements: checkpoint
            .tensors
            .iter()
            .map(|(_, t)| t.numel() as u64)
            .sum(),
        payload_bytes: checkpoint
            .tensors
            .iter()
            .map(|(_, t)| t.data.len() as u64)
            .sum(),
        tensors_by_dtype,
        out: out.to_owned(),
    })
}

fn write_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = checkpoint::temp_path_for(out);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| WeightsError::Io { path, source }
    };
    let written = (|| -> std::io::Result<()> {
        // A new output folder (e.g. `models/weights/`) is created, as users expect of `--out`.
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        // Best effort: the temporary file is ours and useless now; the write error is the news.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    if let Err(e) = std::fs::rename(&tmp, out) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(out)(e));
    }
    // Make the rename itself durable; directories cannot be opened for syncing on every
    // platform, so a failure here is not an error.
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// `(name, shape)` of each tensor, the form [`check_state_dict`] compares.
pub fn tensor_shapes(tensors: &[(String, NamedTensor)]) -> Vec<(String, Vec<usize>)> {
    tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone()))
        .collect()
}

/// Checks that `found` has exactly the tensors of `expected` with the same shapes.
///
/// On any difference the error lists every missing tensor, every unexpected one and every shape
/// mismatch (each sorted by name), so one run shows all that is wrong.
pub fn check_state_dict(
    expected: &[(String, Vec<usize>)],
    found: &[(String, Vec<usize>)],
) -> Result<()> {
    let expected_map: BTreeMap<&str, &Vec<usize>> =
        expected.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let found_map: BTreeMap<&str, &Vec<usize>> =
        found.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let mut missing = Vec::new();
    let mut wrong_shape = Vec::new();
    for (name, shape) in &expected_map {
        match found_map.get(name) {
            None => missing.push((name.to_string(), shape.to_vec())),
            Some(f) if f != shape => {
                wrong_shape.push((name.to_string(), shape.to_vec(), f.to_vec()))
            }
            Some(_) => {}
        }
    }
    let unexpected: Vec<(String, Vec<usize>)> = found_map
        .iter()
        .filter(|(name, _)| !expected_map.contains_key(*name))
        .map(|(name, shape)| (name.to_string(), shape.to_vec()))
        .collect();
    if missing.is_empty() && unexpected.is_empty() && wrong_shape.is_empty() {
        Ok(())
    } else {
        Err(WeightsError::StateDictMismatch {
            missing,
            unexpected,
            wrong_shape,
        })
    }
}

/// The tensors as candle tensors by name (e.g. for `VarBuilder::from_tensors`).
pub fn to_candle_tensors(
    tensors: &[(String, NamedTensor)],
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    tensors
        .iter()
        .map(|(name, t)| Ok((name.clone(), t.to_candle(name, device)?)))
        .collect()
}

#[cfg(test)]
mod tests;
