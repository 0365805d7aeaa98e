//! Rotary position embedding (transformers' `rotate_half` convention) fused with the head
//! transpose, forward and backward.
//!
//! Forward: `x: [b, s, n, d]` (a linear layer's output viewed per head) -> `y: [b, n, s, d]`,
//! `y = x cos + rotate_half(x) sin`, `rotate_half([x1, x2]) = [-x2, x1]`. Backward:
//! `dy: [b, n, s, d]` -> `dx: [b, s, n, d]`, `dx = dy cos + R^T(dy sin)`, `R^T([z1, z2]) = [z2, -z1]`.
//! `cos`, `sin`: `[s, d]` in `T` (the model's tables, halves duplicated).

use candle_core::Tensor;

use crate::check;
use crate::error::Result;

fn check_tables(
    op: &'static str,
    x: &Tensor,
    s: usize,
    d: usize,
    cos: &Tensor,
    sin: &Tensor,
) -> Result<()> {
    check::float(op, "x", x)?;
    if !d.is_multiple_of(2) {
        return Err(crate::error::invalid(
            op,
            format!("head_dim {d} must be even"),
        ));
    }
    for (name, t) in [("cos", cos), ("sin", sin)] {
        check::shape(op, name, t, &[s, d])?;
        check::dtype(op, name, t, x.dtype())?;
        check::contiguous(op, name, t)?;
    }
    check::same_device(op, &[x, cos, sin])
}

/// `x: [b, s, n, d]` -> `[b, n, s, d]`.
pub fn rope_fwd(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    const OP: &str = "rope_fwd";
    let [_, s, _, d] = check::dims::<4>(OP, "x", x)?;
    check_tables(OP, x, s, d, cos, sin)?;
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return crate::cuda::rope_fwd(x, cos, sin);
    }
    crate::reference::rope_fwd(x, cos, sin)
}

/// `dy: [b, n, s, d]` -> `[b, s, n, d]`.
pub fn rope_bwd(dy: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    const OP: &str = "rope_bwd";
    let [_, _, s, d] = check::dims::<4>(OP, "dy", dy)?;
    check_tables(OP, dy, s, d, cos, sin)?;
    #[cfg(feature = "cuda")]
    if dy.device().is_cuda() {
        return crate::cuda::rope_bwd(dy, cos, sin);
    }
    crate::reference::rope_bwd(dy, cos, sin)
}
