//! The [`Metric`] enum and the corpus entry point used by `crosslore score` and `crosslore eval`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::bleu::{corpus_bleu, BleuConfig};
use crate::cider::{corpus_cider, CiderParams};
use crate::error::{EvalError, Result};
use crate::meteor::{corpus_meteor, MeteorParams};
use crate::nist::{corpus_nist, NIST_ORDER};
use crate::rouge::{corpus_rouge, RougeType};
use crate::validate_corpus;

/// A corpus metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// sacrebleu corpus BLEU (0-100), key `bleu`.
    Bleu,
    /// nltk NIST n = 5, key `nist`.
    Nist,
    /// nltk METEOR without synonyms (0-1), key `meteor`.
    Meteor,
    /// rouge-score F-measures (0-1), keys `rouge1`, `rouge2`, `rougeL`, `rougeLsum`.
    Rouge,
    /// pycocoevalcap CIDEr-D, key `cider`.
    Cider,
    /// Answer accuracy (0-1) against the first reference of each example, key `accuracy`.
    Accuracy,
}

impl Metric {
    /// Every metric, in output order.
    pub const ALL: [Metric; 6] = [
        Metric::Bleu,
        Metric::Nist,
        Metric::Meteor,
        Metric::Rouge,
        Metric::Cider,
        Metric::Accuracy,
    ];

    /// The name used on the command line and as the output key.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Bleu => "bleu",
            Metric::Nist => "nist",
            Metric::Meteor => "meteor",
            Metric::Rouge => "rouge",
            Metric::Cider => "cider",
            Metric::Accuracy => "accuracy",
        }
    }

    /// Parse a comma-separated list such as `bleu,nist,rouge`.
    pub fn parse_list(s: &str) -> Result<Vec<Metric>> {
        s.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| EvalError::UnknownMetric {
                name: s.to_string(),
            })
    }
}

/// Options of [`score_corpus_with`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreOptions {
    pub bleu: BleuConfig,
    /// Porter-stem ROUGE tokens (rouge-score `use_stemmer`; default true, as most papers report).
    pub rouge_use_stemmer: bool,
    pub meteor: MeteorParams,
    pub cider: CiderParams,
    pub nist_order: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            bleu: BleuConfig::default(),
            rouge_use_stemmer: true,
            meteor: MeteorParams::default(),
            cider: CiderParams::default(),
            nist_order: NIST_ORDER,
        }
    }
}

/// [`score_corpus_with`] with default options.
pub fn score_corpus<S: AsRef<str>>(
    metrics: &[Metric],
    hyps: &[S],
    refs: &[Vec<String>],
) -> Result<BTreeMap<String, f64>> {
    score_corpus_with(metrics, hyps, refs, &ScoreOptions::default())
}

/// Score a corpus with every requested metric; `refs[i]` lists the references of `hyps[i]`.
/// Errors: mismatched counts, empty corpus, an example without reference, or a metric that its
/// reference implementation leaves undefined on this input (e.g. NIST when no hypothesis has 5
/// tokens).
pub fn score_corpus_with<S: AsRef<str>>(
    metrics: &[Metric],
    hyps: &[S],
    refs: &[Vec<String>],
    opts: &ScoreOptions,
) -> Result<BTreeMap<String, f64>> {
    validate_corpus(hyps.len(), refs)?;
    let mut out = BTreeMap::new();
    for &m in metrics {
        match m {
            Metric::Bleu => {
                out.insert("bleu".into(), corpus_bleu(hyps, refs, &opts.bleu)?.score);
            }
            Metric::Nist => {
                out.insert("nist".into(), corpus_nist(hyps, refs, opts.nist_order)?);
            }
            Metric::Meteor => {
                out.insert("meteor".into(), corpus_meteor(hyps, refs, &opts.meteor)?);
            }
            Metric::Rouge => {
                for kind in RougeType::DEFAULT {
                    let s = corpus_rouge(hyps, refs, kind, opts.rouge_use_stemmer)?;
                    out.insert(kind.key(), s.fmeasure);
                }
            }
            Metric::Cider => {
                out.insert("cider".into(), corpus_cider(hyps, refs, &opts.cider)?);
            }
            Metric::Accuracy => {
                let golds: Vec<&str> = refs.iter().map(|r| r[0].as_str()).collect();
                out.insert("accuracy".into(), crate::accuracy::accuracy(hyps, &golds)?);
            }
        }
    }
    Ok(out)
}

/// Turn reference streams (one `Vec` per reference file, one line per example) into per-example
/// reference lists, checking that every stream has `n_hyps` lines.
pub fn transpose_reference_streams(
    streams: &[Vec<String>],
    n_hyps: usize,
) -> Result<Vec<Vec<String>>> {
    if streams.is_empty() {
        return Err(EvalError::NoReference { index: 0 });
    }
    for (stream, s) in streams.iter().enumerate() {
        if s.len() != n_hyps {
            return Err(EvalError::StreamLength {
                stream,
                got: s.len(),
                expected: n_hyps,
            });
        }
    }
    Ok((0..n_hyps)
        .map(|i| streams.iter().map(|s| s[i].clone()).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_errors() {
        assert_eq!(
            Metric::parse_list("bleu, ROUGE,cider").unwrap(),
            vec![Metric::Bleu, Metric::Rouge, Metric::Cider]
        );
        assert!(matches!(
            Metric::parse_list("bleu,foo"),
            Err(EvalError::UnknownMetric { .. })
        ));
        let refs = vec![vec!["a".to_string()]];
        assert!(matches!(
            score_corpus(&[Metric::Bleu], &["a", "b"], &refs),
            Err(EvalError::LengthMismatch { hyps: 2, refs: 1 })
        ));
        assert!(matches!(
            score_corpus::<&str>(&[Metric::Bleu], &[], &[]),
            Err(EvalError::EmptyCorpus)
        ));
        assert!(matches!(
            score_corpus(&[Metric::Bleu], &["a"], &[vec![]]),
            Err(EvalError::NoReference { index: 0 })
        ));
        let t = transpose_reference_streams(
            &[vec!["x".into(), "y".into()], vec!["z".into(), "w".into()]],
            2,
        )
        .unwrap();
        assert_eq!(t, vec![vec!["x", "z"], vec!["y", "w"]]);
        assert!(matches!(
            transpose_reference_streams(&[vec!["x".into()]], 2),
            Err(EvalError::StreamLength { .. })
        ));
    }
}
