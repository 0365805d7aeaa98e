//! Shared helpers of the crosslore-linalg integration tests.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use crosslore_linalg::Rng;

/// f32 unit roundoff (2^-24).
pub const U_F32: f64 = 5.960_464_5e-8;

pub fn gaussian(rng: &mut Rng, m: usize, n: usize) -> Tensor {
    Tensor::from_vec(rng.normal_vec(m * n), (m, n), &Device::Cpu).unwrap()
}

/// `G1 diag(s) G2^T` with Gaussian `G1: [m, k]`, `G2: [n, k]` scaled by `1/sqrt(m)`, `1/sqrt(n)`:
/// nearly orthonormal columns, so the spectrum is close to `s` (exactly rank `k`).
pub fn with_spectrum(rng: &mut Rng, m: usize, n: usize, s: &[f32]) -> Tensor {
    let k = s.len();
    let g1 = (gaussian(rng, m, k) / (m as f64).sqrt()).unwrap();
    let g2 = (gaussian(rng, n, k) / (n as f64).sqrt()).unwrap();
    let d = Tensor::from_vec(s.to_vec(), (1, k), &Device::Cpu).unwrap();
    g1.broadcast_mul(&d)
        .unwrap()
        .matmul(&g2.t().unwrap())
        .unwrap()
}

/// Power-law spectrum `(1 + i)^-alpha`, `i < k`.
pub fn power_law(k: usize, alpha: f32) -> Vec<f32> {
    (0..k).map(|i| (1.0 + i as f32).powf(-alpha)).collect()
}

pub fn to_rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

/// Max |Q^T Q - I| entry.
pub fn orth_error(q: &Tensor) -> f64 {
    let g = to_rows(&q.t().unwrap().matmul(q).unwrap());
    let mut e = 0f64;
    for (i, row) in g.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            let want = if i == j { 1.0 } else { 0.0 };
            e = e.max((x as f64 - want).abs());
        }
    }
    e
}

pub fn has_nan_or_inf(t: &Tensor) -> bool {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .any(|x| !x.is_finite())
}

pub fn frob(t: &Tensor) -> f64 {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

/// `||Y - Q Q^T Y||_F / ||Y||_F` (0 for zero Y): how much of range(Y) lies outside range(Q).
pub fn range_defect(y: &Tensor, q: &Tensor) -> f64 {
    let ny = frob(y);
    if ny == 0.0 {
        return 0.0;
    }
    let d = (y - q.matmul(&q.t().unwrap().matmul(y).unwrap()).unwrap()).unwrap();
    frob(&d) / ny
}

/// One matrix of `tests/fixtures/linalg_reference.json`.
#[derive(serde::Deserialize)]
pub struct RefMatrix {
    pub name: String,
    pub shape: [usize; 2],
    pub data: Vec<f64>,
    pub singular_values: Vec<f64>,
    pub ranks: Vec<usize>,
    pub residuals: Vec<f64>,
    pub projectors: std::collections::BTreeMap<String, RefProjector>,
}

#[derive(serde::Deserialize)]
pub struct RefProjector {
    pub left: Vec<f64>,
    pub right: Vec<f64>,
}

#[derive(serde::Deserialize)]
struct RefFile {
    matrices: Vec<RefMatrix>,
}

pub fn reference_matrices() -> Vec<RefMatrix> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/linalg_reference.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let f: RefFile = serde_json::from_str(&text).unwrap();
    assert!(f.matrices.len() >= 6);
    f.matrices
}

impl RefMatrix {
    pub fn tensor(&self) -> Tensor {
        let v: Vec<f32> = self.data.iter().map(|&x| x as f32).collect();
        Tensor::from_vec(v, (self.shape[0], self.shape[1]), &Device::Cpu).unwrap()
    }
}
