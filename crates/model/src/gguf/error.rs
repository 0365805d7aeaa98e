//! Errors of the GGUF reader, dequantizer and LLaMA loader. Every variant that can come from a
//! file names the file and what was expected.

use std::path::PathBuf;

use crate::tokenizer::TokenizerError;

/// Error of [`crate::gguf`].
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("GGUF {path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("GGUF {path}: bad magic {found:02x?}: expected the bytes \"GGUF\" (47 47 55 46); not a GGUF file")]
    BadMagic { path: PathBuf, found: Vec<u8> },

    #[error("GGUF {path}: unsupported version {version}: expected 2 or 3 (little-endian){hint}")]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        hint: &'static str,
    },

    #[error("GGUF {path}: truncated file: reading {what} needs bytes {start}..{end} but the file has {file_len} bytes")]
    Truncated {
        path: PathBuf,
        what: String,
        start: u64,
        end: u64,
        file_len: u64,
    },

    #[error("GGUF {path}: malformed {what}: {detail}")]
    Malformed {
        path: PathBuf,
        what: String,
        detail: String,
    },

    #[error("GGUF {path}: tensor '{tensor}' has type {type_name} (ggml type id {type_id}); supported: {supported}")]
    UnsupportedDType {
        path: PathBuf,
        tensor: String,
        type_id: u32,
        type_name: &'static str,
        supported: &'static str,
    },

    #[error("GGUF {path}: tensor '{tensor}' data bytes {start}..{end} lie past the end of the file ({file_len} bytes)")]
    TensorOutOfBounds {
        path: PathBuf,
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },

    #[error("GGUF {path}: missing metadata key '{key}' ({expected})")]
    MissingKey {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },

    #[error("GGUF {path}: metadata key '{key}' has type {found}, expected {expected}")]
    WrongKeyType {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("GGUF {path}: missing tensor '{name}'")]
    MissingTensor { path: PathBuf, name: String },

    #[error("GGUF {path}: unexpected tensor '{name}': {detail}")]
    UnexpectedTensor {
        path: PathBuf,
        name: String,
        detail: String,
    },

    #[error("GGUF {path}: tensor '{tensor}' has shape {found:?}, expected {expected}")]
    Shape {
        path: PathBuf,
        tensor: String,
        found: Vec<usize>,
        expected: String,
    },

    #[error("GGUF {path}: unsupported model: {detail}")]
    UnsupportedModel { path: PathBuf, detail: String },

    #[error(
        "dequantize {dtype}: {n_elements} elements need {expected_bytes} bytes, got {got_bytes}"
    )]
    DequantLength {
        dtype: &'static str,
        n_elements: usize,
        expected_bytes: usize,
        got_bytes: usize,
    },

    #[error("GGUF {path}: tokenizer: {source}")]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: TokenizerError,
    },

    #[error("GGUF {path}: building tensor '{tensor}': {source}")]
    Candle {
        path: PathBuf,
        tensor: String,
        #[source]
        source: Box<candle_core::Error>,
    },
}

/// Result alias of [`crate::gguf`].
pub type Result<T> = std::result::Result<T, GgufError>;
