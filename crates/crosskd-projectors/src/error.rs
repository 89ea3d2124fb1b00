//! The error type of crosskd-projectors.

/// Errors raised while building or applying a projector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from candle itself (device error, primitive shape mismatch, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from an op of crosskd-ops (norm, resize, linear algebra).
    #[error(transparent)]
    Ops(#[from] crosskd_ops::Error),
    /// A feature tensor had the wrong shape for this projector.
    #[error("projector ({context}): expected {expected}, got shape {got:?}")]
    Shape {
        /// Which tensor and which projector, in words (e.g. "student feature of a conv1x1 projector").
        context: String,
        /// What was expected, in words.
        expected: String,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A configuration value that cannot work.
    #[error("projector config: {0}")]
    Config(String),
    /// An operation that needs a trainable weight (a `Var`) found a constant one.
    #[error("projector: {0}")]
    NotTrainable(String),
    /// Newton–Schulz polar iteration did not reach orthogonality.
    #[error("orthogonal retraction did not converge after {iterations} iterations (‖PᵀP − I‖_max = {residual:e})")]
    RetractionDiverged {
        /// Iterations run.
        iterations: usize,
        /// Largest entry of `|Gram − I|` when it stopped.
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

/// Result alias of crosskd-projectors.
pub type Result<T> = std::result::Result<T, Error>;
