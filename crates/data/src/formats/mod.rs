//! Dataset file formats. One file per format; each exposes `parse(path, text)` (the path only
//! labels errors) and documents the fields it reads. [`Format`] selects one by name.
//!
//! JSON-based formats accept either JSON Lines (one object per line) or a JSON array of objects.

pub mod alpaca;
pub mod chat;
pub mod cnn_dm;
pub mod detect;
pub mod e2e_csv;
pub mod e2e_nlg;
pub mod gsm8k;
pub mod mathqa;
pub mod mawps;
pub mod prompt_response;
pub mod xsum;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::example::Example;
use crate::prompt::{self, SummaryStyle};
use crate::source::{self, Record};

/// A dataset file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// GSM8k JSONL: `question`, `answer` ending in `#### N` ([`gsm8k`]).
    Gsm8k,
    /// MAWPS JSON: `sQuestion`/`lSolutions`/`lEquations` or `Question`/`Answer` ([`mawps`]).
    Mawps,
    /// Our shipped E2E NLG JSONL: `mr`, `references` ([`e2e_nlg`]).
    E2eNlg,
    /// The original E2E NLG CSV: header `mr,ref`, one row per reference ([`e2e_csv`]).
    E2eCsv,
    /// MathQA: our shipped JSONL or the original release ([`mathqa`]).
    Mathqa,
    /// CNN/DailyMail: `article`, `highlights` ([`cnn_dm`]).
    CnnDm,
    /// XSum: `document`, `summary` ([`xsum`]).
    Xsum,
    /// Alpaca: `instruction`, `input`, `output` ([`alpaca`]).
    Alpaca,
    /// `prompt`, `response` ([`prompt_response`]).
    PromptResponse,
    /// Chat: `messages: [{role, content}]` ([`chat`]).
    Chat,
}

impl Format {
    pub const ALL: [Format; 10] = [
        Format::Gsm8k,
        Format::Mawps,
        Format::E2eNlg,
        Format::E2eCsv,
        Format::Mathqa,
        Format::CnnDm,
        Format::Xsum,
        Format::Alpaca,
        Format::PromptResponse,
        Format::Chat,
    ];

    /// The format's name as configs and the CLI write it (`gsm8k`, `e2e_csv`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Gsm8k => "gsm8k",
            Format::Mawps => "mawps",
            Format::E2eNlg => "e2e_nlg",
            Format::E2eCsv => "e2e_csv",
            Format::Mathqa => "mathqa",
            Format::CnnDm => "cnn_dm",
            Format::Xsum => "xsum",
            Format::Alpaca => "alpaca",
            Format::PromptResponse => "prompt_response",
            Format::Chat => "chat",
        }
    }

    /// Parses `text` (the content of `path`; `path` labels errors).
    pub fn parse(self, path: &Path, text: &str) -> Result<Vec<Example>> {
        match self {
            Format::Gsm8k => gsm8k::parse(path, text),
            Format::Mawps => mawps::parse(path, text),
            Format::E2eNlg => e2e_nlg::parse(path, text),
            Format::E2eCsv => e2e_csv::parse(path, text),
            Format::Mathqa => mathqa::parse(path, text),
            Format::CnnDm => cnn_dm::parse(path, text),
            Format::Xsum => xsum::parse(path, text),
            Format::Alpaca => alpaca::parse(path, text),
            Format::PromptResponse => prompt_response::parse(path, text),
            Format::Chat => chat::parse(path, text),
        }
    }

    /// Reads and parses the file at `path`.
    pub fn load(self, path: &Path) -> Result<Vec<Example>> {
        let text = source::read_text(path)?;
        self.parse(path, &text)
    }

    /// Reads the file at `path`, guesses its format ([`detect::detect`]) and parses it.
    pub fn load_detected(path: &Path) -> Result<(Format, Vec<Example>)> {
        let text = source::read_text(path)?;
        let format = detect::detect(path, &text)?;
        Ok((format, format.parse(path, &text)?))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| DataError::UnknownName {
                kind: "format",
                name: s.into(),
                expected: Format::ALL.map(Format::name).join(", "),
            })
    }
}

/// Parses JSON records and maps each through `f`.
fn map_records(
    path: &Path,
    text: &str,
    expected: &str,
    mut f: impl FnMut(&Record<'_>) -> Result<Example>,
) -> Result<Vec<Example>> {
    source::parse_records(path, text, expected)?
        .iter()
        .map(&mut f)
        .collect()
}

/// Document summarization records (CNN/DailyMail, XSum): `doc_field` -> `summary_field`.
fn document_summary(
    path: &Path,
    text: &str,
    doc_field: &str,
    summary_field: &str,
    style: SummaryStyle,
) -> Result<Vec<Example>> {
    let expected = format!("records with `{doc_field}` and `{summary_field}`");
    map_records(path, text, &expected, |r| {
        let doc = r.non_empty_str(doc_field)?;
        let summary = r.non_empty_str(summary_field)?;
        Ok(Example::new(
            prompt::summarize(doc, style),
            summary.trim().to_string(),
            None,
        )
        .with_id(r.id("id")))
    })
}
