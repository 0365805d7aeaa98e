//! Typed errors of the training crate: each names the file, key or step concerned.

use std::path::PathBuf;

use crate::config::ConfigError;

/// Errors of `crosslore-train`.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("model: {0}")]
    Model(#[from] crosslore_model::ModelError),
    #[error("model file: {0}")]
    Gguf(#[from] crosslore_model::gguf::GgufError),
    #[error("model fetch: {0}")]
    Fetch(#[from] crosslore_model::fetch::FetchError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] crosslore_model::tokenizer::TokenizerError),
    #[error("optimizer: {0}")]
    Optim(#[from] crosslore_optim::OptimError),
    #[error("data: {0}")]
    Data(#[from] crosslore_data::DataError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("step {step}: {what} is not finite ({value})")]
    NonFinite {
        step: usize,
        what: &'static str,
        value: f64,
    },
    #[error("{what}: {msg}")]
    Invalid { what: &'static str, msg: String },
}

pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        TrainError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    pub(crate) fn ckpt(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
