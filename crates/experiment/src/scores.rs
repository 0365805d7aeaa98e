//! Scoring a corpus metric by metric, so that one metric the reference leaves undefined on this
//! input (NIST with no 5-gram, ...) reports `null` and an error message instead of failing the
//! whole table.

use std::collections::BTreeMap;

use crosslore_eval::{score_corpus_with, Metric, RougeType, ScoreOptions};

/// The output keys of a metric (`rouge` has four).
pub fn metric_keys(m: Metric) -> Vec<String> {
    match m {
        Metric::Rouge => RougeType::DEFAULT.iter().map(|r| r.key()).collect(),
        other => vec![other.name().to_string()],
    }
}

/// Scores (`None` where the metric failed) and the failures' messages, by metric name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    pub values: BTreeMap<String, Option<f64>>,
    pub errors: BTreeMap<String, String>,
}

/// Score every metric separately (see the module docs). `refs[i]` are the references of
/// `hyps[i]`.
pub fn score_each<S: AsRef<str>>(
    metrics: &[Metric],
    hyps: &[S],
    refs: &[Vec<String>],
    opts: &ScoreOptions,
) -> Scores {
    let mut out = Scores::default();
    for &m in metrics {
        match score_corpus_with(&[m], hyps, refs, opts) {
            Ok(v) => out.values.extend(v.into_iter().map(|(k, v)| (k, Some(v)))),
            Err(e) => {
                for k in metric_keys(m) {
                    out.values.insert(k, None);
                }
                out.errors.insert(m.name().to_string(), e.to_string());
            }
        }
    }
    out
}
