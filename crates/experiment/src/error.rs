//! Errors of experiments: each names the spec file or run folder and what was expected.

use std::path::{Path, PathBuf};

/// An experiment problem.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{file}: {msg}")]
    Spec { file: String, msg: String },
    #[error("{file}: key `{key}`: {msg}")]
    BadValue {
        file: String,
        key: String,
        msg: String,
    },
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{}: {msg}", path.display())]
    BadFile { path: PathBuf, msg: String },
    #[error("run {cell}: {source}")]
    Run {
        cell: String,
        source: Box<crosslore_train::TrainError>,
    },
    #[error(transparent)]
    Train(Box<crosslore_train::TrainError>),
    #[error(transparent)]
    Data(#[from] crosslore_data::DataError),
    #[error(transparent)]
    Model(#[from] crosslore_model::ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Linalg(#[from] crosslore_linalg::LinalgError),
    #[error(transparent)]
    Optim(#[from] crosslore_optim::OptimError),
    #[error("plot {file}: {msg}")]
    Plot { file: String, msg: String },
    #[error("evaluation: {0}")]
    Eval(String),
}

impl From<crosslore_train::TrainError> for ExperimentError {
    fn from(e: crosslore_train::TrainError) -> Self {
        ExperimentError::Train(Box::new(e))
    }
}

impl ExperimentError {
    pub fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        ExperimentError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

pub type Result<T, E = ExperimentError> = std::result::Result<T, E>;
