//! The trainer's error type.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, training or evaluating a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration could not be parsed or is invalid; `key` is the dotted path of the
    /// offending entry (`projector.direction`), empty when the whole document is at fault.
    #[error("{}{message}", source_prefix(.file, .key))]
    Config {
        /// The file the configuration came from, when it came from a file.
        file: Option<PathBuf>,
        /// Dotted path of the offending key.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
    /// A `--set key=value` override is malformed.
    #[error("override `{text}`: {message}")]
    Override {
        /// The override as given on the command line.
        text: String,
        /// What is wrong with it.
        message: String,
    },
    /// A loss term or a gradient became NaN or infinite.
    #[error(
        "non-finite {what} at step {step}: `{term}` is {value}; the run stopped and the last good \
         checkpoint was kept (lower the learning rate or the loss weight)"
    )]
    NonFinite {
        /// The optimiser step (1-based) at which it happened.
        step: u64,
        /// `loss` or `gradient`.
        what: &'static str,
        /// The loss term (`task`, `distill`, `regulariser`) or the parameter name.
        term: String,
        /// The offending value (`NaN`, `inf`).
        value: String,
    },
    /// A file in the run folder is missing or does not match what the trainer wrote.
    #[error("run folder {path}: {message}")]
    RunFolder {
        /// The file or folder at fault.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// An input file given on the command line (an image to predict on) could not be used.
    #[error("input {path}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// A checkpoint could not be read or does not fit the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder being accessed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A lower crosskd crate reported an error.
    #[error("{0}")]
    Component(String),
    /// Drawing a plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The PNG being drawn.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
}

fn source_prefix(file: &Option<PathBuf>, key: &str) -> String {
    match (file, key.is_empty()) {
        (Some(f), false) => format!("{}: {key}: ", f.display()),
        (Some(f), true) => format!("{}: ", f.display()),
        (None, false) => format!("{key}: "),
        (None, true) => String::new(),
    }
}

impl TrainError {
    /// A configuration error at `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        TrainError::Config {
            file: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;
