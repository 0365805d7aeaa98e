//! sacrebleu's BLEU tokenizers (`13a`, `intl`, `none`), reproduced from sacrebleu 2.5.1
//! (`tokenizers/tokenizer_13a.py`, `tokenizer_re.py`, `tokenizer_intl.py`).

use std::sync::OnceLock;

use regex::Regex;

use crate::text::py_split;

/// Which sacrebleu tokenizer BLEU applies before counting n-grams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BleuTokenizer {
    /// `13a` (sacrebleu's default; mteval-v13a's tokenization).
    #[default]
    Thirteen,
    /// `intl` (mteval-v14 international tokenization, Unicode punctuation and symbols).
    Intl,
    /// `none`: split on whitespace only.
    None,
}

impl BleuTokenizer {
    /// sacrebleu's signature name for this tokenizer.
    pub fn signature(self) -> &'static str {
        match self {
            BleuTokenizer::Thirteen => "13a",
            BleuTokenizer::Intl => "intl",
            BleuTokenizer::None => "none",
        }
    }

    /// Tokenize one line; tokens are joined by single spaces, as sacrebleu returns them.
    pub fn tokenize(self, line: &str) -> String {
        match self {
            BleuTokenizer::Thirteen => tokenize_13a(line),
            BleuTokenizer::Intl => tokenize_intl(line),
            BleuTokenizer::None => line.to_string(),
        }
    }
}

/// A regex with its replacement template (`${1}` groups).
struct Sub {
    re: Regex,
    rep: &'static str,
}

fn compile(pairs: &[(&str, &'static str)]) -> Vec<Sub> {
    pairs
        .iter()
        .map(|(p, rep)| Sub {
            // The patterns are constants checked by the unit tests.
            re: Regex::new(p).unwrap_or_else(|e| panic!("bad built-in regex {p}: {e}")),
            rep,
        })
        .collect()
}

fn apply(subs: &[Sub], line: &str) -> String {
    let mut s = line.to_string();
    for sub in subs {
        s = sub.re.replace_all(&s, sub.rep).into_owned();
    }
    py_split(&s).join(" ")
}

/// sacrebleu `TokenizerRegexp`, the common post-processing of 13a.
fn regexp_subs() -> &'static [Sub] {
    static SUBS: OnceLock<Vec<Sub>> = OnceLock::new();
    SUBS.get_or_init(|| {
        compile(&[
            // [\{-\~\[-\` -\&\(-\+\:-\@\/]: ASCII punctuation except ' , - . and digits
            (
                r"([\x7b-\x7e\x5b-\x60\x20-\x26\x28-\x2b\x3a-\x40\x2f])",
                " ${1} ",
            ),
            // period/comma unless preceded by a digit
            (r"([^0-9])([\.,])", "${1} ${2} "),
            // period/comma unless followed by a digit
            (r"([\.,])([^0-9])", " ${1} ${2}"),
            // dash when preceded by a digit
            (r"([0-9])(-)", "${1} ${2} "),
        ])
    })
}

/// sacrebleu `Tokenizer13a.__call__`.
pub fn tokenize_13a(line: &str) -> String {
    let mut s = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if s.contains('&') {
        s = s
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    apply(regexp_subs(), &format!(" {s} "))
}

/// sacrebleu `TokenizerV14International.__call__`.
pub fn tokenize_intl(line: &str) -> String {
    static SUBS: OnceLock<Vec<Sub>> = OnceLock::new();
    let subs = SUBS.get_or_init(|| {
        compile(&[
            (r"(\P{N})(\p{P})", "${1} ${2} "),
            (r"(\p{P})(\P{N})", " ${1} ${2}"),
            (r"(\p{S})", " ${1} "),
        ])
    });
    apply(subs, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirteen_a_basic_cases() {
        assert_eq!(tokenize_13a("Hello, world!"), "Hello , world !");
        assert_eq!(tokenize_13a("3.14 and 1,000."), "3.14 and 1,000 .");
        assert_eq!(tokenize_13a("1-2 a-b"), "1 - 2 a-b");
        assert_eq!(tokenize_intl("a,b"), "a , b");
    }
}
