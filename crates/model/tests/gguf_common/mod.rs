//! Shared helpers of the `gguf_*` integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

/// `crates/model/tests/fixtures/gguf/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

pub fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

pub fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer") as usize)
        .collect()
}

pub fn u32s(v: &Value) -> Vec<u32> {
    usizes(v).into_iter().map(|x| x as u32).collect()
}

/// Relative difference `|a - b| / max(|b|, floor)`.
pub fn rel(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / b.abs().max(floor)
}
