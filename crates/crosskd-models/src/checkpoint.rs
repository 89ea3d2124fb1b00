//! The model checkpoint file contract, shared by the trainer (which writes) and the in-house
//! teacher (which reads).
//!
//! A checkpoint is one safetensors file:
//! - tensors: the network's parameters and batch-norm buffers under their parameter names
//!   (`enc1.conv1.weight`, `enc1.norm1.running_mean`, …), optionally all behind one prefix
//!   (e.g. `student.`) so that a trainer can store other modules (heads, projectors) in the same
//!   file under other prefixes; tensors outside the prefix are ignored when loading the network;
//! - metadata `crosskd.format` = `crosskd-model-v1`;
//! - metadata `crosskd.architecture` = the [`ArchitectureConfig`] as JSON
//!   (e.g. `{"arch":"unet","in-channels":3,"base-width":32,...}`);
//! - metadata `crosskd.prefix` = the prefix of the network's tensors (absent or empty: none);
//! - any other metadata the trainer wants (`crosskd.task`, `crosskd.step`, …) is kept and ignored.
//!
//! Loading validates the tensors under the prefix against the architecture: missing,
//! unexpected or wrongly shaped tensors are refused with an error listing all of them.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use crate::arch::{build_from_tensors, ArchitectureConfig};
use crate::error::{ModelError, Result};
use crate::network::TappedNetwork;
use crate::params::sorted_vars;
use crate::storage::{read_safetensors, write_safetensors};

/// Metadata key of the format tag.
pub const FORMAT_KEY: &str = "crosskd.format";
/// The format tag this version writes and reads.
pub const FORMAT_V1: &str = "crosskd-model-v1";
/// Metadata key of the architecture JSON.
pub const ARCHITECTURE_KEY: &str = "crosskd.architecture";
/// Metadata key of the prefix of the network's tensors.
pub const PREFIX_KEY: &str = "crosskd.prefix";

/// Writes `tensors` (the network's, named without prefix) as a checkpoint of `arch`, each name
/// prefixed with `prefix`, plus `extra` tensors written as named (other modules) and `metadata`
/// entries (which must not use the three contract keys). Atomic; returns the file's SHA-256.
pub fn save_checkpoint(
    path: &Path,
    arch: &ArchitectureConfig,
    prefix: &str,
    tensors: &[(String, Tensor)],
    extra: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<String> {
    for key in [FORMAT_KEY, ARCHITECTURE_KEY, PREFIX_KEY] {
        if metadata.contains_key(key) {
            return Err(ModelError::CheckpointMetadata {
                path: path.to_path_buf(),
                message: format!("extra metadata may not set the reserved key {key}"),
            });
        }
    }
    let mut all: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (format!("{prefix}{n}"), t.clone()))
        .collect();
    for (name, t) in extra {
        if !prefix.is_empty() && name.starts_with(prefix) {
            return Err(ModelError::CheckpointMetadata {
                path: path.to_path_buf(),
                message: format!("extra tensor {name} lies under the network prefix {prefix:?}"),
            });
        }
        all.push((name.clone(), t.clone()));
    }
    let mut meta = metadata.clone();
    meta.insert(FORMAT_KEY.into(), FORMAT_V1.into());
    meta.insert(ARCHITECTURE_KEY.into(), arch.to_json());
    meta.insert(PREFIX_KEY.into(), prefix.into());
    write_safetensors(path, &all, &meta)
}

/// Writes every variable of `varmap` (sorted by name) as a checkpoint of `arch` with no prefix.
pub fn save_varmap_checkpoint(
    path: &Path,
    arch: &ArchitectureConfig,
    varmap: &VarMap,
) -> Result<String> {
    save_checkpoint(path, arch, "", &sorted_vars(varmap), &[], &BTreeMap::new())
}

/// A checkpoint read from disk (network tensors only, prefix removed).
#[derive(Debug)]
pub struct Checkpoint {
    /// The architecture it stores.
    pub arch: ArchitectureConfig,
    /// The network's tensors, named without prefix.
    pub tensors: std::collections::HashMap<String, Tensor>,
    /// All metadata entries.
    pub metadata: BTreeMap<String, String>,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// Reads a checkpoint, checking the format tag and parsing the architecture.
pub fn read_checkpoint(path: &Path, dev: &Device) -> Result<Checkpoint> {
    let file = read_safetensors(path, dev)?;
    let meta_err = |m: String| ModelError::CheckpointMetadata {
        path: path.to_path_buf(),
        message: m,
    };
    match file.metadata.get(FORMAT_KEY) {
        Some(f) if f == FORMAT_V1 => {}
        Some(f) => {
            return Err(meta_err(format!(
                "{FORMAT_KEY} is {f:?}, expected {FORMAT_V1:?}"
            )))
        }
        None => {
            return Err(meta_err(format!(
                "no {FORMAT_KEY} entry: not a crosskd model checkpoint (found metadata keys {:?})",
                file.metadata.keys().collect::<Vec<_>>()
            )))
        }
    }
    let arch_json = file
        .metadata
        .get(ARCHITECTURE_KEY)
        .ok_or_else(|| meta_err(format!("no {ARCHITECTURE_KEY} entry")))?;
    let arch: ArchitectureConfig = serde_json::from_str(arch_json)
        .map_err(|e| meta_err(format!("{ARCHITECTURE_KEY} = {arch_json}: {e}")))?;
    let prefix = file.metadata.get(PREFIX_KEY).cloned().unwrap_or_default();
    let tensors = file
        .tensors
        .into_iter()
        .filter_map(|(name, t)| {
            name.strip_prefix(prefix.as_str())
                .map(|n| (n.to_string(), t))
        })
        .collect();
    Ok(Checkpoint {
        arch,
        tensors,
        metadata: file.metadata,
        sha256: file.sha256,
    })
}

/// Reads a checkpoint and builds its network, validating every tensor name and shape.
pub fn load_checkpoint_network(
    path: &Path,
    dtype: DType,
    dev: &Device,
) -> Result<(Box<dyn TappedNetwork>, Checkpoint)> {
    let mut ckpt = read_checkpoint(path, dev)?;
    let tensors = std::mem::take(&mut ckpt.tensors);
    let net = build_from_tensors(&ckpt.arch, tensors, &path.display().to_string(), dtype, dev)?;
    Ok((net, ckpt))
}
