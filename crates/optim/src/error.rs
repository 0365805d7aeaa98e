//! Typed errors of the optimizers.
use std::path::PathBuf;

use crosslore_linalg::LinalgError;

/// Errors from optimizer construction, stepping and state save/load.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// Invalid configuration for a parameter (e.g. rank 0, rank > min(m, n)), detected at
    /// construction or at the first step of that parameter.
    #[error("invalid optimizer config for parameter `{param}`: {msg}")]
    Config { param: String, msg: String },
    /// A tensor has a shape other than expected (gradient vs weight, loaded state vs parameter).
    #[error("shape mismatch for `{param}`: expected {expected}, got {got}")]
    Shape {
        param: String,
        expected: String,
        got: String,
    },
    /// The gradient of `param` contains NaN or Inf; the weight and the optimizer state are left
    /// untouched.
    #[error(
        "gradient of parameter `{param}` contains NaN or Inf; weight and state left untouched"
    )]
    NonFinite { param: String },
    /// File system error while saving or loading optimizer state.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed or inconsistent saved state (missing tensor, bad JSON, version mismatch, ...).
    #[error("optimizer state error: {msg}")]
    State { msg: String },
    #[error(transparent)]
    Linalg(#[from] LinalgError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, OptimError>;
