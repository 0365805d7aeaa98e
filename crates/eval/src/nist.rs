//! Corpus NIST equal to nltk 3.9.1 `nltk.translate.nist_score.corpus_nist(refs, hyps, n=5)`
//! (Doddington 2002), on tokens from Python's `str.split()` (whitespace; no lowercasing, no
//! punctuation splitting). Information weights `log2(count(w1..wn-1) / count(w1..wn))` come from
//! all reference n-grams; per example and order, the reference with the best
//! (precision, numerator, denominator, length) tuple is chosen, as nltk does.
//!
//! Where nltk raises `ZeroDivisionError` (some order 1..=n has no hypothesis n-gram in the whole
//! corpus, e.g. every hypothesis shorter than n tokens; or all references empty) this returns
//! [`EvalError::Undefined`].

use std::collections::HashMap;

use crate::error::{EvalError, Result};
use crate::text::{ngram_counts, py_split};
use crate::{validate_corpus, Metric};

/// nltk's default maximum n-gram order.
pub const NIST_ORDER: usize = 5;

/// nltk `nist_length_penalty`: `exp(beta * ln(min(ratio, 1))^2)` with beta chosen so that a
/// length ratio of 2/3 gives 0.5.
fn length_penalty(ref_len: usize, hyp_len: usize) -> f64 {
    let ratio = hyp_len as f64 / ref_len as f64;
    if 0.0 < ratio && ratio < 1.0 {
        let beta = 0.5f64.ln() / 1.5f64.ln().powi(2);
        (beta * ratio.ln().powi(2)).exp()
    } else {
        ratio.clamp(0.0, 1.0)
    }
}

/// Python's `math.log(x, 2)` (computed as `ln(x) / ln(2)`, like CPython).
fn log2_py(x: f64) -> f64 {
    x.ln() / 2f64.ln()
}

/// Corpus NIST of order `n` (nltk default 5) on whitespace tokens.
pub fn corpus_nist<S: AsRef<str>>(hyps: &[S], refs: &[Vec<String>], n: usize) -> Result<f64> {
    validate_corpus(hyps.len(), refs)?;
    let undefined = |reason: String| EvalError::Undefined {
        metric: Metric::Nist,
        reason,
    };
    let hyp_toks: Vec<Vec<&str>> = hyps.iter().map(|h| py_split(h.as_ref())).collect();
    let ref_toks: Vec<Vec<Vec<&str>>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| py_split(r)).collect())
        .collect();

    // n-gram frequencies over all references
    let mut freq: HashMap<&[&str], usize> = HashMap::new();
    let mut total_ref_words = 0usize;
    for rs in &ref_toks {
        for r in rs {
            for (g, c) in ngram_counts(r, 1, n).iter() {
                *freq.entry(g).or_insert(0) += c;
            }
            total_ref_words += r.len();
        }
    }
    let info = |g: &[&str]| -> f64 {
        let num = if g.len() > 1 {
            freq.get(&g[..g.len() - 1])
                .copied()
                .unwrap_or(total_ref_words)
        } else {
            total_ref_words
        };
        // every g passed here is a reference n-gram, so its frequency is >= 1
        let den = freq.get(g).copied().unwrap_or(1);
        log2_py(num as f64 / den as f64)
    };

    let mut numerators = vec![0.0f64; n];
    let mut denominators = vec![0usize; n];
    let (mut l_ref, mut l_sys) = (0usize, 0usize);
    for i in 1..=n {
        for (h, rs) in hyp_toks.iter().zip(&ref_toks) {
            let hyp_ngrams = ngram_counts(h, i, i);
            // (precision, numerator, denominator, ref_len), maximised lexicographically
            let mut best: Option<(f64, f64, usize, usize)> = None;
            for r in rs {
                let ref_ngrams = ngram_counts(r, i, i);
                let mut num = 0.0;
                for (g, c) in hyp_ngrams.iter() {
                    let overlap = c.min(ref_ngrams.get(g));
                    if overlap > 0 {
                        num += info(g) * overlap as f64;
                    }
                }
                let den = hyp_ngrams.total();
                let prec = if den == 0 { 0.0 } else { num / den as f64 };
                let cand = (prec, num, den, r.len());
                best = match best {
                    Some(b) if !tuple_gt(&cand, &b) => Some(b),
                    _ => Some(cand),
                };
            }
            if let Some((_, num, den, rl)) = best {
                numerators[i - 1] += num;
                denominators[i - 1] += den;
                l_ref += rl;
            }
            l_sys += h.len();
        }
    }
    let mut precision = 0.0;
    for i in 0..n {
        if denominators[i] == 0 {
            return Err(undefined(format!(
                "no hypothesis has {} or more tokens (nltk raises ZeroDivisionError)",
                i + 1
            )));
        }
        precision += numerators[i] / denominators[i] as f64;
    }
    if l_ref == 0 {
        return Err(undefined(
            "all references are empty (nltk raises ZeroDivisionError)".into(),
        ));
    }
    Ok(precision * length_penalty(l_ref, l_sys))
}

/// Python tuple comparison `a > b` for (f64, f64, usize, usize).
fn tuple_gt(a: &(f64, f64, usize, usize), b: &(f64, f64, usize, usize)) -> bool {
    if a.0 != b.0 {
        return a.0 > b.0;
    }
    if a.1 != b.1 {
        return a.1 > b.1;
    }
    if a.2 != b.2 {
        return a.2 > b.2;
    }
    a.3 > b.3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_penalty_is_half_at_two_thirds() {
        assert!((length_penalty(3, 2) - 0.5).abs() < 1e-12);
        assert_eq!(length_penalty(3, 3), 1.0);
        assert_eq!(length_penalty(3, 0), 0.0);
    }

    #[test]
    fn short_hypotheses_are_undefined() {
        let r = corpus_nist(&["a b"], &[vec!["a b c".to_string()]], 5);
        assert!(matches!(r, Err(EvalError::Undefined { .. })));
    }
}
