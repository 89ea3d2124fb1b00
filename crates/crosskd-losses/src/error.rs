//! The error type of crosskd-losses.

/// Errors raised by losses, KD methods, regularisers and diagnostics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from candle itself.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An error from an op of crosskd-ops.
    #[error(transparent)]
    Ops(#[from] crosskd_ops::Error),
    /// An error from a projector.
    #[error(transparent)]
    Projector(#[from] crosskd_projectors::Error),
    /// A tensor had the wrong shape or dtype.
    #[error("{context}: expected {expected}, got shape {got:?}")]
    Shape {
        /// Which loss and which tensor (e.g. "depth berHu loss, mask").
        context: String,
        /// What was expected, in words.
        expected: String,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A configuration value that cannot work, naming the key.
    #[error("config: {0}")]
    Config(String),
    /// A KD method was called without an input it needs.
    #[error("{method}: missing input: {what}")]
    MissingInput {
        /// The method.
        method: String,
        /// What is missing.
        what: String,
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

/// Result alias of crosskd-losses.
pub type Result<T> = std::result::Result<T, Error>;

/// `x` is finite and strictly positive.
pub(crate) fn positive_finite(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// Errors unless `a` and `b` have the same shape.
pub(crate) fn same_shape(
    context: &str,
    what: &str,
    a: &candle_core::Tensor,
    b: &candle_core::Tensor,
) -> Result<()> {
    if a.dims() != b.dims() {
        return Err(Error::Shape {
            context: format!("{context}, {what}"),
            expected: format!("shape {:?}", a.dims()),
            got: b.dims().to_vec(),
        });
    }
    Ok(())
}
