//! Alpaca / LLaMA-Factory "alpaca" layout: a JSON array (or JSON Lines) of
//! `{"instruction": str, "input"?: str, "output": str, "system"?: str,
//!   "history"?: [[user, assistant], ...]}`.
//! The user turn is `instruction` followed by `"\n" + input` when `input` is non-empty (as
//! LLaMA-Factory joins them); `history` pairs become earlier turns; the target is `output`.

use std::path::Path;

use crate::error::Result;
use crate::example::{Example, Message, Prompt};
use crate::source::Record;

pub fn parse(path: &Path, text: &str) -> Result<Vec<Example>> {
    super::map_records(path, text, "records with `instruction` and `output`", |r| {
        let instruction = r.non_empty_str("instruction")?.trim();
        let user = match r.opt_str("input")?.map(str::trim) {
            Some(input) if !input.is_empty() => format!("{instruction}\n{input}"),
            _ => instruction.to_string(),
        };
        let output = r.non_empty_str("output")?;
        let mut turns = history(r)?;
        turns.push(Message::user(user));
        let system = r.opt_str("system")?.map(str::to_string);
        Ok(Example::new(Prompt { system, turns }, output.to_string(), None).with_id(r.id("id")))
    })
}

fn history(r: &Record<'_>) -> Result<Vec<Message>> {
    if !r.has("history") {
        return Ok(Vec::new());
    }
    let mut turns = Vec::new();
    for (i, pair) in r.array("history")?.iter().enumerate() {
        let label = format!("history[{i}]");
        let pair = pair
            .as_array()
            .filter(|p| p.len() == 2)
            .ok_or_else(|| r.field_error(&label, "expected a [user, assistant] pair of strings"))?;
        let text = |j: usize| {
            pair[j]
                .as_str()
                .ok_or_else(|| r.field_error(format!("{label}[{j}]"), "expected a string"))
        };
        turns.push(Message::user(text(0)?));
        turns.push(Message::assistant(text(1)?));
    }
    Ok(turns)
}
