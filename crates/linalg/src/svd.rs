//! Exact thin SVD (GaLore's projector) and subspace quality.
use crate::{Result, Side};
use candle_core::Tensor;

/// Exact top-`rank` singular subspace of `a: [m, n]` on `side` (as galore-torch's
/// `torch.linalg.svd(full_matrices=False)`: `U[:, :r]` for Left, `Vh[:r]^T` for Right).
pub fn svd_subspace(a: &Tensor, rank: usize, side: Side) -> Result<Tensor> {
    let _ = (a, rank, side);
    unimplemented!("linalg helper implements this")
}

/// Relative residual `||A - P P^T A||_F / ||A||_F` (Right: `||A - A P P^T||_F / ||A||_F`);
/// 0 for a zero `A`. The paper's Fig. 2b quantity.
pub fn subspace_residual(a: &Tensor, p: &Tensor, side: Side) -> Result<f32> {
    let _ = (a, p, side);
    unimplemented!("linalg helper implements this")
}
