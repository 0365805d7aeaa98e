//! Thin QR of tall-skinny matrices (DESIGN.md §1.2 item 1; HMT 2011 Alg. 4.4 needs one after
//! every product with `A`).
//!
//! [`thin_qr`] tries CholeskyQR2 first (Yamamoto et al. 2015): the Gram matrix `Y^T Y` (`[k, k]`)
//! is a device product, its Cholesky factor and the inverse of that triangular factor are computed
//! on the host in f64 (faer), and `Q = Y R^{-1}` is again a device product; done twice.
//! CholeskyQR2 is backward stable when `cond(Y) <~ u^{-1/2}` (u = f32 unit roundoff, ~4000).
//! It is declared failed (and [`householder_qr`] runs instead, on the host in f64) when
//! - a Cholesky factorization meets a non-positive pivot (rank-deficient or zero `Y`), or
//! - after the first pass `||Q1^T Q1 - I||_F > 0.5`, i.e. `Y` was too ill-conditioned for the
//!   second pass to be guaranteed to reach orthogonality at the level of f32 rounding, or
//! - a Gram matrix overflows f32 (the f64 Householder path has the range to handle it).
//!
//! The result always has orthonormal columns; for a rank-deficient or zero `Y` the columns beyond
//! `range(Y)` come from the Householder reflectors (deterministic, e.g. `e_j` for a zero `Y`).
use crate::host::{all_finite, f64_to_tensor, to_mat_f64};
use crate::{validate, LinalgError, Result};
use candle_core::Tensor;
use faer::Mat;

/// Largest `||Q1^T Q1 - I||_F` after the first CholeskyQR pass that still lets the second pass
/// run: `cond(Q1)^2 <= (1 + 0.5) / (1 - 0.5) = 3`, so the second Cholesky is well conditioned.
const MAX_FIRST_PASS_DEVIATION: f64 = 0.5;

/// Thin QR of `y: [m, k]`, `m >= k`: returns `Q: [m, k]` with orthonormal columns spanning
/// `range(y)` (completed arbitrarily but orthonormally when `y` is rank-deficient or zero).
/// CholeskyQR2; falls back to Householder QR when the Gram matrix is not positive definite.
pub fn thin_qr(y: &Tensor) -> Result<Tensor> {
    Ok(qr_with_r("thin_qr", y)?.0)
}

/// Householder thin QR (faer, host, f64), `Q: [m, k]` as f32 on `y`'s device. Deterministic;
/// always orthonormal, also for rank-deficient and zero `y`.
pub fn householder_qr(y: &Tensor) -> Result<Tensor> {
    let y = tall_f32("householder_qr", y)?;
    Ok(householder_parts("householder_qr", &y)?.0)
}

/// CholeskyQR2 alone: `Ok(Some(Q))` on success, `Ok(None)` when it fails (see the module docs);
/// errors for bad shapes and NaN/Inf input.
pub fn cholesky_qr2(y: &Tensor) -> Result<Option<Tensor>> {
    let y = tall_f32("cholesky_qr2", y)?;
    Ok(cholesky_qr2_parts("cholesky_qr2", &y)?.map(|(q, _)| q))
}

/// `Q` (device, f32) and `R` (host, f64, `[k, k]` upper triangular) with `y = Q R`.
pub(crate) fn qr_with_r(op: &'static str, y: &Tensor) -> Result<(Tensor, Mat<f64>)> {
    let y = tall_f32(op, y)?;
    match cholesky_qr2_parts(op, &y)? {
        Some(qr) => Ok(qr),
        None => householder_parts(op, &y),
    }
}

/// `y` as a 2-D f32 tensor with `m >= k >= 1`.
fn tall_f32(op: &'static str, y: &Tensor) -> Result<Tensor> {
    let y = validate::matrix_f32(op, y)?;
    let (m, k) = y.dims2()?;
    if k == 0 || m < k {
        return Err(LinalgError::Shape {
            op,
            msg: format!("thin QR needs a tall matrix [m, k] with m >= k >= 1, got [{m}, {k}]"),
        });
    }
    Ok(y)
}

/// `y^T y` on `y`'s device, copied to the host as f64. `[k, k]`.
fn gram_host(y: &Tensor) -> Result<Mat<f64>> {
    to_mat_f64(&y.t()?.matmul(y)?)
}

/// Upper Cholesky factor `R` (`G = R^T R`), or `None` for a non-positive pivot.
fn cholesky_upper(g: &Mat<f64>) -> Option<Mat<f64>> {
    let llt = g.llt(faer::Side::Lower).ok()?;
    Some(llt.L().transpose().to_owned())
}

/// `y R^{-1}` with the triangular inverse formed on the host and the product on the device.
fn apply_r_inverse(y: &Tensor, r: &Mat<f64>) -> Result<Tensor> {
    let k = r.nrows();
    let mut r_inv = Mat::<f64>::zeros(k, k);
    faer::linalg::triangular_inverse::invert_upper_triangular(
        r_inv.as_mut(),
        r.as_ref(),
        faer::Par::Seq,
    );
    Ok(y.matmul(&f64_to_tensor(r_inv.as_ref(), y.device())?)?)
}

fn cholesky_qr2_parts(op: &'static str, y: &Tensor) -> Result<Option<(Tensor, Mat<f64>)>> {
    let g1 = gram_host(y)?;
    if !all_finite(g1.as_ref()) {
        // NaN/Inf in y, or an f32 overflow of the Gram matrix (left to the f64 fallback).
        validate::finite(op, y)?;
        return Ok(None);
    }
    let Some(r1) = cholesky_upper(&g1) else {
        return Ok(None);
    };
    let q1 = apply_r_inverse(y, &r1)?;
    let g2 = gram_host(&q1)?;
    if !all_finite(g2.as_ref()) {
        return Ok(None);
    }
    let k = g2.nrows();
    let dev = (0..k)
        .flat_map(|j| (0..k).map(move |i| (i, j)))
        .map(|(i, j)| {
            let d = g2[(i, j)] - if i == j { 1.0 } else { 0.0 };
            d * d
        })
        .sum::<f64>()
        .sqrt();
    if dev > MAX_FIRST_PASS_DEVIATION {
        return Ok(None);
    }
    let Some(r2) = cholesky_upper(&g2) else {
        return Ok(None);
    };
    let q2 = apply_r_inverse(&q1, &r2)?;
    let r = &r2 * &r1; // y = q1 r1 = q2 r2 r1
    Ok(Some((q2, r)))
}

fn householder_parts(op: &'static str, y: &Tensor) -> Result<(Tensor, Mat<f64>)> {
    #[cfg(feature = "cuda")]
    if crate::cuda::cuda_device(y).is_some() {
        // On CUDA: cuSOLVER geqrf + orgqr in f32 on the device (no host copy of `y`).
        validate::finite(op, y)?;
        return crate::cuda::householder_qr(op, y);
    }
    let yh = to_mat_f64(y)?;
    if !all_finite(yh.as_ref()) {
        return Err(LinalgError::NonFinite { op });
    }
    let qr = yh.qr();
    let q = qr.compute_thin_Q();
    let r = qr.thin_R().to_owned();
    Ok((f64_to_tensor(q.as_ref(), y.device())?, r))
}
