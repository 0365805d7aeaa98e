//! Linear algebra for gradient projection (DESIGN.md §1; paper Sec. 4.1 and Alg. 1, line 5).
//!
//! All entry points take and return 2-D f32 candle [`Tensor`]s on any device; large products run
//! on the tensor's device (cuBLAS on CUDA), small (r+p)^2 factorizations run on the host with faer.
//!
//! - [`qr`]: thin QR of tall-skinny matrices (CholeskyQR2, Householder fallback).
//! - [`rsi`]: randomized subspace iteration (Halko, Martinsson, Tropp 2011, Alg. 4.4).
//! - [`svd`]: exact thin SVD and the exact top-r subspace (GaLore's projector).
//! - [`rng`]: seeded, serializable random numbers.
//! - [`topk`]: exact top-k of `|x|` by flat index (the sparse residual's index set, paper
//!   Sec. 4.2.2), on the tensor's device.
//!
//! Dtype policy: the working precision is f32 (galore-torch calls `.float()` before its SVD).
//! f16/bf16/f64 inputs are converted to f32 and results are f32; integer dtypes are rejected.
//! NaN/Inf inputs, rank 0, rank > min(m, n) and non-2-D inputs are typed [`LinalgError`]s.
//! Zero and rank-deficient inputs give orthonormal projectors (completed deterministically).
//!
//! Devices: RSI, CholeskyQR2 and the cross-head Gram subspace are candle ops plus host copies of
//! `[k, k]` factors, so the same code runs on CUDA. The exact SVD and the Householder fallback run
//! on the host with faer for CPU tensors and through cuSOLVER for CUDA tensors (`cuda` feature,
//! `cuda` module).
//!
//! Conventions: a matrix `A` is `[m, n]`; a projector for [`Side::Right`] is `P: [n, r]` with
//! orthonormal columns (`R = A P`), for [`Side::Left`] `P: [m, r]` (`R = P^T A`).

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod error;
mod host;
#[cfg(feature = "cuda")]
pub mod kernels;
pub mod qr;
pub mod rng;
pub mod rsi;
#[cfg(feature = "cuda")]
mod rsi_cuda;
pub mod svd;
pub mod topk;
#[cfg(feature = "cuda")]
mod topk_cuda;
mod validate;

pub use error::{LinalgError, Result};
pub use rng::Rng;

use serde::{Deserialize, Serialize};

/// Which side of `A` (`[m, n]`) a projector spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// `P: [m, r]`, top-r left singular subspace, projected `R = P^T A: [r, n]`.
    Left,
    /// `P: [n, r]`, top-r right singular subspace, projected `R = A P: [m, r]`.
    Right,
}
