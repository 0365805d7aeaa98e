//! Corpus and sentence BLEU equal to sacrebleu 2.5.1 (`sacrebleu.corpus_bleu`,
//! `sacrebleu.sentence_bleu`): per-segment clipped n-gram matches against the element-wise
//! maximum of the references' n-gram counts, closest reference length (shorter on ties) for the
//! brevity penalty, smoothing as Chen & Cherry (2014) methods 1-3, scores on sacrebleu's 0-100
//! scale. The input lines are lowercased (optionally), right-stripped and tokenized as sacrebleu
//! does ([`BleuTokenizer`]).

use crate::bleu_tokenizer::BleuTokenizer;
use crate::error::{EvalError, Result};
use crate::text::{ngram_counts, py_lower, py_rstrip, py_split, OrderedCounter};
use crate::validate_corpus;

/// sacrebleu version whose behaviour (and signature string) this module reproduces.
pub const SACREBLEU_VERSION: &str = "2.5.1";

/// Smoothing of zero n-gram precisions (sacrebleu `smooth_method` / `smooth_value`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Smoothing {
    /// No smoothing.
    None,
    /// Method 1: a zero count becomes `value` (sacrebleu default 0.1).
    Floor(f64),
    /// Method 2: add `value` to counts and totals of orders > 1 (sacrebleu default 1).
    AddK(f64),
    /// Method 3 (mteval-v13a's NIST smoothing), sacrebleu's default.
    #[default]
    Exp,
}

impl Smoothing {
    fn signature(self) -> String {
        match self {
            Smoothing::None => "none".into(),
            Smoothing::Exp => "exp".into(),
            Smoothing::Floor(v) => format!("floor[{v:.2}]"),
            Smoothing::AddK(v) => format!("add-k[{v:.2}]"),
        }
    }
}

/// BLEU options (sacrebleu's `BLEU(...)` arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BleuConfig {
    pub tokenizer: BleuTokenizer,
    pub lowercase: bool,
    pub smoothing: Smoothing,
    pub max_ngram_order: usize,
    /// Leave out n-gram orders with no hypothesis n-gram (sacrebleu `effective_order`).
    pub effective_order: bool,
}

impl Default for BleuConfig {
    /// `sacrebleu.corpus_bleu` defaults: 13a, mixed case, exp smoothing, order 4.
    fn default() -> Self {
        Self {
            tokenizer: BleuTokenizer::Thirteen,
            lowercase: false,
            smoothing: Smoothing::Exp,
            max_ngram_order: 4,
            effective_order: false,
        }
    }
}

impl BleuConfig {
    /// `sacrebleu.sentence_bleu` defaults (as corpus, with effective order on).
    pub fn sentence() -> Self {
        Self {
            effective_order: true,
            ..Self::default()
        }
    }
}

/// A BLEU result with its sufficient statistics (sacrebleu `BLEUScore`).
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// BLEU on the 0-100 scale.
    pub score: f64,
    /// Clipped n-gram matches per order 1..=max order.
    pub counts: Vec<u64>,
    /// Hypothesis n-grams per order.
    pub totals: Vec<u64>,
    /// Precisions (percent) per order, after smoothing.
    pub precisions: Vec<f64>,
    /// Brevity penalty.
    pub bp: f64,
    pub sys_len: u64,
    pub ref_len: u64,
}

fn preprocess(line: &str, cfg: &BleuConfig) -> Vec<String> {
    let lowered;
    let s = if cfg.lowercase {
        lowered = py_lower(line);
        lowered.as_str()
    } else {
        line
    };
    let tok = cfg.tokenizer.tokenize(py_rstrip(s));
    py_split(&tok).into_iter().map(str::to_string).collect()
}

/// Closest reference length, the shorter one on ties (sacrebleu `_get_closest_ref_len`).
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for &r in ref_lens {
        let d = hyp_len.abs_diff(r);
        best = match best {
            None => Some((d, r)),
            Some((bd, bl)) if d < bd || (d == bd && r < bl) => Some((d, r)),
            keep => keep,
        };
    }
    best.map_or(0, |(_, l)| l)
}

/// Segment statistics `[hyp_len, ref_len, correct.., total..]`.
fn segment_stats(hyp: &str, refs: &[String], cfg: &BleuConfig) -> Vec<u64> {
    let n = cfg.max_ngram_order;
    let ref_toks: Vec<Vec<String>> = refs.iter().map(|r| preprocess(r, cfg)).collect();
    let mut ref_max: OrderedCounter<&[String]> = OrderedCounter::new();
    for toks in &ref_toks {
        for (g, c) in ngram_counts(toks, 1, n).iter() {
            ref_max.max_with(g, c);
        }
    }
    let ref_lens: Vec<usize> = ref_toks.iter().map(Vec::len).collect();
    let hyp_toks = preprocess(hyp, cfg);
    let mut correct = vec![0u64; n];
    let mut total = vec![0u64; n];
    for (g, c) in ngram_counts(&hyp_toks, 1, n).iter() {
        total[g.len() - 1] += c as u64;
        correct[g.len() - 1] += c.min(ref_max.get(g)) as u64;
    }
    let mut stats = vec![
        hyp_toks.len() as u64,
        closest_ref_len(hyp_toks.len(), &ref_lens) as u64,
    ];
    stats.extend(correct);
    stats.extend(total);
    stats
}

/// sacrebleu's `my_log`: log with log(0) floored to -9999999999.
fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// sacrebleu `BLEU.compute_bleu` from summed statistics.
pub fn bleu_from_stats(
    correct: &[u64],
    total: &[u64],
    sys_len: u64,
    ref_len: u64,
    cfg: &BleuConfig,
) -> BleuScore {
    let n = cfg.max_ngram_order;
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = vec![0.0; n];
    let done = |score, precisions| BleuScore {
        score,
        counts: correct.to_vec(),
        totals: total.to_vec(),
        precisions,
        bp,
        sys_len,
        ref_len,
    };
    if correct.iter().all(|&c| c == 0) {
        return done(0.0, precisions);
    }
    let mut smooth_mteval = 1.0;
    let mut eff_order = n;
    for k in 0..n {
        let (mut c, mut t) = (correct[k] as f64, total[k] as f64);
        if let Smoothing::AddK(v) = cfg.smoothing {
            if k > 0 {
                c += v;
                t += v;
            }
        }
        if t == 0.0 {
            break;
        }
        if cfg.effective_order {
            eff_order = k + 1;
        }
        if c == 0.0 {
            match cfg.smoothing {
                Smoothing::Exp => {
                    smooth_mteval *= 2.0;
                    precisions[k] = 100.0 / (smooth_mteval * t);
                }
                Smoothing::Floor(v) => precisions[k] = 100.0 * v / t,
                Smoothing::None | Smoothing::AddK(_) => {}
            }
        } else {
            precisions[k] = 100.0 * c / t;
        }
    }
    let log_sum: f64 = precisions[..eff_order].iter().map(|&p| my_log(p)).sum();
    let score = bp * (log_sum / eff_order as f64).exp();
    done(score, precisions)
}

fn check_config(cfg: &BleuConfig) -> Result<()> {
    if cfg.max_ngram_order == 0 {
        return Err(EvalError::InvalidOption {
            field: "bleu.max_ngram_order",
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// Corpus BLEU (sacrebleu `corpus_bleu(hyps, streams)` where `refs[i]` lists the references of
/// hypothesis `i`; a variable number of references per example is allowed).
pub fn corpus_bleu<S: AsRef<str>>(
    hyps: &[S],
    refs: &[Vec<String>],
    cfg: &BleuConfig,
) -> Result<BleuScore> {
    validate_corpus(hyps.len(), refs)?;
    check_config(cfg)?;
    let n = cfg.max_ngram_order;
    let mut sum = vec![0u64; 2 + 2 * n];
    for (h, rs) in hyps.iter().zip(refs) {
        for (acc, s) in sum.iter_mut().zip(segment_stats(h.as_ref(), rs, cfg)) {
            *acc += s;
        }
    }
    Ok(bleu_from_stats(
        &sum[2..2 + n],
        &sum[2 + n..],
        sum[0],
        sum[1],
        cfg,
    ))
}

/// Sentence BLEU of one hypothesis (sacrebleu `sentence_bleu`; pass [`BleuConfig::sentence`]
/// for its defaults).
pub fn sentence_bleu(hyp: &str, refs: &[String], cfg: &BleuConfig) -> Result<BleuScore> {
    corpus_bleu(&[hyp], &[refs.to_vec()], cfg)
}

/// sacrebleu's reproducibility signature, e.g.
/// `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1` (`nrefs:var` when examples have
/// different numbers of references).
pub fn bleu_signature(refs: &[Vec<String>], cfg: &BleuConfig) -> String {
    let nrefs = match refs.first() {
        Some(first) if refs.iter().all(|r| r.len() == first.len()) => first.len().to_string(),
        Some(_) => "var".to_string(),
        None => "0".to_string(),
    };
    format!(
        "nrefs:{nrefs}|case:{}|eff:{}|tok:{}|smooth:{}|version:{SACREBLEU_VERSION}",
        if cfg.lowercase { "lc" } else { "mixed" },
        if cfg.effective_order { "yes" } else { "no" },
        cfg.tokenizer.signature(),
        cfg.smoothing.signature(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_sentence_scores_100() {
        let refs = vec![vec!["the cat sat on the mat .".to_string()]];
        let s = corpus_bleu(&["the cat sat on the mat ."], &refs, &BleuConfig::default()).unwrap();
        assert!((s.score - 100.0).abs() < 1e-12);
        assert_eq!(s.bp, 1.0);
    }

    #[test]
    fn closest_ref_len_prefers_shorter_on_ties() {
        assert_eq!(closest_ref_len(5, &[7, 3, 6]), 6);
        assert_eq!(closest_ref_len(5, &[6, 4]), 4);
    }
}
