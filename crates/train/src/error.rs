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
    #[error("device kernel: {0}")]
    Linalg(#[from] crosslore_linalg::LinalgError),
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
    /// A non-finite loss or gradient found before any weight of the step was updated: the
    /// trainer skips the step ([`crate::Trainer::step`]) unless there were too many in a row.
    #[error("step {step}: {what} is not finite ({value})")]
    NonFinite {
        step: usize,
        what: String,
        value: f64,
    },
    /// `max_bad_steps` consecutive skipped steps.
    #[error(
        "step {step}: {consecutive} consecutive steps had a non-finite loss or gradient (last: \
         {last}); stopping (max_bad_steps = {consecutive}). The weights and optimizer state are \
         those after the last good step; {}",
        match checkpoint {
            Some(p) => format!("the last checkpoint is {}", p.display()),
            None => "no checkpoint was written by this run".to_string(),
        }
    )]
    TooManyBadSteps {
        step: usize,
        consecutive: usize,
        last: String,
        checkpoint: Option<PathBuf>,
    },
    /// Layerwise mode without clipping updates each block as its gradients appear; a
    /// non-finite gradient found after some blocks were updated cannot be skipped.
    #[error(
        "step {step}: {what} is not finite ({value}) after {applied} parameter(s) of this step \
         were already updated (layerwise mode without clipping updates blocks as their gradients \
         appear); stopping. Resume from the last checkpoint; with max_grad_norm > 0 layerwise \
         mode checks every gradient before any update and skips such steps"
    )]
    NonFiniteAfterUpdate {
        step: usize,
        what: String,
        value: f64,
        applied: usize,
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
