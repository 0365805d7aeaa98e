//! Fused CUDA paths of the optimizer steps (feature `cuda`; kernels in
//! `crosslore_linalg::kernels`). Each has the candle-op path as its CPU twin, and `crosslore-bench
//! gpu-check` compares the two on the same inputs.
use candle_core::{DType, Tensor, Var};

use crate::galore::Advanced;
use crate::residual::ResidualState;
use crate::Result;
use crosslore_linalg::kernels;

/// Whether `t` is a contiguous f32/bf16 tensor on CUDA (what the kernels take).
pub(crate) fn fusable(t: &Tensor) -> bool {
    t.is_contiguous() && fusable_dtype_device(t)
}

/// Whether `t` is an f32/bf16 tensor on CUDA (fusable once contiguous).
pub(crate) fn fusable_dtype_device(t: &Tensor) -> bool {
    t.device().is_cuda() && matches!(t.dtype(), DType::F32 | DType::BF16)
}

/// `NaN`/`Inf` test of a gradient on its device in one read of its own dtype (the candle path
/// converts to f32 and reduces `g - g`: three passes).
pub(crate) fn any_nonfinite(g: &Tensor) -> Result<Option<bool>> {
    if !fusable(g) {
        return Ok(None);
    }
    Ok(Some(kernels::any_nonfinite(g)?))
}

/// The low-rank commit of [`Advanced::commit`] on CUDA: `U = project_back(N)` (one GEMM into a
/// dense buffer of the weight's dtype), then ONE elementwise pass `W = (W - c U) d` on the weight
/// in its own dtype (`c = step_size * scale`, `d = 1 - lr * wd`), then the residual scatter at
/// `L` with coefficient `coef * d` (the CPU path applies it before the decay; equal up to
/// rounding).
/// Returns `false` (nothing done) when not applicable: not on CUDA, unprojected, or the weight
/// is not a contiguous f32/bf16 tensor.
pub(crate) fn commit_lowrank(
    var: &Var,
    adv: &Advanced,
    lr: f64,
    residual: Option<(&ResidualState, &Tensor, f64)>,
) -> Result<bool> {
    let w = var.as_tensor();
    let (Some(p), Some(s)) = (&adv.state.projector, &adv.state.projection) else {
        return Ok(false);
    };
    if !fusable(w) {
        return Ok(false);
    }
    // Dense update in the weight's dtype (bf16 products with f32 accumulation for a bf16
    // weight, as galore-torch; f32 for an f32 weight).
    let u = p.project_back_in(&adv.n, w.dtype())?.contiguous()?;
    if u.dims() != w.dims() {
        return Ok(false);
    }
    let wd = adv.state.weight_decay;
    let d = if wd > 0.0 { 1.0 - lr * wd } else { 1.0 };
    kernels::lowrank_update(w, &u, (adv.step_size * s.scale) as f32, d as f32)?;
    if let Some((res, delta, coef)) = residual {
        res.apply(w, delta, coef * d)?;
    }
    Ok(true)
}
