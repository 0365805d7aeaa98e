//! RMSNorm as transformers' `LlamaRMSNorm`, forward and hand-written backward.
//!
//! Forward: `rstd = 1 / sqrt(mean(x^2) + eps)` (f32), `n = x rstd` rounded to `T`, `y = n w` in
//! `T`. Backward (with `n` in f32): `dw = sum_rows(dy * round_T(n))`,
//! `dx = rstd * (dy w - n * mean(dy w n))`.

use candle_core::Tensor;

use crate::check;
use crate::error::Result;

/// Output of [`rms_norm_fwd`].
#[derive(Debug, Clone)]
pub struct RmsNormOut {
    /// `[rows, hidden]`, `T`.
    pub y: Tensor,
    /// `[rows]`, f32: saved for the backward.
    pub rstd: Tensor,
}

fn check_xw(op: &'static str, x: &Tensor, w: &Tensor) -> Result<[usize; 2]> {
    let [rows, h] = check::dims::<2>(op, "x", x)?;
    check::float(op, "x", x)?;
    check::shape(op, "w", w, &[h])?;
    check::dtype(op, "w", w, x.dtype())?;
    check::contiguous(op, "w", w)?;
    Ok([rows, h])
}

/// `x: [rows, hidden]`, `w: [hidden]` (both `T`).
pub fn rms_norm_fwd(x: &Tensor, w: &Tensor, eps: f32) -> Result<RmsNormOut> {
    const OP: &str = "rms_norm_fwd";
    check_xw(OP, x, w)?;
    check::same_device(OP, &[x, w])?;
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return crate::cuda::rms_norm_fwd(x, w, eps);
    }
    crate::reference::rms_norm_fwd(x, w, eps)
}

/// Returns `(dx [rows, hidden] T, dw [hidden] f32)`.
pub fn rms_norm_bwd(
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    rstd: &Tensor,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "rms_norm_bwd";
    let [rows, h] = check_xw(OP, x, w)?;
    check::shape(OP, "dy", dy, &[rows, h])?;
    check::dtype(OP, "dy", dy, x.dtype())?;
    check::contiguous(OP, "dy", dy)?;
    check::shape(OP, "rstd", rstd, &[rows])?;
    check::dtype(OP, "rstd", rstd, candle_core::DType::F32)?;
    check::same_device(OP, &[dy, x, w, rstd])?;
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return crate::cuda::rms_norm_bwd(dy, x, w, rstd);
    }
    crate::reference::rms_norm_bwd(dy, x, w, rstd)
}
