//! Typed errors of the benchmark library.

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Linalg(#[from] crosslore_linalg::LinalgError),
    #[error(transparent)]
    Optim(#[from] crosslore_optim::OptimError),
    #[error(transparent)]
    Model(#[from] crosslore_model::ModelError),
    #[error(transparent)]
    Train(#[from] crosslore_train::TrainError),
    #[error(transparent)]
    Fused(#[from] crosslore_fused::FusedError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, BenchError>;
