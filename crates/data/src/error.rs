//! The crate's error type. Every data error names the file (or embedded source), the 1-based line
//! and, where one is at fault, the field, so a user can go straight to the bad row.

use std::path::PathBuf;

/// Errors of `crosslore-data`.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read at all.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not UTF-8; `line` is the line holding the first invalid byte.
    #[error("{path}:{line}: not valid UTF-8 (first invalid byte at byte offset {offset})")]
    NotUtf8 {
        path: PathBuf,
        line: usize,
        offset: usize,
    },

    /// A JSON (or JSONL line) that does not parse.
    #[error("{path}:{line}: malformed JSON: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// A record whose field is missing, of the wrong type or has an unusable value.
    #[error("{path}:{line}: field `{field}`: {problem}")]
    Field {
        path: PathBuf,
        line: usize,
        field: String,
        problem: String,
    },

    /// A record (line) that is not of the shape the format needs (e.g. not a JSON object, a CSV
    /// row with the wrong number of columns).
    #[error("{path}:{line}: {problem}")]
    Record {
        path: PathBuf,
        line: usize,
        problem: String,
    },

    /// The file holds no examples.
    #[error("{path}: empty dataset: no examples found (expected {expected})")]
    Empty { path: PathBuf, expected: String },

    /// A name that is not one of the known formats / tasks / templates.
    #[error("unknown {kind} `{name}`; expected one of: {expected}")]
    UnknownName {
        kind: &'static str,
        name: String,
        expected: String,
    },

    /// The tokenizer failed or lacks a token the configuration needs.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// An invalid batching / encoding configuration or resume position.
    #[error("config field `{field}`: {problem}")]
    Config {
        field: &'static str,
        problem: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DataError>;
