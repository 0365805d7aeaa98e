//! crosslore-data: dataset formats, the shipped tasks, prompt templates, loss-masked tokenisation
//! and batching for fine-tuning.
//!
//! Flow: a loader ([`Format::load`] or [`ShippedTask::load`]) gives [`Example`]s (prompt turns,
//! target, references, gold answer) -> an [`Encoder`] renders them with a [`Template`] and
//! tokenises them (labels masked on the prompt, EOS appended, truncation counted) -> a
//! [`BatchIter`] shuffles per epoch from a seed and pads or packs batches, with a resumable
//! [`DataPosition`].
//!
//! Every loading error names the file, the 1-based line and the field ([`DataError`]).

pub mod batch;
pub mod encode;
pub mod error;
pub mod example;
pub mod formats;
pub mod prompt;
pub mod rng;
pub mod source;
pub mod task;
pub mod template;

pub use batch::{pack, pad, Batch, BatchConfig, BatchIter, Collate, DataPosition};
pub use encode::{EncodeConfig, Encoded, EncodedSet, Encoder, IGNORE_INDEX};
pub use error::{DataError, Result};
pub use example::{expand_references, Answer, Example, Message, Prompt, Role};
pub use formats::Format;
pub use task::{ShippedTask, Split};
pub use template::{Template, SMOLLM2_DEFAULT_SYSTEM};
pub use tokenizers::Tokenizer;
