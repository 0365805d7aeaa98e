//! Shared helpers of the model tests: fixture paths and tolerance checks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

pub fn reference(case: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(case).join("reference.safetensors"), &Device::Cpu)
        .expect("fixture reference.safetensors (run scripts/fixtures/model_reference.py)")
}

/// `max |got - want| / max |want|`: error relative to the tensor's scale (element-wise relative
/// error is meaningless for entries near zero).
pub fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shape mismatch");
    let g = got.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let w = want.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let diff = (&g - &w)
        .unwrap()
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = w.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

/// Reference input ids (i64 in the fixture) as u32.
pub fn ids(r: &HashMap<String, Tensor>) -> Tensor {
    r["input_ids"].to_dtype(DType::U32).unwrap()
}

/// The adapter configuration of an adapter fixture (`adapter.json`: peft's rank, alpha, targets,
/// DoRA flag; dropout 0) and the name of its base-model fixture.
#[allow(dead_code)]
pub fn adapter_case(case: &str) -> (crosslore_model::AdapterConfig, String) {
    use crosslore_model::{AdapterConfig, AdapterKind, TargetModules};
    let text = std::fs::read_to_string(fixture(case).join("adapter.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    let targets: Vec<&str> = match &meta["targets"] {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_str().unwrap()).collect(),
        _ => panic!("targets"),
    };
    let cfg = AdapterConfig {
        kind: if meta["use_dora"].as_bool().unwrap() {
            AdapterKind::Dora
        } else {
            AdapterKind::Lora
        },
        rank: meta["rank"].as_u64().unwrap() as usize,
        alpha: meta["alpha"].as_f64().unwrap(),
        dropout: 0.0,
        targets: TargetModules::parse(&targets).unwrap(),
        init_seed: 0,
    };
    (cfg, meta["base"].as_str().unwrap().to_string())
}
