//! DoRA adapters (Liu et al. 2024) as peft's `DoraLinearLayer`:
//! `W' = m * (W + s B A) / ||W + s B A||_c`, with the per-output-row norm `||.||_c` detached
//! from the graph (DoRA paper Sec. 4.3; peft does the same). peft's forward, reproduced here:
//! `y = W x + (m/n - 1) * W x' + (m/n) * s * B A x'`, `x' = dropout(x)`, `n = ||W + s B A||_c`.

use candle_core::{DType, Device, Tensor, D};

use crate::weight::Weight;
use crosslore_linalg::Rng;

use crate::error::Result;
use crate::lora::{AdapterConfig, Lora};

#[derive(Debug, Clone)]
pub struct Dora {
    pub lora: Lora,
    /// `[out]`, f32: initialised to `||W||_c` (B = 0 at init).
    pub magnitude: Weight,
}

impl Dora {
    pub fn init(w: &Tensor, cfg: &AdapterConfig, rng: &mut Rng, device: &Device) -> Result<Self> {
        let (n_out, n_in) = w.dims2()?;
        let lora = Lora::init(n_in, n_out, cfg, rng, device)?;
        let m = Self::weight_norm(w, &lora)?;
        Ok(Dora {
            lora,
            magnitude: Weight::trainable(&m)?,
        })
    }

    /// `||W + s B A||` over the input dimension (one norm per output row), f32, detached.
    pub fn weight_norm(w: &Tensor, lora: &Lora) -> Result<Tensor> {
        let full = (w.to_dtype(DType::F32)? + lora.delta_weight()?.detach())?;
        Ok(full.sqr()?.sum(D::Minus1)?.sqrt()?.detach()) // [out]
    }

    /// The DoRA term added to `W x`. `base_out = W x'` in the model dtype; `x_drop = x'`.
    /// Returns f32 `[.., out]`.
    pub fn forward(&self, w: &Tensor, x_drop: &Tensor, base_out: &Tensor) -> Result<Tensor> {
        let n = Self::weight_norm(w, &self.lora)?;
        let scale = self.magnitude.tensor().div(&n)?; // [out]
        let lora_out = self.lora.forward(x_drop)?; // s * B A x', [.., out]
        Self::combine(&scale, base_out, &lora_out)
    }

    /// `(scale - 1) * W x' + scale * s B A x'` in f32 for `scale = m / n` `[out]`,
    /// `base_out = W x'` (model dtype) and `lora_out = s B A x'` (f32), both `[.., out]`.
    pub fn combine(scale: &Tensor, base_out: &Tensor, lora_out: &Tensor) -> Result<Tensor> {
        let base = base_out.to_dtype(DType::F32)?;
        let a = base.broadcast_mul(&(scale - 1.0)?)?;
        Ok((a + lora_out.broadcast_mul(scale)?)?)
    }

    /// Dense merged weight `(m / n) * (W + s B A)` in `w`'s dtype (peft `merge`).
    pub fn merge(&self, w: &Tensor) -> Result<Tensor> {
        let n = Self::weight_norm(w, &self.lora)?;
        let scale = self.magnitude.tensor().div(&n)?.unsqueeze(1)?; // [out, 1]
        let full = (w.to_dtype(DType::F32)? + self.lora.delta_weight()?)?;
        Ok(full.broadcast_mul(&scale)?.to_dtype(w.dtype())?)
    }
}
