//! Typed errors of the model crate. Every variant names the file (or other origin) and the field
//! or tensor concerned, and what was expected.

use std::path::PathBuf;

/// Errors from configuration parsing, weight loading, the forward pass and export.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{origin}: invalid JSON: {source}")]
    Json {
        origin: String,
        source: serde_json::Error,
    },
    #[error("{origin}: field `{field}`: {msg}")]
    Config {
        origin: String,
        field: String,
        msg: String,
    },
    #[error("{origin}: missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor {
        origin: String,
        name: String,
        expected: Vec<usize>,
    },
    #[error("{origin}: tensor `{name}` has shape {got:?}, expected {expected:?} from the config")]
    TensorShape {
        origin: String,
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{origin}: tensor `{name}` has dtype {got}, expected one of {expected}")]
    TensorDType {
        origin: String,
        name: String,
        expected: &'static str,
        got: String,
    },
    #[error("{what}: {msg}")]
    Input { what: &'static str, msg: String },
    #[error("adapter: {0}")]
    Adapter(String),
    #[error("{origin}: safetensors: {source}")]
    Safetensors {
        origin: String,
        source: safetensors::SafeTensorError,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Fused(#[from] crosslore_fused::FusedError),
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn config(origin: &str, field: &str, msg: impl Into<String>) -> Self {
        ModelError::Config {
            origin: origin.to_string(),
            field: field.to_string(),
            msg: msg.into(),
        }
    }
    pub(crate) fn input(what: &'static str, msg: impl Into<String>) -> Self {
        ModelError::Input {
            what,
            msg: msg.into(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            op,
            source,
        }
    }
}
