//! Task-specific prompt builders: the user message (and target) each task's loader puts in an
//! [`Example`](crate::Example). Chat formatting is the template's job ([`crate::Template`]).

use crate::example::Prompt;

/// E2E NLG: `Describe this restaurant: <meaning representation>`.
pub fn e2e(mr: &str) -> Prompt {
    Prompt::user(format!("Describe this restaurant: {}", mr.trim()))
}

/// The option letters of multiple-choice tasks, in order.
pub const OPTION_LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";

/// MathQA: the question, the options as `a) .., b) ..`, and an instruction to answer with the
/// option letter; the target is the bare letter.
///
/// ```text
/// <question>
/// Options: a) 229, b) 270, c) 877, d) 266, e) 281
/// Answer with the option letter.
/// ```
pub fn mathqa(question: &str, options: &[String]) -> Prompt {
    let opts: Vec<String> = OPTION_LETTERS
        .chars()
        .zip(options)
        .map(|(l, o)| format!("{l}) {}", o.trim()))
        .collect();
    Prompt::user(format!(
        "{}\nOptions: {}\nAnswer with the option letter.",
        question.trim(),
        opts.join(", ")
    ))
}

/// Arithmetic word problems (GSM8k, MAWPS): the question and an instruction to give the reasoning
/// and then the final number after `####`, the GSM8k answer convention the target follows.
pub fn word_problem(question: &str) -> Prompt {
    Prompt::user(format!(
        "{}\nSolve the problem step by step, then give the final answer after \"####\".",
        question.trim()
    ))
}

/// The target of an arithmetic word problem: optional reasoning, then `#### <number>`.
pub fn word_problem_target(reasoning: Option<&str>, answer: f64) -> String {
    let n = format_number(answer);
    match reasoning.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => format!("{r}\n#### {n}"),
        None => format!("#### {n}"),
    }
}

/// A number as the answer line writes it: integers without a decimal point (`8`, not `8.0`),
/// otherwise Rust's shortest round-trip form (`0.25`).
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Which summarization style a document prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryStyle {
    /// XSum: one sentence.
    OneSentence,
    /// CNN/DailyMail: a few highlight sentences.
    Highlights,
}

/// Summarization: an instruction then the document.
pub fn summarize(document: &str, style: SummaryStyle) -> Prompt {
    let instruction = match style {
        SummaryStyle::OneSentence => "Summarize this article in one sentence.",
        SummaryStyle::Highlights => "Write the highlights of this article, one per line.",
    };
    Prompt::user(format!("{instruction}\n\n{}", document.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mathqa_prompt_lists_lettered_options() {
        let p = mathqa("what is 1 + 1 ?", &["1".into(), "2".into(), "3".into()]);
        assert_eq!(
            p.turns[0].content,
            "what is 1 + 1 ?\nOptions: a) 1, b) 2, c) 3\nAnswer with the option letter."
        );
    }

    #[test]
    fn word_problem_target_formats_numbers() {
        assert_eq!(
            word_problem_target(Some("X=(5+3) "), 8.0),
            "X=(5+3)\n#### 8"
        );
        assert_eq!(word_problem_target(None, 0.25), "#### 0.25");
        assert_eq!(word_problem_target(Some(""), -3.0), "#### -3");
    }
}
