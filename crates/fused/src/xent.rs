//! Cross-entropy over the vocabulary fused with its gradient: one pass gives the summed loss
//! and `dlogits`, so the caller can process the logits in row chunks and never hold more than
//! one chunk (`[rows, vocab]`) in memory.
//!
//! For a row with target `t != IGNORE`: `loss = logsumexp(z) - z_t` (f32) and
//! `dz = grad_scale * (softmax(z) - onehot(t))`; an ignored row adds 0 and gets `dz = 0`.

use candle_core::{DType, Tensor};

use crate::check;
use crate::error::Result;

/// Target of a row that is not trained on.
pub const IGNORE: u32 = u32::MAX;

/// Output of [`cross_entropy_fwd_bwd`].
#[derive(Debug, Clone)]
pub struct XentOut {
    /// Sum of the row losses, f32, shape `[]`.
    pub loss_sum: Tensor,
    /// `[rows, vocab]`, `T`.
    pub dlogits: Tensor,
}

/// `logits: [rows, vocab]` (`T`), `targets: [rows]` u32 (`< vocab` or [`IGNORE`]; the CUDA path
/// does not check this on the device, the caller validates labels once per batch: an
/// out-of-range target is treated as ignored on every path).
pub fn cross_entropy_fwd_bwd(
    logits: &Tensor,
    targets: &Tensor,
    grad_scale: f32,
) -> Result<XentOut> {
    const OP: &str = "cross_entropy_fwd_bwd";
    let [rows, _] = check::dims::<2>(OP, "logits", logits)?;
    check::float(OP, "logits", logits)?;
    check::shape(OP, "targets", targets, &[rows])?;
    check::dtype(OP, "targets", targets, DType::U32)?;
    check::contiguous(OP, "targets", targets)?;
    check::same_device(OP, &[logits, targets])?;
    #[cfg(feature = "cuda")]
    if logits.device().is_cuda() {
        return crate::cuda::cross_entropy_fwd_bwd(logits, targets, grad_scale);
    }
    crate::reference::cross_entropy_fwd_bwd(logits, targets, grad_scale)
}
