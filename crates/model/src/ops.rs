//! Differentiable building blocks made only of candle ops that have a backward.
//!
//! candle's fused `candle_nn::ops::{rms_norm, softmax_last_dim}` and `rotary_emb::rope` have no
//! backward (DESIGN.md §3): in a training graph they silently cut the gradient. Nothing here
//! uses them. Softmax subtracts a *detached* row max (mathematically the gradient through the
//! max is zero; differentiating it anyway is wasted work and, with ties, wrong).

use candle_core::op::BackpropOp;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Storage, Tensor, D};
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
///
/// Three cases, same values:
/// - trainable `w`: computed as `(W x^T)^T`, so that candle's matmul backward yields the weight
///   gradient as `g^T x`, already `[out, in]` and contiguous (the textbook `x W^T` makes candle
///   add a transposed `[in, out]` gradient into a zero `[out, in]` buffer: a strided pass over a
///   weight-sized tensor, measured 1.6x slower for SmolLM2's `lm_head` backward on CPU);
/// - frozen `w` under a tracked `x` (LoRA/DoRA base weights): [`FrozenLinear`], whose backward
///   returns only the input gradient. candle's matmul backward always computes both operands'
///   gradients, which would allocate a weight-sized gradient per frozen matrix per step;
/// - nothing tracked (inference): a plain matmul.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n_in = *dims.last().unwrap_or(&0);
    let rows: usize = dims[..dims.len().saturating_sub(1)].iter().product();
    let x2 = x.reshape((rows, n_in))?; // [rows, in]
    let y = if w.track_op() {
        w.matmul(&x2.t()?)?.t()? // [out, rows] -> [rows, out] (strided view)
    } else if x2.track_op() {
        let x2 = if x2.is_contiguous() && x2.layout().start_offset() == 0 {
            x2
        } else {
            x2.copy()?
        };
        x2.apply_op1(FrozenLinear { w: w.detach() })?
    } else {
        x2.matmul(&w.t()?)?
    };
    let mut out_dims = dims;
    if let Some(last) = out_dims.last_mut() {
        *last = w.dim(0)?;
    }
    Ok(y.reshape(out_dims)?) // [.., out]; copies a strided view into a contiguous tensor
}

/// `x W^T` with a constant `W` (captured, never differentiated): backward gives `g W` for `x`
/// and nothing for `W`. Forward wraps the input storage in a tensor and uses candle's matmul.
#[derive(Debug, Clone)]
pub struct FrozenLinear {
    /// `[out, in]`, detached.
    pub w: Tensor,
}

impl FrozenLinear {
    fn compute(&self, storage: Storage, layout: &Layout) -> candle_core::Result<Tensor> {
        // The caller guarantees a contiguous input starting at offset 0.
        let x = Tensor::from_storage(storage, layout.shape().clone(), BackpropOp::none(), false);
        x.matmul(&self.w.t()?) // [rows, out], contiguous
    }
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = self.compute(Storage::Cpu(storage.clone()), layout)?;
        let (st, _) = y.storage_and_layout();
        match &*st {
            Storage::Cpu(c) => Ok((c.clone(), y.shape().clone())),
            _ => Err(candle_core::Error::Msg(
                "frozen-linear: expected CPU storage".into(),
            )),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let y = self.compute(Storage::Cuda(storage.try_clone(layout)?), layout)?;
        let (st, l) = y.storage_and_layout();
        match &*st {
            Storage::Cuda(c) => Ok((c.try_clone(l)?, y.shape().clone())),
            _ => Err(candle_core::Error::Msg(
                "frozen-linear: expected CUDA storage".into(),
            )),
        }
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&self.w)?)) // [rows, out] @ [out, in] = [rows, in]
    }
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
