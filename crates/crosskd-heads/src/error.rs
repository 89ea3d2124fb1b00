//! The error type of crosskd-heads.

/// Errors raised by heads and metrics.
#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from crosskd-ops.
    #[error(transparent)]
    Ops(#[from] crosskd_ops::Error),
    /// A prediction, target or mask had the wrong shape.
    #[error("{what}: expected {expected}, got shape {got:?}")]
    Shape {
        /// Which metric or head, and which argument.
        what: String,
        /// The expected shape, in words.
        expected: String,
        /// The shape received.
        got: Vec<usize>,
    },
    /// A value in a prediction or target is outside what the task allows.
    #[error("{what}: {message}")]
    InvalidValue {
        /// Which metric or head, and which argument.
        what: String,
        /// The offending value and where it is.
        message: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl From<HeadsError> for candle_core::Error {
    fn from(e: HeadsError) -> Self {
        match e {
            HeadsError::Candle(inner) => inner,
            other => candle_core::Error::Msg(other.to_string()),
        }
    }
}

/// Result alias of crosskd-heads.
pub type Result<T> = std::result::Result<T, HeadsError>;
