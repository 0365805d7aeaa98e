//! Typed errors of the metric code.

use crate::Metric;

/// Everything that can go wrong when scoring a corpus.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The corpus has no example.
    #[error("empty corpus: no hypotheses to score (expected at least one hypothesis line)")]
    EmptyCorpus,
    /// Hypotheses and reference lists differ in number.
    #[error("{hyps} hypotheses but {refs} reference lists: expected exactly one reference list per hypothesis")]
    LengthMismatch { hyps: usize, refs: usize },
    /// An example has no reference at all.
    #[error("example {index}: no reference given (expected at least one reference string)")]
    NoReference { index: usize },
    /// Reference streams (one file per reference) differ in length.
    #[error(
        "reference stream {stream} has {got} lines, expected {expected} (one line per hypothesis)"
    )]
    StreamLength {
        stream: usize,
        got: usize,
        expected: usize,
    },
    /// The reference implementation itself has no value for this input (it raises).
    #[error("{metric} is undefined on this input: {reason}")]
    Undefined { metric: Metric, reason: String },
    /// A metric name that is not known.
    #[error("unknown metric {name:?}: expected one of bleu, nist, meteor, rouge, cider, accuracy")]
    UnknownMetric { name: String },
    /// An invalid option value.
    #[error("invalid option {field}: {reason}")]
    InvalidOption { field: &'static str, reason: String },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, EvalError>;
