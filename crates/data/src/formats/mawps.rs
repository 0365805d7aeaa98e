//! MAWPS (Koncel-Kedziorski et al., NAACL 2016). A JSON array (or JSON Lines) of problems in
//! either of the two layouts MAWPS files are distributed in:
//!
//! 1. The MAWPS release (`AddSub.json`, `SingleOp.json`, `MultiArith.json`, ...):
//!    `{"iIndex": 1, "sQuestion": str, "lEquations": [str, ...], "lSolutions": [number, ...],
//!    "lAlignments"?: [...]}`. The gold answer is `lSolutions[0]`; the reasoning in the target is
//!    `lEquations[0]` (e.g. `X=(5.0+3.0)`) when present.
//! 2. The flat layout of later redistributions (the SVAMP/`mawps-asdiv-a` folds):
//!    `{"Question": str, "Body"?: str, "Answer": number, "Equation"?: str, "Numbers"?: ...}`; the
//!    problem text is `Body + " " + Question`.
//!
//! Numbers may also be numeric strings. The target is `<equation>\n#### <answer>` (or
//! `#### <answer>` without an equation), the GSM8k convention, so one answer extractor serves both.

use std::path::Path;

use crate::error::Result;
use crate::example::{Answer, Example};
use crate::prompt;
use crate::source::Record;

pub fn parse(path: &Path, text: &str) -> Result<Vec<Example>> {
    let expected = "MAWPS records with `sQuestion`/`lSolutions` or `Question`/`Answer`";
    super::map_records(path, text, expected, |r| {
        let (question, answer, equation) = if r.has("sQuestion") {
            release_layout(r)?
        } else if r.has("Question") {
            flat_layout(r)?
        } else {
            return Err(r.field_error(
                "sQuestion",
                "missing (expected `sQuestion` as in the MAWPS release, or `Question`)",
            ));
        };
        let target = prompt::word_problem_target(equation.as_deref(), answer);
        Ok(Example::new(
            prompt::word_problem(&question),
            target,
            Some(Answer::Number(answer)),
        )
        .with_id(r.id("iIndex").or_else(|| r.id("ID")).or_else(|| r.id("id"))))
    })
}

type Parsed = (String, f64, Option<String>);

fn release_layout(r: &Record<'_>) -> Result<Parsed> {
    let question = r.non_empty_str("sQuestion")?.to_string();
    let solutions = r.array("lSolutions")?;
    let first = solutions
        .first()
        .ok_or_else(|| r.field_error("lSolutions", "must not be an empty array"))?;
    let answer = r.number_in("lSolutions[0]", first)?;
    let equation = if r.has("lEquations") {
        r.str_array("lEquations")?.into_iter().next()
    } else {
        None
    };
    Ok((question, answer, equation))
}

fn flat_layout(r: &Record<'_>) -> Result<Parsed> {
    let q = r.non_empty_str("Question")?;
    let question = match r.opt_str("Body")? {
        Some(body) if !body.trim().is_empty() => format!("{} {}", body.trim(), q.trim()),
        _ => q.to_string(),
    };
    let answer = r.number_in("Answer", r.value("Answer")?)?;
    let equation = r.opt_str("Equation")?.map(str::to_string);
    Ok((question, answer, equation))
}
