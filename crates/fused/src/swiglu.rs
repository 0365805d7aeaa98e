//! SwiGLU activation `h = silu(g) u`, forward and backward (`sig = 1 / (1 + e^-g)`,
//! `dg = dh u sig (1 + g (1 - sig))`, `du = dh g sig`), computed in f32, stored in `T`.

use candle_core::Tensor;

use crate::check;
use crate::error::Result;

fn check_pair(op: &'static str, names: [&str; 2], a: &Tensor, b: &Tensor) -> Result<()> {
    check::float(op, names[0], a)?;
    check::float(op, names[1], b)?;
    check::shape(op, names[1], b, a.dims())?;
    check::dtype(op, names[1], b, a.dtype())?;
    check::same_device(op, &[a, b])
}

/// `g, u: [.., f]` -> `h` of the same shape.
pub fn swiglu_fwd(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    const OP: &str = "swiglu_fwd";
    check_pair(OP, ["g", "u"], g, u)?;
    #[cfg(feature = "cuda")]
    if g.device().is_cuda() {
        return crate::cuda::swiglu_fwd(g, u);
    }
    crate::reference::swiglu_fwd(g, u)
}

/// Returns `(dg, du)`.
pub fn swiglu_bwd(dh: &Tensor, g: &Tensor, u: &Tensor) -> Result<(Tensor, Tensor)> {
    const OP: &str = "swiglu_bwd";
    check_pair(OP, ["g", "u"], g, u)?;
    check_pair(OP, ["g", "dh"], g, dh)?;
    #[cfg(feature = "cuda")]
    if g.device().is_cuda() {
        return crate::cuda::swiglu_bwd(dh, g, u);
    }
    crate::reference::swiglu_bwd(dh, g, u)
}
