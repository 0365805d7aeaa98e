//! Typed errors of the linear-algebra layer.

/// Errors from projections and factorizations.
#[derive(Debug, thiserror::Error)]
pub enum LinalgError {
    #[error("shape error in {op}: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("invalid argument to {op}: {msg}")]
    InvalidArgument { op: &'static str, msg: String },
    #[error("{op}: input contains NaN or Inf")]
    NonFinite { op: &'static str },
    #[error("{op} failed to converge: {msg}")]
    NoConvergence { op: &'static str, msg: String },
    /// An internal invariant failed, e.g. device counts that do not add up (a kernel fault).
    #[error("{op}: inconsistent internal state: {msg}")]
    Inconsistent { op: &'static str, msg: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, LinalgError>;
