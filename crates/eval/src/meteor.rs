//! METEOR equal to nltk 3.9.1 `nltk.translate.meteor_score.meteor_score` **without its WordNet
//! synonym stage** (WordNet is not available offline): words are lowercased, aligned greedily by
//! exact match, then by Porter stem ([`crate::porter_stem`], nltk's `PorterStemmer`), and scored
//! as `Fmean * (1 - gamma * (chunks / matches)^beta)` with
//! `Fmean = P R / (alpha P + (1 - alpha) R)`, alpha 0.9, beta 3, gamma 0.5.
//! Multiple references: the maximum over references (as nltk). Corpus METEOR: the mean of the
//! sentence scores. Tokens: Python `str.split()` (whitespace) of each line.

use crate::error::Result;
use crate::porter::porter_stem;
use crate::text::{py_lower, py_split};
use crate::validate_corpus;

/// METEOR parameters (nltk defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeteorParams {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
}

impl Default for MeteorParams {
    fn default() -> Self {
        Self {
            alpha: 0.9,
            beta: 3.0,
            gamma: 0.5,
        }
    }
}

/// nltk `_match_enums`: greedy matching, hypothesis from the last word backwards, each taking
/// the last equal reference word still free. Matched pairs are removed from both lists.
fn match_enums(
    hyp: &mut Vec<(usize, String)>,
    refs: &mut Vec<(usize, String)>,
    matches: &mut Vec<(usize, usize)>,
) {
    for i in (0..hyp.len()).rev() {
        for j in (0..refs.len()).rev() {
            if hyp[i].1 == refs[j].1 {
                matches.push((hyp[i].0, refs[j].0));
                hyp.remove(i);
                refs.remove(j);
                break;
            }
        }
    }
}

/// nltk `_count_chunks` on matches sorted by hypothesis position.
fn count_chunks(matches: &[(usize, usize)]) -> usize {
    let mut chunks = 1;
    for w in matches.windows(2) {
        if !(w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1) {
            chunks += 1;
        }
    }
    chunks
}

/// nltk `single_meteor_score` (exact + stem stages) on token lists.
pub fn single_meteor(hyp: &[&str], reference: &[&str], p: &MeteorParams) -> f64 {
    let mut h: Vec<(usize, String)> = hyp.iter().map(|w| py_lower(w)).enumerate().collect();
    let mut r: Vec<(usize, String)> = reference.iter().map(|w| py_lower(w)).enumerate().collect();
    let (hyp_len, ref_len) = (h.len(), r.len());
    let mut matches = Vec::new();
    match_enums(&mut h, &mut r, &mut matches);
    let mut hs: Vec<(usize, String)> = h.iter().map(|(i, w)| (*i, porter_stem(w))).collect();
    let mut rs: Vec<(usize, String)> = r.iter().map(|(i, w)| (*i, porter_stem(w))).collect();
    match_enums(&mut hs, &mut rs, &mut matches);
    // (the WordNet stage would run here; with no synonyms it cannot add a match, see crate docs)
    matches.sort_by_key(|m| m.0);
    let m = matches.len();
    if hyp_len == 0 || ref_len == 0 || m == 0 {
        return 0.0; // nltk: ZeroDivisionError -> 0.0
    }
    let precision = m as f64 / hyp_len as f64;
    let recall = m as f64 / ref_len as f64;
    let fmean = (precision * recall) / (p.alpha * precision + (1.0 - p.alpha) * recall);
    let frag = count_chunks(&matches) as f64 / m as f64;
    let penalty = p.gamma * frag.powf(p.beta);
    (1.0 - penalty) * fmean
}

/// nltk `meteor_score`: the maximum of [`single_meteor`] over the references (whitespace tokens).
pub fn sentence_meteor(hyp: &str, refs: &[String], p: &MeteorParams) -> f64 {
    let h = py_split(hyp);
    refs.iter()
        .map(|r| single_meteor(&h, &py_split(r), p))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Sentence METEOR of every example.
pub fn meteor_sentences<S: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<String>],
    p: &MeteorParams,
) -> Result<Vec<f64>> {
    validate_corpus(hyps.len(), refs)?;
    Ok(hyps
        .iter()
        .zip(refs)
        .map(|(h, rs)| sentence_meteor(h.as_ref(), rs, p))
        .collect())
}

/// Corpus METEOR: mean of the sentence scores.
pub fn corpus_meteor<S: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<String>],
    p: &MeteorParams,
) -> Result<f64> {
    let s = meteor_sentences(hyps, refs, p)?;
    Ok(s.iter().sum::<f64>() / s.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_and_identity() {
        assert_eq!(count_chunks(&[(0, 0), (1, 1), (3, 2)]), 2);
        let p = MeteorParams::default();
        let s = single_meteor(&["a", "b", "c"], &["a", "b", "c"], &p);
        // one chunk of 3 matches: penalty 0.5 * (1/3)^3
        assert!((s - (1.0 - 0.5 / 27.0)).abs() < 1e-12);
        assert_eq!(single_meteor(&[], &["a"], &p), 0.0);
    }
}
