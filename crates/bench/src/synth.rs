//! Synthetic gradients with a realistic decaying spectrum, generated on the target device:
//! `G = U diag(s) V^T + sigma N`, `U: [m, k]`, `V: [n, k]` orthonormal (thin QR of Gaussian
//! matrices), `s_i = 1 / i` (`i = 1..=k`, `k = 256` components), `N` standard Gaussian and
//! `sigma = noise * ||s||_2 / sqrt(m n)`, i.e. the noise carries a fraction `noise` of the
//! signal's Frobenius norm (default 1 %).
use candle_core::{DType, Device, Tensor};
use crosslore_linalg::qr::thin_qr;

use crate::Result;

/// Spectrum parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spectrum {
    /// Number of signal components `k` (capped at `min(m, n)`).
    pub components: usize,
    /// Noise Frobenius norm as a fraction of the signal's.
    pub noise: f64,
}

impl Default for Spectrum {
    fn default() -> Self {
        Self {
            components: 256,
            noise: 0.01,
        }
    }
}

/// Orthonormal factors of one synthetic gradient (kept to derive a drifted "previous" gradient).
pub struct Factors {
    pub u: Tensor,
    pub v: Tensor,
    pub s: Tensor,
    pub sigma: f64,
}

/// Random orthonormal `[rows, k]` on `dev`.
pub fn orthonormal(rows: usize, k: usize, dev: &Device) -> Result<Tensor> {
    Ok(thin_qr(&Tensor::randn(0f32, 1f32, (rows, k), dev)?)?)
}

/// Factors of an `[m, n]` gradient with spectrum `sp`.
pub fn factors(m: usize, n: usize, sp: &Spectrum, dev: &Device) -> Result<Factors> {
    let k = sp.components.min(m).min(n).max(1);
    let s: Vec<f32> = (1..=k).map(|i| 1.0 / i as f32).collect();
    let norm_s = s.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    Ok(Factors {
        u: orthonormal(m, k, dev)?,
        v: orthonormal(n, k, dev)?,
        s: Tensor::from_vec(s, (1, k), dev)?,
        sigma: sp.noise * norm_s / ((m * n) as f64).sqrt(),
    })
}

/// `U diag(s) V^T + sigma N` as f32 `[m, n]`.
pub fn gradient(f: &Factors) -> Result<Tensor> {
    let (m, _) = f.u.dims2()?;
    let (n, _) = f.v.dims2()?;
    let low = f.u.broadcast_mul(&f.s)?.matmul(&f.v.t()?)?; // [m, k] x [k, n]
    let noise = Tensor::randn(0f32, f.sigma as f32, (m, n), f.u.device())?;
    Ok((low + noise)?)
}

/// The factors of an earlier gradient whose singular subspaces drifted by `drift`:
/// `U' = qr(U + drift * N / sqrt(m))` (and likewise `V'`), same spectrum and noise level.
pub fn drifted(f: &Factors, drift: f64) -> Result<Factors> {
    let perturb = |x: &Tensor| -> Result<Tensor> {
        let (rows, k) = x.dims2()?;
        let n = Tensor::randn(
            0f32,
            (drift / (rows as f64).sqrt()) as f32,
            (rows, k),
            x.device(),
        )?;
        Ok(thin_qr(&(x + n)?)?)
    };
    Ok(Factors {
        u: perturb(&f.u)?,
        v: perturb(&f.v)?,
        s: f.s.clone(),
        sigma: f.sigma,
    })
}

/// A bf16 copy (for optimizer-step benchmarks with bf16 gradients).
pub fn bf16(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::BF16)?)
}
