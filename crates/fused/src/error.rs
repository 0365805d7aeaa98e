use thiserror::Error;

/// Errors of the fused operations: a shape/dtype/device contract broken by the caller, or a
/// failure inside candle or a CUDA launch.
#[derive(Debug, Error)]
pub enum FusedError {
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A launch helper of `crosslore_linalg::kernels` refused (device or dtype of a tensor).
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Launch(#[from] crosslore_linalg::LinalgError),
}

pub type Result<T> = std::result::Result<T, FusedError>;

pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> FusedError {
    FusedError::Invalid {
        op,
        msg: msg.into(),
    }
}
