//! The error type of crosskd-ops.

/// Errors raised by crosskd-ops.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from candle itself (shape mismatch inside a primitive, device error, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An argument had the wrong shape for the op.
    #[error("{op}: expected {expected}, got shape {got:?}")]
    Shape {
        /// The op that rejected the argument.
        op: &'static str,
        /// What the op expected, in words.
        expected: String,
        /// The shape it got.
        got: Vec<usize>,
    },
    /// An argument had a value outside what the op supports.
    #[error("{op}: invalid argument: {message}")]
    InvalidArgument {
        /// The op that rejected the argument.
        op: &'static str,
        /// What was wrong, naming the argument.
        message: String,
    },
    /// A numerical routine did not converge.
    #[error("{op}: did not converge after {iterations} iterations (residual {residual:e})")]
    NoConvergence {
        /// The routine.
        op: &'static str,
        /// Iterations run.
        iterations: usize,
        /// The residual when it stopped.
        residual: f64,
    },
}

impl From<Error> for candle_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Candle(inner) => inner,
            other => candle_core::Error::Msg(other.to_string()),
        }
    }
}

/// Result alias of crosskd-ops.
pub type Result<T> = std::result::Result<T, Error>;
