//! The softmax of causal self-attention, forward and backward; the products around it
//! (`Q K^T`, `P V` and their gradients) are cuBLAS matmuls in the block.
//!
//! GQA without copies: the `g = n_heads / n_kv_heads` query heads sharing a key/value head are
//! adjacent, so `q: [b, n_heads, s, d]` is viewed as `[b, n_kv, g * s, d]` and one batched
//! product per key/value head gives the scores `[b, n_kv, g * s, s]`. Row `r` of that matrix is
//! query position `r % s`; it may attend keys `j <= r % s` (and, with a key mask, only keys whose
//! mask is 1). Forward: `P = softmax(scale * S)` over the allowed keys, in f32, stored in `T`;
//! a row with no allowed key is all zero. Backward: `dS = scale * P (dP - rowsum(dP P))`.

use candle_core::{DType, Tensor};

use crate::check;
use crate::error::{invalid, Result};

/// Which keys a query may attend besides causality.
#[derive(Debug, Clone, Copy)]
pub enum AttnMask<'a> {
    /// Every earlier key (no padding, or right padding whose positions are not trained on).
    Causal,
    /// `[b, s]` f32 of 0/1 (1 = real token), the batch's attention mask.
    CausalKeys(&'a Tensor),
}

fn check_scores(op: &'static str, name: &str, t: &Tensor) -> Result<[usize; 4]> {
    let [b, h, rows, s] = check::dims::<4>(op, name, t)?;
    check::float(op, name, t)?;
    if s == 0 || rows % s != 0 {
        return Err(invalid(
            op,
            format!("`{name}` rows ({rows}) must be a multiple of the key length ({s})"),
        ));
    }
    Ok([b, h, rows, s])
}

/// `scores: [b, n_kv, g * s, s]` -> `P` of the same shape and dtype.
pub fn causal_softmax_fwd(scores: &Tensor, mask: AttnMask, scale: f32) -> Result<Tensor> {
    const OP: &str = "causal_softmax_fwd";
    let [b, _, _, s] = check_scores(OP, "scores", scores)?;
    if let AttnMask::CausalKeys(m) = mask {
        check::shape(OP, "key mask", m, &[b, s])?;
        check::dtype(OP, "key mask", m, DType::F32)?;
        check::contiguous(OP, "key mask", m)?;
        check::same_device(OP, &[scores, m])?;
    }
    #[cfg(feature = "cuda")]
    if scores.device().is_cuda() {
        return crate::cuda::causal_softmax_fwd(scores, mask, scale);
    }
    crate::reference::causal_softmax_fwd(scores, mask, scale)
}

/// `dp, p: [b, n_kv, g * s, s]` -> `dS` (the gradient of the unscaled scores).
pub fn causal_softmax_bwd(dp: &Tensor, p: &Tensor, scale: f32) -> Result<Tensor> {
    const OP: &str = "causal_softmax_bwd";
    check_scores(OP, "p", p)?;
    check::float(OP, "dp", dp)?;
    check::shape(OP, "dp", dp, p.dims())?;
    check::dtype(OP, "dp", dp, p.dtype())?;
    check::same_device(OP, &[dp, p])?;
    #[cfg(feature = "cuda")]
    if p.device().is_cuda() {
        return crate::cuda::causal_softmax_bwd(dp, p, scale);
    }
    crate::reference::causal_softmax_bwd(dp, p, scale)
}
