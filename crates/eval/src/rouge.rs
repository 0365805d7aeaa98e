//! ROUGE-N, ROUGE-L and ROUGE-Lsum equal to Google's `rouge-score` 0.1.2
//! (`rouge_scorer.RougeScorer(types, use_stemmer=...)`), including its tokenizer: Python
//! lowercasing, every run of characters outside `[a-z0-9]` becomes a space (so non-ASCII letters
//! are dropped), and with `use_stemmer` tokens longer than 3 characters are Porter-stemmed
//! (nltk's stemmer, [`crate::porter_stem`]). ROUGE-Lsum splits on newlines (summary-level union
//! LCS); ROUGE-L ignores newlines.
//!
//! Multiple references: `RougeScorer.score_multi`, i.e. per ROUGE type the reference with the
//! highest F (first on ties). Corpus: the mean of the per-example precision, recall and F.

use crate::error::Result;
use crate::porter::porter_stem;
use crate::text::{ngram_counts, py_lower};
use crate::validate_corpus;

/// A ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RougeType {
    /// ROUGE-N (n-gram overlap), `rougeN`.
    N(usize),
    /// ROUGE-L: longest common subsequence over the whole text, `rougeL`.
    L,
    /// ROUGE-Lsum: summary-level union LCS over newline-separated sentences, `rougeLsum`.
    Lsum,
}

impl RougeType {
    /// rouge-score's key (`rouge1`, `rouge2`, `rougeL`, `rougeLsum`).
    pub fn key(self) -> String {
        match self {
            RougeType::N(n) => format!("rouge{n}"),
            RougeType::L => "rougeL".into(),
            RougeType::Lsum => "rougeLsum".into(),
        }
    }

    /// The four types reported by default.
    pub const DEFAULT: [RougeType; 4] = [
        RougeType::N(1),
        RougeType::N(2),
        RougeType::L,
        RougeType::Lsum,
    ];
}

/// Precision, recall and F-measure (rouge-score `Score`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeScore {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

fn fmeasure(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

fn score(p: f64, r: f64) -> RougeScore {
    RougeScore {
        precision: p,
        recall: r,
        fmeasure: fmeasure(p, r),
    }
}

/// rouge-score's `tokenize.tokenize(text, stemmer)`.
pub fn rouge_tokenize(text: &str, use_stemmer: bool) -> Vec<String> {
    let lower = py_lower(text);
    let cleaned: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(|t| {
            if use_stemmer && t.len() > 3 {
                porter_stem(t)
            } else {
                t.to_string()
            }
        })
        // rouge-score keeps only tokens matching ^[a-z0-9]+$ (stems of ASCII words stay ASCII)
        .filter(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        .collect()
}

fn rouge_n(target: &[String], pred: &[String], n: usize) -> RougeScore {
    let t = ngram_counts(target, n, n);
    let p = ngram_counts(pred, n, n);
    let inter: usize = t.iter().map(|(g, c)| c.min(p.get(g))).sum();
    let precision = inter as f64 / p.total().max(1) as f64;
    let recall = inter as f64 / t.total().max(1) as f64;
    score(precision, recall)
}

/// LCS dynamic-programming table, `[rows + 1][cols + 1]` flattened row-major.
fn lcs_table(a: &[String], b: &[String]) -> Vec<Vec<usize>> {
    let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i][j] = if a[i - 1] == b[j - 1] {
                t[i - 1][j - 1] + 1
            } else {
                t[i - 1][j].max(t[i][j - 1])
            };
        }
    }
    t
}

fn rouge_l(target: &[String], pred: &[String]) -> RougeScore {
    if target.is_empty() || pred.is_empty() {
        return RougeScore::default();
    }
    let lcs = lcs_table(target, pred)[target.len()][pred.len()];
    score(
        lcs as f64 / pred.len() as f64,
        lcs as f64 / target.len() as f64,
    )
}

/// rouge-score `_backtrack_norec`: indices into `r` of one LCS of `r` and `c`.
fn lcs_indices(r: &[String], c: &[String]) -> Vec<usize> {
    let t = lcs_table(r, c);
    let (mut i, mut j) = (r.len(), c.len());
    let mut out = Vec::new();
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i][j - 1] > t[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

fn rouge_lsum(target_sents: &[Vec<String>], pred_sents: &[Vec<String>]) -> RougeScore {
    use std::collections::HashMap;
    if target_sents.is_empty() || pred_sents.is_empty() {
        return RougeScore::default();
    }
    let m: usize = target_sents.iter().map(Vec::len).sum();
    let n: usize = pred_sents.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return RougeScore::default();
    }
    let mut cnt_r: HashMap<&str, i64> = HashMap::new();
    let mut cnt_c: HashMap<&str, i64> = HashMap::new();
    for s in target_sents {
        for t in s {
            *cnt_r.entry(t).or_insert(0) += 1;
        }
    }
    for s in pred_sents {
        for t in s {
            *cnt_c.entry(t).or_insert(0) += 1;
        }
    }
    let mut hits = 0usize;
    for r in target_sents {
        let mut union: Vec<usize> = pred_sents.iter().flat_map(|c| lcs_indices(r, c)).collect();
        union.sort_unstable();
        union.dedup();
        for &i in &union {
            let tok = r[i].as_str();
            let (c, rr) = (
                cnt_c.get(tok).copied().unwrap_or(0),
                cnt_r.get(tok).copied().unwrap_or(0),
            );
            if c > 0 && rr > 0 {
                hits += 1;
                cnt_c.insert(tok, c - 1);
                cnt_r.insert(tok, rr - 1);
            }
        }
    }
    score(hits as f64 / n as f64, hits as f64 / m as f64)
}

/// Newline-split sentences (empty lines dropped), each tokenized.
fn sentences(text: &str, use_stemmer: bool) -> Vec<Vec<String>> {
    text.split('\n')
        .filter(|s| !s.is_empty())
        .map(|s| rouge_tokenize(s, use_stemmer))
        .collect()
}

/// rouge-score `RougeScorer.score(target, prediction)` for one type.
pub fn rouge_pair(
    target: &str,
    prediction: &str,
    kind: RougeType,
    use_stemmer: bool,
) -> RougeScore {
    match kind {
        RougeType::Lsum => rouge_lsum(
            &sentences(target, use_stemmer),
            &sentences(prediction, use_stemmer),
        ),
        RougeType::L => rouge_l(
            &rouge_tokenize(target, use_stemmer),
            &rouge_tokenize(prediction, use_stemmer),
        ),
        RougeType::N(n) => rouge_n(
            &rouge_tokenize(target, use_stemmer),
            &rouge_tokenize(prediction, use_stemmer),
            n,
        ),
    }
}

/// rouge-score `score_multi`: the reference with the highest F (the first on ties).
pub fn rouge_multi(
    targets: &[String],
    prediction: &str,
    kind: RougeType,
    use_stemmer: bool,
) -> RougeScore {
    let mut best: Option<RougeScore> = None;
    for t in targets {
        let s = rouge_pair(t, prediction, kind, use_stemmer);
        if best.is_none_or(|b| s.fmeasure > b.fmeasure) {
            best = Some(s);
        }
    }
    best.unwrap_or_default()
}

/// Per-example scores of one ROUGE type.
pub fn rouge_sentences<S: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<String>],
    kind: RougeType,
    use_stemmer: bool,
) -> Result<Vec<RougeScore>> {
    if let RougeType::N(0) = kind {
        return Err(crate::EvalError::InvalidOption {
            field: "rouge type",
            reason: "ROUGE-N requires n >= 1".into(),
        });
    }
    validate_corpus(hyps.len(), refs)?;
    Ok(hyps
        .iter()
        .zip(refs)
        .map(|(h, rs)| rouge_multi(rs, h.as_ref(), kind, use_stemmer))
        .collect())
}

/// Corpus ROUGE: the mean of per-example precision, recall and F.
pub fn corpus_rouge<S: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<String>],
    kind: RougeType,
    use_stemmer: bool,
) -> Result<RougeScore> {
    let per = rouge_sentences(hyps, refs, kind, use_stemmer)?;
    let k = per.len() as f64;
    Ok(RougeScore {
        precision: per.iter().map(|s| s.precision).sum::<f64>() / k,
        recall: per.iter().map(|s| s.recall).sum::<f64>() / k,
        fmeasure: per.iter().map(|s| s.fmeasure).sum::<f64>() / k,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_drops_non_ascii_and_stems_long_tokens() {
        assert_eq!(
            rouge_tokenize("Café RUNNING, the cats!", true),
            ["caf", "run", "the", "cat"]
        );
        assert_eq!(rouge_tokenize("Café RUNNING", false), ["caf", "running"]);
    }

    #[test]
    fn lcs_of_known_pair() {
        let a: Vec<String> = "a b c d e".split(' ').map(String::from).collect();
        let b: Vec<String> = "a c e f".split(' ').map(String::from).collect();
        let s = rouge_l(&a, &b);
        assert!((s.recall - 0.6).abs() < 1e-15 && (s.precision - 0.75).abs() < 1e-15);
        assert_eq!(lcs_indices(&a, &b), vec![0, 2, 4]);
    }
}
