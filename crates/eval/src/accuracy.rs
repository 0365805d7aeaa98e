//! Answer extraction and accuracy for arithmetic-reasoning tasks.
//!
//! * Final number (GSM8k / MAWPS style): the first number after the last `####` when there is
//!   one, else the last number in the text. A number is `[0-9][0-9,]*(\.[0-9]+)?(/[0-9]+(\.[0-9]+)?)?`
//!   with a leading `-` kept unless that `-` follows an ASCII letter or digit (`5-3` is 5 and 3,
//!   `x -3` is -3); commas are dropped (`1,234` = 1234) and `a/b` is a fraction (skipped when
//!   b = 0). Two numbers are equal when `|p - g| <= 1e-6 * max(1, |g|)`.
//! * Multiple choice (MathQA): an option letter `a`..`e` ([`extract_choice`]); when the text has
//!   no letter, the option whose value it states ([`choice_from_value`]).
//! * [`answers_match`] picks the mode from the gold answer: a lone letter `a`..`e` (optionally in
//!   parentheses) is a choice, a gold with a number is numeric, anything else is compared as
//!   normalised text (lowercased, whitespace collapsed, trailing `.` dropped).

use std::sync::OnceLock;

use regex::Regex;

use crate::error::{EvalError, Result};

/// Relative tolerance of numeric answers.
pub const NUMBER_TOLERANCE: f64 = 1e-6;

fn number_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // constant pattern, covered by the unit tests
    RE.get_or_init(|| {
        Regex::new(r"-?[0-9][0-9,]*(?:\.[0-9]+)?(?:/[0-9]+(?:\.[0-9]+)?)?")
            .unwrap_or_else(|e| panic!("bad built-in regex: {e}"))
    })
}

fn parse_number(s: &str) -> Option<f64> {
    let s = s.replace(',', "");
    match s.split_once('/') {
        Some((a, b)) => {
            let b: f64 = b.parse().ok()?;
            if b == 0.0 {
                None
            } else {
                Some(a.parse::<f64>().ok()? / b)
            }
        }
        None => s.parse().ok(),
    }
}

/// All numbers of `text`, in order.
pub fn numbers_in(text: &str) -> Vec<f64> {
    number_re()
        .find_iter(text)
        .filter_map(|m| {
            let mut s = m.as_str();
            if s.starts_with('-') {
                let before = text[..m.start()].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric()) {
                    s = &s[1..];
                }
            }
            parse_number(s)
        })
        .collect()
}

/// The final numeric answer of a GSM8k/MAWPS-style text (see the module docs).
pub fn final_number(text: &str) -> Option<f64> {
    if let Some(k) = text.rfind("####") {
        if let Some(&v) = numbers_in(&text[k + 4..]).first() {
            return Some(v);
        }
    }
    numbers_in(text).last().copied()
}

/// Numeric equality with [`NUMBER_TOLERANCE`] relative to the gold value.
pub fn numbers_equal(pred: f64, gold: f64) -> bool {
    (pred - gold).abs() <= NUMBER_TOLERANCE * gold.abs().max(1.0)
}

fn choice_res() -> &'static [Regex; 3] {
    static RE: OnceLock<[Regex; 3]> = OnceLock::new();
    RE.get_or_init(|| {
        let c = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("bad built-in regex {p}: {e}"));
        [
            // "the answer is (c)", "answer: c", "Answer is c )"
            c(r"(?i)answer\s*(?:is|:)?\s*(?:option\s*)?\(?([a-e])\b"),
            // the whole text is a letter: "c", "(c)", "c )", "c."
            c(r"(?i)^\s*\(?([a-e])\s*[).]?\s*$"),
            // "(c)" or "c )" anywhere (MathQA's option syntax)
            c(r"(?i)\(([a-e])\)|\b([a-e])\s?\)"),
        ]
    })
}

/// The option letter (`'a'..='e'`, lowercase) a text chooses, if any: an "answer is X" phrase
/// first (the last one), else a text that is only a letter, else the last `(x)` / `x )` mark.
pub fn extract_choice(text: &str) -> Option<char> {
    let [answer, lone, mark] = choice_res();
    let letter = |m: Option<regex::Match>| m.and_then(|m| m.as_str().chars().next());
    if let Some(c) = answer.captures_iter(text).last() {
        return letter(c.get(1)).map(|c| c.to_ascii_lowercase());
    }
    if let Some(c) = lone.captures(text) {
        return letter(c.get(1)).map(|c| c.to_ascii_lowercase());
    }
    mark.captures_iter(text)
        .last()
        .and_then(|c| letter(c.get(1).or(c.get(2))))
        .map(|c| c.to_ascii_lowercase())
}

fn normalize(s: &str) -> String {
    let lower = s.to_lowercase();
    let joined = lower.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.trim_end_matches('.').trim().to_string()
}

/// Split MathQA's option string `"a ) 38 , b ) 27.675 , c ) 30 , ..."` into option values
/// (`options[0]` is option a). Returns an error naming the field when no option is found.
pub fn parse_mathqa_options(options: &str) -> Result<Vec<String>> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?:^|,)\s*\[?'?([a-e])\s*\)\s*").unwrap_or_else(|e| panic!("bad regex: {e}"))
    });
    let starts: Vec<(usize, usize)> = re
        .find_iter(options)
        .map(|m| (m.start(), m.end()))
        .collect();
    if starts.is_empty() {
        return Err(EvalError::InvalidOption {
            field: "options",
            reason: format!("no `a ) ...` option found in {options:?}"),
        });
    }
    Ok(starts
        .iter()
        .enumerate()
        .map(|(i, &(_, end))| {
            let stop = starts.get(i + 1).map_or(options.len(), |s| s.0);
            options[end..stop]
                .trim()
                .trim_end_matches([']', '\''])
                .trim()
                .to_string()
        })
        .collect())
}

/// The option (index) whose value a text states: the option equal to the text after
/// normalisation, else the numeric option equal to the text's final number.
pub fn choice_from_value(text: &str, options: &[String]) -> Option<usize> {
    let t = normalize(text);
    if let Some(i) = options.iter().position(|o| normalize(o) == t) {
        return Some(i);
    }
    let v = final_number(text)?;
    options.iter().position(|o| {
        let nums = numbers_in(o);
        nums.len() == 1 && numbers_equal(v, nums[0])
    })
}

/// Whether a multiple-choice prediction picks `gold` (`'a'..='e'`); `options` (when known) lets
/// an answer given as a value count.
pub fn choice_correct(pred: &str, gold: char, options: Option<&[String]>) -> bool {
    let gold = gold.to_ascii_lowercase();
    match extract_choice(pred) {
        Some(c) => c == gold,
        None => options
            .and_then(|o| choice_from_value(pred, o))
            .is_some_and(|i| (b'a' + i as u8) as char == gold),
    }
}

/// The letter of a gold answer that is only an option letter (`c`, `(c)`, `C)`).
fn gold_letter(gold: &str) -> Option<char> {
    let [_, lone, _] = choice_res();
    lone.captures(gold)
        .and_then(|c| c.get(1))
        .and_then(|m| m.as_str().chars().next())
}

/// Whether a predicted answer text matches a gold answer (mode chosen from the gold, see the
/// module docs).
pub fn answers_match(pred: &str, gold: &str) -> bool {
    if let Some(g) = gold_letter(gold) {
        return choice_correct(pred, g, None);
    }
    if let Some(g) = final_number(gold) {
        return final_number(pred).is_some_and(|p| numbers_equal(p, g));
    }
    normalize(pred) == normalize(gold)
}

/// Accuracy (fraction in 0..=1) of predictions against gold answers.
pub fn accuracy<S: AsRef<str>, G: AsRef<str>>(preds: &[S], golds: &[G]) -> Result<f64> {
    if preds.len() != golds.len() {
        return Err(EvalError::LengthMismatch {
            hyps: preds.len(),
            refs: golds.len(),
        });
    }
    if preds.is_empty() {
        return Err(EvalError::EmptyCorpus);
    }
    let correct = preds
        .iter()
        .zip(golds)
        .filter(|(p, g)| answers_match(p.as_ref(), g.as_ref()))
        .count();
    Ok(correct as f64 / preds.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_extraction() {
        assert_eq!(extract_choice("The answer is (C)."), Some('c'));
        assert_eq!(extract_choice("answer: b"), Some('b'));
        assert_eq!(extract_choice(" d ) "), Some('d'));
        assert_eq!(extract_choice("I pick a ) 38 over b ) 27"), Some('b'));
        assert_eq!(extract_choice("no letter here, 42"), None);
        // an article "a" is not an option letter
        assert_eq!(extract_choice("a train leaves at 5"), None);
    }

    #[test]
    fn mathqa_options_and_values() {
        let o = parse_mathqa_options(
            "a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) none of these",
        )
        .unwrap();
        assert_eq!(
            o,
            ["38", "27.675", "30", "data inadequate", "none of these"]
        );
        assert_eq!(choice_from_value("so it is 27.675", &o), Some(1));
        assert_eq!(choice_from_value("Data inadequate.", &o), Some(3));
        assert!(choice_correct("the result is 30", 'c', Some(&o)));
        assert!(!choice_correct("the answer is (a)", 'c', Some(&o)));
        assert!(parse_mathqa_options("nothing").is_err());
    }

    #[test]
    fn accuracy_modes() {
        let preds = ["#### 72", "(b)", "Paris.", "13"];
        let golds = ["72", "b", "paris", "12"];
        assert_eq!(accuracy(&preds, &golds).unwrap(), 0.75);
        assert!(matches!(
            accuracy(&preds, &golds[..2]),
            Err(EvalError::LengthMismatch { .. })
        ));
        assert!(matches!(
            accuracy::<&str, &str>(&[], &[]),
            Err(EvalError::EmptyCorpus)
        ));
    }
}
