//! Scoring a corpus metric by metric, so that one metric the reference leaves undefined on this
//! input (NIST with no 5-gram, ...) reports `null` and an error message instead of failing the
//! whole table. The scoring itself is in [`crosslore_experiment::scores`] (shared with experiment
//! grids); this module adds the JSON view.

use std::collections::BTreeMap;

pub use crosslore_experiment::scores::score_each;

/// The scores as a JSON object (`null` for failed metrics).
pub fn to_json(values: &BTreeMap<String, Option<f64>>) -> serde_json::Value {
    serde_json::Value::Object(
        values
            .iter()
            .map(|(k, v)| (k.clone(), v.map_or(serde_json::Value::Null, |x| x.into())))
            .collect(),
    )
}
