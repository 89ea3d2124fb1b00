//! Where a configured `pretrained` teacher's weights are on this machine: its local file, or its
//! hub file in the hf-hub cache.

use std::path::PathBuf;

use crosskd_models::naming::WeightNaming;
use crosskd_models::ArchitectureConfig;

use super::hub::{self, HubError};
use crate::config::TeacherConfig;
use crate::error::{Result, TrainError};

/// A `pretrained` teacher's weights on this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainedWeights {
    /// The architecture that loads them.
    pub architecture: ArchitectureConfig,
    /// The safetensors file (a hub file's path in the cache).
    pub path: PathBuf,
    /// How the file names its tensors.
    pub naming: WeightNaming,
}

/// Finds the weights of a `pretrained` teacher: its `weights` file, or its hub file in the hf-hub
/// cache (downloaded there unless `HF_HUB_OFFLINE` is set; a pinned SHA-256 checked), with
/// `name` looked up first. `None` for other teachers. Errors name the config key.
pub fn pretrained_weights(teacher: &TeacherConfig) -> Result<Option<PretrainedWeights>> {
    let mut teacher = teacher.clone();
    teacher.resolve_source()?;
    let TeacherConfig::Pretrained {
        architecture,
        weights,
        naming,
        ..
    } = &teacher
    else {
        return Ok(None);
    };
    let architecture = architecture.clone().ok_or_else(|| {
        TrainError::config(
            "teacher.architecture",
            "expected an architecture table, found none",
        )
    })?;
    let path = match (weights, teacher.hub_file()) {
        (Some(w), _) if !w.exists() => {
            return Err(TrainError::config(
                "teacher.weights",
                format!(
                    "no file {} (convert a PyTorch checkpoint with `crosskd import-weights`, or name a hub file with `teacher.hub`)",
                    w.display()
                ),
            ))
        }
        (Some(w), _) => w.clone(),
        (None, Some(file)) => {
            let key_error = |e: HubError| TrainError::config("teacher.hub", e.to_string());
            let cache = hub::cache_dir().map_err(key_error)?;
            let path = hub::resolve(&cache, &file, hub::offline_from_env()).map_err(key_error)?;
            if file.sha256.is_none() {
                tracing::warn!(
                    "teacher {} is unpinned (no teacher.sha256): {} is used unchecked",
                    file.label(),
                    path.display()
                );
            }
            path
        }
        (None, None) => {
            return Err(TrainError::config(
                "teacher",
                "expected `weights`, `hub` or `name`, found none",
            ))
        }
    };
    Ok(Some(PretrainedWeights {
        architecture,
        path,
        naming: *naming,
    }))
}
