//! Thin QR of tall-skinny matrices (DESIGN.md §1.2 item 1).
use crate::Result;
use candle_core::Tensor;

/// Thin QR of `y: [m, k]`, `m >= k`: returns `Q: [m, k]` with orthonormal columns spanning
/// `range(y)` (completed arbitrarily but orthonormally when `y` is rank-deficient or zero).
/// CholeskyQR2; falls back to Householder QR when the Gram matrix is not positive definite.
pub fn thin_qr(y: &Tensor) -> Result<Tensor> {
    let _ = y;
    unimplemented!("linalg helper implements this")
}
