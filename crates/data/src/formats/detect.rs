//! Guessing a data file's format from its extension and the fields of its first record, for
//! users who pass a file without naming its format.

use std::path::Path;

use super::Format;
use crate::error::{DataError, Result};
use crate::source;

/// The format of `text` (the content of `path`): `.csv` files are E2E CSV; JSON / JSONL files are
/// recognised by the fields of their first record (`messages` -> chat, `instruction`+`output` ->
/// alpaca, `prompt`+`response`, `mr`+`references` -> E2E, `options` -> MathQA, `sQuestion` or
/// `Question`+`Answer` -> MAWPS, `question`+`answer` -> GSM8k, `article`+`highlights` -> CNN/DM,
/// `document`+`summary` -> XSum). Errors name the first record's line and its fields.
pub fn detect(path: &Path, text: &str) -> Result<Format> {
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        return Ok(Format::E2eCsv);
    }
    let records = source::parse_records(path, text, "records of a known format")?;
    let first = &records[0];
    let has = |k: &str| first.obj.contains_key(k);
    let format = if has("messages") {
        Format::Chat
    } else if has("instruction") && has("output") {
        Format::Alpaca
    } else if has("prompt") && has("response") {
        Format::PromptResponse
    } else if has("mr") && has("references") {
        Format::E2eNlg
    } else if (has("question") || has("Problem")) && has("options") {
        Format::Mathqa
    } else if has("sQuestion") || (has("Question") && has("Answer")) {
        Format::Mawps
    } else if has("question") && has("answer") {
        Format::Gsm8k
    } else if has("article") && has("highlights") {
        Format::CnnDm
    } else if has("document") && has("summary") {
        Format::Xsum
    } else {
        let fields: Vec<&str> = first.obj.keys().map(String::as_str).collect();
        return Err(DataError::Record {
            path: path.into(),
            line: first.line,
            problem: format!(
                "cannot tell the format from the fields {fields:?}; name it (one of: {})",
                Format::ALL.map(Format::name).join(", ")
            ),
        });
    };
    Ok(format)
}
