//! The error type of PyTorch weight import.

use std::path::PathBuf;

/// Errors raised while reading, converting or checking PyTorch weights.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The zip container of a PyTorch >= 1.6 checkpoint is damaged or lacks a member.
    #[error("{path}: zip checkpoint: {message}")]
    Zip {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong, naming the member.
        message: String,
    },
    /// The pickle stream uses an opcode this reader refuses (anything a state dict does not need).
    #[error("pickle: unsupported opcode {name} (0x{code:02x}) at byte {offset}; only the opcodes of a plain state dict are accepted")]
    UnsupportedOpcode {
        /// The opcode's name in `pickletools`, or `unknown`.
        name: &'static str,
        /// The opcode byte.
        code: u8,
        /// Its byte offset inside the pickle.
        offset: usize,
    },
    /// The pickle names a global (class or function) outside the allow-list.
    #[error("pickle: refused global `{0}`: only collections.OrderedDict, torch._utils tensor rebuilders and torch.*Storage types are allowed")]
    ForbiddenGlobal(String),
    /// The pickle stream is malformed (truncated, stack underflow, wrong argument types, ...).
    #[error("pickle: malformed at byte {offset}: {message}")]
    MalformedPickle {
        /// Byte offset inside the pickle where the problem was found.
        offset: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// The checkpoint's structure is not what a state dict should be.
    #[error("{path}: {message}")]
    Format {
        /// The checkpoint file.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// A tensor's view (offset, shape, strides) does not fit its storage, or the storage is short.
    #[error("tensor `{name}`: {message}")]
    BadTensor {
        /// The state-dict key of the tensor.
        name: String,
        /// What is wrong (shape, stride, offset, storage length).
        message: String,
    },
    /// Loaded weights do not match the tensors a model expects.
    #[error("state dict does not match the model: {}", describe_mismatch(.missing, .unexpected, .wrong_shape))]
    StateDictMismatch {
        /// Tensors the model expects that the weights lack: `(name, expected shape)`.
        missing: Vec<(String, Vec<usize>)>,
        /// Tensors in the weights that the model does not have: `(name, shape)`.
        unexpected: Vec<(String, Vec<usize>)>,
        /// Tensors present in both with different shapes: `(name, expected, found)`.
        wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
    },
    /// Writing safetensors failed.
    #[error("{path}: safetensors: {message}")]
    Safetensors {
        /// The output file.
        path: PathBuf,
        /// The serialiser's message.
        message: String,
    },
    /// Turning a tensor into a candle tensor failed.
    #[error("tensor `{name}`: {source}")]
    Candle {
        /// The tensor's name.
        name: String,
        /// candle's error.
        source: candle_core::Error,
    },
}

fn describe_mismatch(
    missing: &[(String, Vec<usize>)],
    unexpected: &[(String, Vec<usize>)],
    wrong_shape: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|(n, s)| format!("{n} {s:?}")).collect();
        parts.push(format!("{} missing: {}", missing.len(), names.join(", ")));
    }
    if !unexpected.is_empty() {
        let names: Vec<String> = unexpected
            .iter()
            .map(|(n, s)| format!("{n} {s:?}"))
            .collect();
        parts.push(format!(
            "{} unexpected: {}",
            unexpected.len(),
            names.join(", ")
        ));
    }
    if !wrong_shape.is_empty() {
        let names: Vec<String> = wrong_shape
            .iter()
            .map(|(n, e, f)| format!("{n} (expected {e:?}, found {f:?})"))
            .collect();
        parts.push(format!(
            "{} with wrong shape: {}",
            wrong_shape.len(),
            names.join(", ")
        ));
    }
    parts.join("; ")
}

/// Result alias of the weights module.
pub type Result<T> = std::result::Result<T, WeightsError>;
