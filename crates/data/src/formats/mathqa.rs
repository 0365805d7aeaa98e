//! MathQA (Amini et al., NAACL 2019) multiple-choice word problems, in two layouts:
//!
//! 1. Our shipped JSONL (`data/mathqa/*.jsonl`, from BIG-bench `elementary_math_qa`):
//!    `{"id"?: str, "question": str, "options": [str, ...], "answer": "b", "formula"?: str,
//!    "hint"?: str}`; options are labelled `a`, `b`, ... in order.
//! 2. The original release (`train.json`, ...; a JSON array): `{"Problem": str, "options":
//!    "a ) 229 , b ) 270 , ...", "correct": "b", "Rationale"?: str, "annotated_formula"?: str}`.
//!
//! The prompt lists the options and asks for the letter ([`crate::prompt::mathqa`]); the target
//! is the letter; the gold answer is [`Answer::Choice`] with the letter and the option text.

use std::path::Path;

use crate::error::Result;
use crate::example::{Answer, Example};
use crate::prompt::{self, OPTION_LETTERS};
use crate::source::Record;

pub fn parse(path: &Path, text: &str) -> Result<Vec<Example>> {
    let expected =
        "MathQA records with `question`/`options`/`answer` or `Problem`/`options`/`correct`";
    super::map_records(path, text, expected, |r| {
        let (question, options, answer_field) = if r.has("Problem") {
            let q = r.non_empty_str("Problem")?;
            let raw = r.str("options")?;
            let opts = split_release_options(raw).ok_or_else(|| {
                r.field_error(
                    "options",
                    format!("expected `a ) .. , b ) ..`, found {raw:?}"),
                )
            })?;
            (q, opts, "correct")
        } else {
            (
                r.non_empty_str("question")?,
                r.str_array("options")?,
                "answer",
            )
        };
        if options.len() < 2 || options.len() > OPTION_LETTERS.len() {
            return Err(r.field_error(
                "options",
                format!("expected 2 to 26 options, found {}", options.len()),
            ));
        }
        let letter = answer_letter(r, answer_field, options.len())?;
        let option = options[OPTION_LETTERS.find(letter).unwrap_or(0)]
            .trim()
            .to_string();
        Ok(Example::new(
            prompt::mathqa(question, &options),
            letter.to_string(),
            Some(Answer::Choice { letter, option }),
        )
        .with_id(r.id("id")))
    })
}

fn answer_letter(r: &Record<'_>, field: &str, n_options: usize) -> Result<char> {
    let s = r.str(field)?.trim().to_ascii_lowercase();
    let valid = &OPTION_LETTERS[..n_options];
    let mut it = s.chars();
    match (it.next(), it.next()) {
        (Some(c), None) if valid.contains(c) => Ok(c),
        _ => Err(r.field_error(
            field,
            format!("expected one option letter of `{valid}`, found {s:?}"),
        )),
    }
}

/// Splits the release's option string `a ) 229 , b ) 270 , c ) 877` into `["229", "270", "877"]`
/// by looking for the markers `a )`, `b )`, ... in order (option texts may contain commas).
pub fn split_release_options(raw: &str) -> Option<Vec<String>> {
    let s = raw.trim().trim_start_matches('[').trim_end_matches(']');
    let mut starts = Vec::new(); // (marker start, text start)
    let mut from = 0;
    for letter in OPTION_LETTERS.chars() {
        let marker = format!("{letter} )");
        let Some(pos) = s[from..].find(&marker).map(|p| p + from) else {
            break;
        };
        // A marker starts the string or follows a separator.
        let ok =
            pos == 0 || s[..pos].trim_end().ends_with(',') || s[..pos].trim_end().ends_with('\'');
        if !ok {
            break;
        }
        starts.push((pos, pos + marker.len()));
        from = pos + marker.len();
    }
    if starts.len() < 2 {
        return None;
    }
    let options = starts
        .iter()
        .enumerate()
        .map(|(i, &(_, text_start))| {
            let end = starts.get(i + 1).map_or(s.len(), |&(m, _)| m);
            s[text_start..end]
                .trim()
                .trim_end_matches(',')
                .trim()
                .trim_matches('\'')
                .trim()
                .to_string()
        })
        .collect();
    Some(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_options_split_on_markers() {
        let o = split_release_options("a ) rs . 1 , 200 , b ) 270 , c ) 8 : 3").unwrap();
        assert_eq!(o, vec!["rs . 1 , 200", "270", "8 : 3"]);
        assert!(split_release_options("229, 270").is_none());
    }
}
