//! Differentiable building blocks made only of candle ops that have a backward.
//!
//! candle's fused `candle_nn::ops::{rms_norm, softmax_last_dim}` and `rotary_emb::rope` have no
//! backward (DESIGN.md §3): in a training graph they silently cut the gradient. Nothing here
//! uses them. Softmax subtracts a *detached* row max (mathematically the gradient through the
//! max is zero; differentiating it anyway is wasted work and, with ties, wrong).

use candle_core::{DType, Device, Tensor, D};
use crosslore_linalg::Rng;

use crate::error::Result;

/// RMSNorm as transformers' `LlamaRMSNorm`: normalise in f32, cast back, then scale.
/// `x`: `[.., hidden]`, `weight`: `[hidden]`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let var = xf.sqr()?.mean_keepdim(D::Minus1)?; // [.., 1]
    let y = xf.broadcast_mul(&(var + eps)?.sqrt()?.recip()?)?;
    Ok(y.to_dtype(dtype)?.broadcast_mul(weight)?)
}

/// Softmax over the last dimension with a detached max.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// `log(sum(exp(x)))` over the last dimension (kept), with a detached max.
pub fn logsumexp_keepdim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let s = x
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?;
    Ok(s.broadcast_add(&max)?)
}

/// `y = x W^T` for a PyTorch-layout weight `w: [out, in]`; `x: [.., in]` -> `[.., out]`.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n_in = *dims.last().unwrap_or(&0);
    let rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
    let x2 = x.reshape((rows, n_in))?; // [rows, in]
    let y = x2.matmul(&w.t()?)?; // [rows, out]
    let mut out_dims = dims;
    if let Some(last) = out_dims.last_mut() {
        *last = w.dim(0)?;
    }
    Ok(y.reshape(out_dims)?)
}

/// GQA: `[b, n_kv, s, d]` -> `[b, n_kv * n_rep, s, d]`, each KV head repeated `n_rep` times in
/// place (head `i` of the queries uses KV head `i / n_rep`, as transformers' `repeat_kv`).
pub fn repeat_kv(x: &Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, n_kv, s, d) = x.dims4()?;
    let y = x
        .unsqueeze(2)? // [b, n_kv, 1, s, d]
        .broadcast_as((b, n_kv, n_rep, s, d))?
        .contiguous()?
        .reshape((b, n_kv * n_rep, s, d))?; // [b, n_heads, s, d]
    Ok(y)
}

/// Inverted-dropout mask (`0` or `1/(1-p)`), drawn on the host from a seeded stream so that a
/// recomputed forward (activation checkpointing) and a resumed run draw the same mask.
pub fn dropout_mask(
    shape: &[usize],
    p: f64,
    rng: &mut Rng,
    device: &Device,
    dtype: DType,
) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let keep = (1.0 / (1.0 - p)) as f32;
    let v: Vec<f32> = (0..n)
        .map(|_| if rng.next_f64() < p { 0.0 } else { keep })
        .collect();
    Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
}
