//! CIDEr-D as pycocoevalcap 1.2 (`pycocoevalcap.cider`, the coco-caption code the E2E NLG
//! challenge's `measure_scores.py` runs) computes it: TF-IDF vectors of 1..4-grams with document
//! frequencies over the reference sets of the corpus (`idf = ln(N) - ln(max(1, df))`), per order
//! the clipped cosine `sum min(h, r) * r / (|h| |r|)` times the Gaussian length penalty
//! `exp(-(len_h - len_r)^2 / (2 sigma^2))`, sigma = 6, averaged over orders and references and
//! multiplied by 10. Corpus CIDEr-D is the mean over examples.
//!
//! Tokens: Python `str.split()` of the given strings (pycocoevalcap's `CiderScorer` input). The
//! full COCO/E2E pipeline first runs Stanford's Java `PTBTokenizer -lowerCase` and drops
//! punctuation tokens (`. ? ! , : ; - -- ... ' '' \` \`\``, brackets); that step is not
//! reproduced here: pre-tokenize and lowercase the strings for a like-for-like E2E number.
//!
//! As in pycocoevalcap, the "length" in the penalty is the number of *bigrams* of a sentence
//! (its code adds term frequencies where `len(ngram) - 1 == 1`); kept for equality.

use std::collections::HashMap;

use crate::error::{EvalError, Result};
use crate::text::{ngram_counts, py_split, OrderedCounter};
use crate::{validate_corpus, Metric};

/// CIDEr-D parameters (pycocoevalcap defaults n = 4, sigma = 6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CiderParams {
    pub n: usize,
    pub sigma: f64,
}

impl Default for CiderParams {
    fn default() -> Self {
        Self { n: 4, sigma: 6.0 }
    }
}

/// TF-IDF vector of one sentence: per order, (n-gram, weight) in first-occurrence order.
struct TfIdf<'a> {
    vec: Vec<Vec<(&'a [&'a str], f64)>>,
    lookup: Vec<HashMap<&'a [&'a str], f64>>,
    norm: Vec<f64>,
    length: usize,
}

fn counts2vec<'a>(
    counts: &OrderedCounter<&'a [&'a str]>,
    df: &HashMap<&[&str], f64>,
    ref_len: f64,
    n: usize,
) -> TfIdf<'a> {
    let mut vec = vec![Vec::new(); n];
    let mut lookup = vec![HashMap::new(); n];
    let mut norm = vec![0.0f64; n];
    let mut length = 0usize;
    for (g, tf) in counts.iter() {
        let d = df.get(*g).copied().unwrap_or(0.0).max(1.0).ln();
        let k = g.len() - 1;
        let w = tf as f64 * (ref_len - d);
        vec[k].push((*g, w));
        lookup[k].insert(*g, w);
        norm[k] += w.powi(2);
        if k == 1 {
            length += tf;
        }
    }
    TfIdf {
        vec,
        lookup,
        norm: norm.into_iter().map(f64::sqrt).collect(),
        length,
    }
}

fn sim(h: &TfIdf, r: &TfIdf, n: usize, sigma: f64) -> Vec<f64> {
    let delta = h.length as f64 - r.length as f64;
    (0..n)
        .map(|k| {
            let mut val = 0.0;
            for (g, wh) in &h.vec[k] {
                let wr = r.lookup[k].get(g).copied().unwrap_or(0.0);
                val += wh.min(wr) * wr;
            }
            if h.norm[k] != 0.0 && r.norm[k] != 0.0 {
                val /= h.norm[k] * r.norm[k];
            }
            // numpy computes `np.e ** x`
            val * std::f64::consts::E.powf(-(delta * delta) / (2.0 * sigma.powi(2)))
        })
        .collect()
}

/// Per-example CIDEr-D (pycocoevalcap `CiderScorer.compute_score()[1]`).
pub fn cider_sentences<S: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<String>],
    p: &CiderParams,
) -> Result<Vec<f64>> {
    validate_corpus(hyps.len(), refs)?;
    if p.n == 0 {
        return Err(EvalError::InvalidOption {
            field: "cider.n",
            reason: "must be at least 1".into(),
        });
    }
    let n = p.n;
    let hyp_toks: Vec<Vec<&str>> = hyps.iter().map(|h| py_split(h.as_ref())).collect();
    let ref_toks: Vec<Vec<Vec<&str>>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| py_split(r)).collect())
        .collect();
    let hyp_counts: Vec<_> = hyp_toks.iter().map(|t| ngram_counts(t, 1, n)).collect();
    let ref_counts: Vec<Vec<_>> = ref_toks
        .iter()
        .map(|rs| rs.iter().map(|t| ngram_counts(t, 1, n)).collect())
        .collect();

    // document frequency: in how many examples' reference sets an n-gram occurs
    let mut df: HashMap<&[&str], f64> = HashMap::new();
    for rs in &ref_counts {
        let mut seen: std::collections::HashSet<&[&str]> = std::collections::HashSet::new();
        for c in rs {
            for (g, _) in c.iter() {
                if seen.insert(*g) {
                    *df.entry(*g).or_insert(0.0) += 1.0;
                }
            }
        }
    }
    if df.is_empty() {
        return Err(EvalError::Undefined {
            metric: Metric::Cider,
            reason: "every reference is empty (pycocoevalcap raises ValueError)".into(),
        });
    }
    let ref_len = (hyps.len() as f64).ln();

    let mut scores = Vec::with_capacity(hyps.len());
    for (hc, rcs) in hyp_counts.iter().zip(&ref_counts) {
        let hv = counts2vec(hc, &df, ref_len, n);
        let mut acc = vec![0.0f64; n];
        for rc in rcs {
            let rv = counts2vec(rc, &df, ref_len, n);
            for (a, s) in acc.iter_mut().zip(sim(&hv, &rv, n, p.sigma)) {
                *a += s;
            }
        }
        let mean = acc.iter().sum::<f64>() / n as f64;
        scores.push(mean / rcs.len() as f64 * 10.0);
    }
    Ok(scores)
}

/// Corpus CIDEr-D: the mean of [`cider_sentences`].
pub fn corpus_cider<S: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<String>],
    p: &CiderParams,
) -> Result<f64> {
    let s = cider_sentences(hyps, refs, p)?;
    Ok(s.iter().sum::<f64>() / s.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_example_corpus_is_zero() {
        // ln(1) = 0 makes every idf weight 0
        let s = corpus_cider(&["a b c"], &[vec!["a b c".into()]], &CiderParams::default()).unwrap();
        assert_eq!(s, 0.0);
    }
}
