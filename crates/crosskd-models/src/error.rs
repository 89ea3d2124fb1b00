//! The error type of crosskd-models.

use std::path::PathBuf;

/// Errors raised while building, loading or running a network, a teacher or the feature cache.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An error from candle (shape mismatch inside an op, device error, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from a crosskd-ops layer.
    #[error(transparent)]
    Ops(#[from] crosskd_ops::Error),
    /// An architecture configuration is not usable.
    #[error("invalid {arch} configuration: {message}")]
    InvalidConfig {
        /// The architecture whose configuration was rejected.
        arch: String,
        /// What was wrong, naming the field.
        message: String,
    },
    /// The input image size does not suit the architecture.
    #[error("{arch}: input size {height}x{width} not supported: {message}")]
    InputSize {
        /// The architecture.
        arch: String,
        /// Requested input height.
        height: usize,
        /// Requested input width.
        width: usize,
        /// Why it is not supported.
        message: String,
    },
    /// One or more requested taps do not exist.
    #[error("{arch}: unknown feature tap(s) {unknown:?}; available taps (name: per-sample shape at {height}x{width} input):\n{available}")]
    UnknownTap {
        /// The architecture.
        arch: String,
        /// Requested tap names that do not exist.
        unknown: Vec<String>,
        /// Input height used for the listed shapes.
        height: usize,
        /// Input width used for the listed shapes.
        width: usize,
        /// One line per available tap: `name: [C, H, W]`.
        available: String,
    },
    /// A weight file does not match the architecture's parameters.
    #[error("{source_name}: weights do not match {arch}:\n{report}")]
    WeightMismatch {
        /// The file (or other source) the weights came from.
        source_name: String,
        /// The architecture they were loaded into.
        arch: String,
        /// Missing, unexpected and wrongly shaped tensors, one per line.
        report: String,
    },
    /// A checkpoint lacks or has an unreadable metadata entry.
    #[error("{path}: checkpoint metadata: {message}")]
    CheckpointMetadata {
        /// The checkpoint file.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A safetensors file could not be parsed or written.
    #[error("{path}: safetensors: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The feature cache is missing, stale or corrupted.
    #[error("feature cache {path}: {message}")]
    Cache {
        /// The cache folder or file.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
}

impl ModelError {
    /// An [`ModelError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`ModelError::InvalidConfig`] for `arch`.
    pub(crate) fn config(arch: &str, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            arch: arch.to_string(),
            message: message.into(),
        }
    }
}

/// Result alias of crosskd-models.
pub type Result<T> = std::result::Result<T, ModelError>;
