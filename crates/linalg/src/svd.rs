//! Exact thin SVD (GaLore's projector, paper Eq. 2, DESIGN.md §1.1) and subspace quality
//! (paper Fig. 2b).
//!
//! The SVD runs on the host with faer in f32 (the working precision of galore-torch's
//! `torch.linalg.svd(full_matrices=False)` on an f32 gradient). A tensor on a CUDA device is
//! factored on its device by cuSOLVER (`gesvdj` with a `gesvd` fallback, as `torch.linalg.svd`;
//! feature `cuda`, [`crate::cuda`]).
//! Singular vectors are defined up to sign, so they match galore-torch up to sign.
use crate::host::{f32_to_tensor, to_mat_f32};
use crate::{validate, LinalgError, Result, Side};
use candle_core::Tensor;
use faer::Mat;

/// `a = u diag(s) vt` with `kk = min(m, n)`: `u: [m, kk]`, `s: [kk]` (non-increasing, >= 0),
/// `vt: [kk, n]`, all f32 on `a`'s device.
#[derive(Debug, Clone)]
pub struct ThinSvd {
    pub u: Tensor,
    pub s: Tensor,
    pub vt: Tensor,
}

/// Exact thin SVD of `a: [m, n]` (f32, faer on the host).
pub fn thin_svd(a: &Tensor) -> Result<ThinSvd> {
    let op = "thin_svd";
    let a = validate::matrix_f32(op, a)?;
    let (m, n) = a.dims2()?;
    if m == 0 || n == 0 {
        return Err(LinalgError::Shape {
            op,
            msg: format!("empty matrix [{m}, {n}]"),
        });
    }
    #[cfg(feature = "cuda")]
    if crate::cuda::cuda_device(&a).is_some() {
        validate::finite(op, &a)?;
        let both = crate::cuda::Want {
            left: true,
            right: true,
        };
        let f = crate::cuda::thin_svd(op, &a, both, crate::cuda::DEFAULT_SVD_DRIVER)?;
        if let (Some(u), Some(v)) = (f.u, f.v) {
            let vt = v.t()?.contiguous()?;
            return Ok(ThinSvd { u, s: f.s, vt });
        }
    }
    let svd = host_svd(op, &a)?;
    let dev = a.device();
    let s: Vec<f32> = (0..m.min(n)).map(|i| svd.S()[i]).collect();
    Ok(ThinSvd {
        u: f32_to_tensor(svd.U(), dev)?,
        s: Tensor::from_vec(s, m.min(n), dev)?,
        vt: f32_to_tensor(svd.V().transpose(), dev)?,
    })
}

/// Exact top-`rank` singular subspace of `a: [m, n]` on `side` (as galore-torch's
/// `torch.linalg.svd(full_matrices=False)`: `U[:, :r]` for Left, `Vh[:r]^T` for Right).
pub fn svd_subspace(a: &Tensor, rank: usize, side: Side) -> Result<Tensor> {
    let op = "svd_subspace";
    let a = validate::matrix_f32(op, a)?;
    let (m, n) = a.dims2()?;
    validate::rank(op, rank, m, n)?;
    #[cfg(feature = "cuda")]
    if crate::cuda::cuda_device(&a).is_some() {
        validate::finite(op, &a)?;
        let p = crate::cuda::subspace(op, &a, rank, side, crate::cuda::DEFAULT_SVD_DRIVER)?;
        return canonical_signs(&p);
    }
    let svd = host_svd(op, &a)?;
    let p = match side {
        Side::Left => svd.U().subcols(0, rank),
        Side::Right => svd.V().subcols(0, rank),
    };
    canonical_signs(&f32_to_tensor(p, a.device())?)
}

/// Deterministic sign convention for a basis `p: [d, r]`: each column is flipped so that its entry
/// of largest magnitude is positive. Singular vectors are defined up to sign and LAPACK-style (faer)
/// and cuSOLVER pick differently; once GaLore's moments carry over a refresh the sign changes the
/// update, so without a convention the same run differs between CPU and CUDA (H200 model check:
/// 8.3e-3 relative after 3 steps with a refresh). galore-torch keeps the backend's signs; the
/// golden tests align ours to its projectors explicitly.
pub fn canonical_signs(p: &Tensor) -> Result<Tensor> {
    let idx = p.abs()?.argmax_keepdim(0)?; // [1, r]: row of the largest |entry| per column
    let picked = p.gather(&idx, 0)?; // [1, r]
    let sign = picked.ge(0f32)?.to_dtype(p.dtype())?.affine(2.0, -1.0)?; // +1 or -1
    Ok(p.broadcast_mul(&sign)?)
}

/// Relative residual `||A - P P^T A||_F / ||A||_F` (Right: `||A - A P P^T||_F / ||A||_F`);
/// 0 for a zero `A`. The paper's Fig. 2b quantity. `p` must have orthonormal columns:
/// `[m, r]` for Left, `[n, r]` for Right. Computed with f32 products on `a`'s device.
pub fn subspace_residual(a: &Tensor, p: &Tensor, side: Side) -> Result<f32> {
    let op = "subspace_residual";
    let a = validate::matrix_f32(op, a)?;
    let p = validate::matrix_f32(op, p)?;
    let (m, n) = a.dims2()?;
    let (pr, _) = p.dims2()?;
    let want = match side {
        Side::Left => m,
        Side::Right => n,
    };
    if pr != want {
        return Err(LinalgError::Shape {
            op,
            msg: format!(
                "projector has {pr} rows, expected {want} for {side:?} side of [{m}, {n}]"
            ),
        });
    }
    validate::finite(op, &a)?;
    validate::finite(op, &p)?;
    let mut norm_a = frobenius(&a)?;
    if norm_a == 0.0 {
        return Ok(0.0);
    }
    let a = if norm_a.is_finite() {
        a
    } else {
        // f32 overflow of the squares (entries near f32::MAX): the ratio is scale-invariant.
        let scaled = (&a / crate::rsi::max_abs(&a)?)?;
        norm_a = frobenius(&scaled)?;
        scaled
    };
    let d = match side {
        Side::Left => (&a - p.matmul(&p.t()?.matmul(&a)?)?)?, // [m, r] x [r, n]
        Side::Right => (&a - a.matmul(&p)?.matmul(&p.t()?)?)?, // [m, r] x [r, n]
    };
    Ok((frobenius(&d)? / norm_a) as f32)
}

/// Frobenius norm, summed in two stages (rows, then the row sums) for accuracy and for GPUs.
fn frobenius(a: &Tensor) -> Result<f64> {
    let s = a.sqr()?.sum_keepdim(1)?.sum_all()?.to_scalar::<f32>()?;
    Ok((s as f64).sqrt())
}

fn host_svd(op: &'static str, a: &Tensor) -> Result<faer::linalg::solvers::Svd<f32>> {
    validate::finite(op, a)?;
    let h: Mat<f32> = to_mat_f32(a)?;
    h.thin_svd().map_err(|e| LinalgError::NoConvergence {
        op,
        msg: format!("faer thin SVD: {e:?}"),
    })
}
