//! The one error type of the crate: every variant names the file (or sample) and what was expected.

use std::path::PathBuf;

/// Errors raised while reading, decoding, checking or batching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read (missing, permission, I/O failure).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but could not be decoded (truncated, corrupt, not an image).
    #[error("cannot decode {path}: expected {expected}: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the file should have been.
        expected: String,
        /// What the decoder reported.
        message: String,
    },
    /// A file decoded but its contents violate the format (bit depth, magic, counts, ranges).
    #[error("invalid {path}: expected {expected}, found {found}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// An image and its target (or two members of a batch) have different sizes.
    #[error("size mismatch in {what}: expected {expected}, found {found}")]
    SizeMismatch {
        /// Where: file names or sample indices.
        what: String,
        /// The expected size.
        expected: String,
        /// The size found.
        found: String,
    },
    /// A sample index beyond the end of a data set.
    #[error("sample index {index} out of range for a data set of {len} samples")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The data set's length.
        len: usize,
    },
    /// A configuration value that cannot work (empty ranges, zero batch size, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A sample failed while building a batch; wraps the cause with the sample index.
    #[error("sample {index}: {source}")]
    Sample {
        /// Index in the data set.
        index: usize,
        /// The underlying error.
        #[source]
        source: Box<DataError>,
    },
    /// candle refused to build a tensor.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Result with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`DataError::Invalid`] for `path`.
    pub fn invalid(
        path: impl Into<PathBuf>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            path: path.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}
