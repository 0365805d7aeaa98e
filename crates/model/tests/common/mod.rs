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
