//! GSM8k: JSON Lines of `{"question": str, "answer": str}` where `answer` is the worked solution
//! whose last line is `#### <number>` (the release's `train.jsonl` / `test.jsonl`). The target is
//! the whole `answer` (calculator annotations `<<a*b=c>>` kept as released); the gold
//! [`Answer::Number`] is the number after the last `####` (thousands separators allowed).

use std::path::Path;

use crate::error::Result;
use crate::example::{Answer, Example};
use crate::prompt;
use crate::source::parse_number;

pub fn parse(path: &Path, text: &str) -> Result<Vec<Example>> {
    super::map_records(
        path,
        text,
        "GSM8k records with `question` and `answer`",
        |r| {
            let question = r.non_empty_str("question")?;
            let answer = r.non_empty_str("answer")?;
            let gold = final_answer(answer).ok_or_else(|| {
                r.field_error(
                    "answer",
                    "expected the solution to end with `#### <number>`",
                )
            })?;
            Ok(Example::new(
                prompt::word_problem(question),
                answer.trim().to_string(),
                Some(Answer::Number(gold)),
            ))
        },
    )
}

/// The number after the last `####` of a GSM8k-style answer (`None` when there is none).
pub fn final_answer(answer: &str) -> Option<f64> {
    let (_, tail) = answer.rsplit_once("####")?;
    parse_number(tail)
}
