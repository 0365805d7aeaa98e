//! crosslore-eval: task metrics, each equal to a reference implementation (golden fixtures from
//! `scripts/fixtures/metrics_reference.py`, tests named `*reference*`).
//!
//! | metric | module | reference |
//! |---|---|---|
//! | BLEU (corpus, sentence, signature; 13a / intl tokenizers) | [`bleu`] | sacrebleu 2.5.1 |
//! | NIST (n = 5, whitespace tokens) | [`nist`] | nltk 3.9.1 `corpus_nist` |
//! | METEOR (exact + Porter stem, **no WordNet synonyms**) | [`meteor`] | nltk 3.9.1 `meteor_score` |
//! | ROUGE-1/2/L/Lsum (P, R, F; optional stemming) | [`rouge`] | rouge-score 0.1.2 |
//! | CIDEr-D (n = 4, sigma = 6) | [`cider`] | pycocoevalcap 1.2 (E2E challenge) |
//! | accuracy with answer extraction | [`accuracy`](mod@accuracy) | spec in the module docs |
//!
//! Corpus entry point: [`score_corpus`] with [`Metric`]s; `refs[i]` holds the references of
//! hypothesis `i` (one or more).

pub mod accuracy;
pub mod bleu;
pub mod bleu_tokenizer;
pub mod cider;
pub mod error;
pub mod meteor;
pub mod metric;
pub mod nist;
pub mod porter;
pub mod rouge;
pub mod text;

pub use accuracy::{accuracy, answers_match, choice_correct, extract_choice, final_number};
pub use bleu::{bleu_signature, corpus_bleu, sentence_bleu, BleuConfig, BleuScore, Smoothing};
pub use bleu_tokenizer::{tokenize_13a, tokenize_intl, BleuTokenizer};
pub use cider::{cider_sentences, corpus_cider, CiderParams};
pub use error::{EvalError, Result};
pub use meteor::{corpus_meteor, meteor_sentences, sentence_meteor, MeteorParams};
pub use metric::{
    score_corpus, score_corpus_with, transpose_reference_streams, Metric, ScoreOptions,
};
pub use nist::{corpus_nist, NIST_ORDER};
pub use porter::porter_stem;
pub use rouge::{corpus_rouge, rouge_sentences, rouge_tokenize, RougeScore, RougeType};

/// Checks shared by every corpus metric: same number of hypotheses and reference lists, at least
/// one example, at least one reference per example.
pub(crate) fn validate_corpus(n_hyps: usize, refs: &[Vec<String>]) -> Result<()> {
    if n_hyps != refs.len() {
        return Err(EvalError::LengthMismatch {
            hyps: n_hyps,
            refs: refs.len(),
        });
    }
    if n_hyps == 0 {
        return Err(EvalError::EmptyCorpus);
    }
    if let Some(index) = refs.iter().position(Vec::is_empty) {
        return Err(EvalError::NoReference { index });
    }
    Ok(())
}
