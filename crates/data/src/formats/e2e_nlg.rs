//! E2E NLG, our shipped layout (`data/e2e_nlg/*.jsonl`, written by `scripts/extract_bigbench.py`):
//! one line per meaning representation, `{"id"?: str, "mr": str, "references": [str, ...]}`.
//! Each line becomes one example: prompt [`crate::prompt::e2e`], target = the first reference,
//! `references` = all of them (multi-reference evaluation). For training use
//! [`crate::expand_references`] to get one example per reference.

use std::path::Path;

use crate::error::Result;
use crate::example::Example;
use crate::prompt;

pub fn parse(path: &Path, text: &str) -> Result<Vec<Example>> {
    super::map_records(path, text, "E2E records with `mr` and `references`", |r| {
        let mr = r.non_empty_str("mr")?;
        let references = r.str_array("references")?;
        Ok(group(mr, references).with_id(r.id("id")))
    })
}

/// The example of one meaning representation with all its references (callers pass >= 1).
pub(crate) fn group(mr: &str, references: Vec<String>) -> Example {
    Example {
        id: None,
        prompt: prompt::e2e(mr),
        target: references.first().cloned().unwrap_or_default(),
        references,
        answer: None,
    }
}
