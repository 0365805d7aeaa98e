//! Randomized subspace iteration (Halko, Martinsson, Tropp 2011, Alg. 4.4 + Alg. 5.1; paper
//! Sec. 4.1.2, DESIGN.md §1.2 item 1) and the exact subspace of short matrices used by cross-head
//! projection (paper Sec. 4.1.1, Eq. 4; DESIGN.md §1.2 item 2).
//!
//! Every product with `A` (`2 m n k` flops, `k = r + p`) is a candle `matmul` on `A`'s device;
//! only `[k, k]` factors are computed on the host (faer, f64). A Left-side problem is solved as
//! the Right-side problem of the transposed view `A^T` (no copy).
//!
//! Final step (HMT Alg. 5.1): with `B = Q^T A: [k, n]`, DESIGN.md writes the right vectors as
//! `V = B^T U_B Sigma^{-1}` from the eigendecomposition `B B^T = U_B Sigma^2 U_B^T`. We compute the
//! same matrix without dividing by singular values: thin QR `B^T = Q_b R_b` and the small SVD
//! `R_b^T = U_B Sigma W^T` give `B = U_B Sigma (Q_b W)^T`, so `V = Q_b W` (identical in exact
//! arithmetic: `B^T U_B Sigma^{-1} = Q_b R_b U_B Sigma^{-1} = Q_b W`). It stays orthonormal when
//! singular values are tiny or zero (rank-deficient or zero `A`), where the division would give
//! NaN/Inf, and it never squares the condition number of `B` beyond what CholeskyQR2 tolerates.
use crate::host::f64_to_tensor;
use crate::qr::{qr_with_r, thin_qr};
use crate::{validate, LinalgError, Result, Rng, Side};
use candle_core::{Device, Tensor};
use faer::Mat;
use serde::{Deserialize, Serialize};

/// Parameters of randomized subspace iteration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsiConfig {
    /// Oversampling `p`: the sketch has `r + p` columns. Default 8.
    pub oversample: usize,
    /// Power iterations `q`. Default 2.
    pub power_iters: usize,
}

impl Default for RsiConfig {
    fn default() -> Self {
        Self {
            oversample: 8,
            power_iters: 2,
        }
    }
}

/// Number of sketch columns `k = min(r + p, m, n)` used for `a: [m, n]`.
pub fn sketch_width(rank: usize, cfg: &RsiConfig, m: usize, n: usize) -> usize {
    rank.saturating_add(cfg.oversample).min(m).min(n)
}

/// Top-`rank` subspace of `a: [m, n]` on `side` by RSI. Returns `[n, rank]` (Right) or
/// `[m, rank]` (Left), orthonormal columns, on `a`'s device. `warm`: a previous projector of the
/// same side whose columns replace the first columns of the Gaussian test matrix.
///
/// HMT Alg. 4.4 (Right side, `k = min(r + p, m, n)`): `Omega: [n, k]` Gaussian, the
/// counter-based stream keyed by one draw of `rng` ([`gaussian`]: drawn on `a`'s device, equal on
/// CPU and CUDA to within 1 f32 ulp), `Q = qr(A Omega)`; `q` times:
/// `Q_z = qr(A^T Q)`, `Q = qr(A Q_z)`; then the top-r right vectors of `B = Q^T A` (module docs).
/// Cost: `(2q + 2)` products of `2 m n k` flops plus `O((m + n) k^2)` for the QRs.
/// Errors: `rank` 0 or above `min(m, n)`, non-2-D or non-float input, NaN/Inf in `a` or `warm`,
/// `warm` with the wrong number of rows or more than `k` columns.
pub fn rsi_subspace(
    a: &Tensor,
    rank: usize,
    side: Side,
    cfg: &RsiConfig,
    rng: &mut Rng,
    warm: Option<&Tensor>,
) -> Result<Tensor> {
    let op = "rsi_subspace";
    let p = prepare(op, a, rank, side, cfg, warm)?;
    #[cfg(feature = "cuda")]
    if p.a.device().is_cuda() {
        let saved = rng.clone();
        let fetched = start_device(&p, side, cfg, rank, rng)?.fetch()?;
        if let Some(w) = fetched.small_svd()? {
            return fetched.finish(&w);
        }
        // A device check failed: the host path below, on the same draw.
        *rng = saved;
    }
    rsi_host(op, &p, rank, side, cfg, rng)
}

/// The checked inputs of one RSI: `a` as f32, the sketch width `k`, the warm start as f32 on
/// `a`'s device.
struct Prepared {
    a: Tensor,
    k: usize,
    warm: Option<Tensor>,
}

/// Validates the inputs of [`rsi_subspace`] (errors listed there).
fn prepare(
    op: &'static str,
    a: &Tensor,
    rank: usize,
    side: Side,
    cfg: &RsiConfig,
    warm: Option<&Tensor>,
) -> Result<Prepared> {
    let a = validate::matrix_f32(op, a)?;
    let (m, n) = a.dims2()?;
    validate::rank(op, rank, m, n)?;
    validate::finite(op, &a)?;
    let k = sketch_width(rank, cfg, m, n);
    let side_dim = match side {
        Side::Right => n,
        Side::Left => m,
    };
    let warm = checked_warm(op, warm, side_dim, k, a.device())?;
    Ok(Prepared { a, k, warm })
}

/// The host-factorization path of [`rsi_subspace`] (any device; on CUDA the fallback of the
/// device path).
fn rsi_host(
    op: &'static str,
    p: &Prepared,
    rank: usize,
    side: Side,
    cfg: &RsiConfig,
    rng: &mut Rng,
) -> Result<Tensor> {
    let saved = rng.clone();
    let warm = p.warm.as_ref();
    match rsi_core(op, &p.a, rank, side, p.k, cfg, rng, warm) {
        // `a` is finite (checked by `prepare`), so a NaN/Inf downstream is an f32 overflow of a
        // product (entries near f32::MAX): redo the same draw on `a / max|a|`, which has the same
        // subspace.
        Err(LinalgError::NonFinite { .. }) => {
            *rng = saved;
            let scaled = (&p.a / max_abs(&p.a)?)?;
            rsi_core(op, &scaled, rank, side, p.k, cfg, rng, warm)
        }
        other => other,
    }
}

/// Device phase of [`rsi_subspace`] on CUDA (checked inputs; draws `Omega` from `rng`).
#[cfg(feature = "cuda")]
fn start_device(
    p: &Prepared,
    side: Side,
    cfg: &RsiConfig,
    rank: usize,
    rng: &mut Rng,
) -> Result<crate::rsi_cuda::Pending> {
    let transposed = side == Side::Left;
    let (m, n) = p.a.dims2()?;
    let n_s = if transposed { m } else { n };
    let omega = test_matrix("rsi_subspace", n_s, p.k, rng, p.warm.as_ref(), p.a.device())?;
    crate::rsi_cuda::start(&p.a, transposed, &omega, cfg.power_iters, rank)
}

/// One matrix of [`rsi_many`]: `(a, rank, side, warm)`.
pub type RsiJob<'a> = (&'a Tensor, usize, Side, Option<&'a Tensor>);

/// [`rsi_subspace`] for many matrices, each with its own generator (`rngs[i]` for `jobs[i]`);
/// results equal those of calling [`rsi_subspace`] on each in turn. On CUDA the device work of all
/// matrices is queued first, then each matrix's single synchronisation and small host SVD follow
/// (the SVDs on up to `available_parallelism` host threads), so the host never idles the device
/// between matrices. On CPU it is the loop.
pub fn rsi_many(jobs: &[RsiJob<'_>], cfg: &RsiConfig, rngs: &mut [Rng]) -> Result<Vec<Tensor>> {
    let op = "rsi_many";
    if jobs.len() != rngs.len() {
        return Err(LinalgError::InvalidArgument {
            op,
            msg: format!("{} jobs but {} generators", jobs.len(), rngs.len()),
        });
    }
    #[cfg(feature = "cuda")]
    if jobs.iter().all(|j| j.0.device().is_cuda()) && !jobs.is_empty() {
        return rsi_many_device(jobs, cfg, rngs);
    }
    jobs.iter()
        .zip(rngs.iter_mut())
        .map(|(&(a, rank, side, warm), rng)| rsi_subspace(a, rank, side, cfg, rng, warm))
        .collect()
}

#[cfg(feature = "cuda")]
fn rsi_many_device(jobs: &[RsiJob<'_>], cfg: &RsiConfig, rngs: &mut [Rng]) -> Result<Vec<Tensor>> {
    let op = "rsi_subspace";
    let saved: Vec<Rng> = rngs.to_vec();
    // Phase 1: validate and queue every matrix's device work (no synchronisation but the
    // finiteness checks of the inputs).
    let mut pending = Vec::with_capacity(jobs.len());
    for (&(a, rank, side, warm), rng) in jobs.iter().zip(rngs.iter_mut()) {
        let p = prepare(op, a, rank, side, cfg, warm)?;
        pending.push(start_device(&p, side, cfg, rank, rng)?);
    }
    // Phase 2: one synchronisation per matrix (in queue order), small SVDs on host threads.
    let fetched = pending
        .into_iter()
        .map(|p| p.fetch())
        .collect::<Result<Vec<_>>>()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = fetched.len().div_ceil(threads).max(1);
    let ws: Vec<Result<Option<Mat<f64>>>> = std::thread::scope(|s| {
        let handles: Vec<_> = fetched
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(|f| f.small_svd()).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(LinalgError::NoConvergence {
                        op,
                        msg: "host SVD thread panicked".into(),
                    })]
                })
            })
            .collect()
    });
    // Phase 3: P = Q_b W; a matrix whose device checks failed reruns the host path on its draw.
    let mut out = Vec::with_capacity(jobs.len());
    for (i, (f, w)) in fetched.iter().zip(ws).enumerate() {
        match w? {
            Some(w) => out.push(f.finish(&w)?),
            None => {
                let (a, rank, side, warm) = jobs[i];
                rngs[i] = saved[i].clone();
                let p = prepare(op, a, rank, side, cfg, warm)?;
                out.push(rsi_host(op, &p, rank, side, cfg, &mut rngs[i])?);
            }
        }
    }
    Ok(out)
}

/// Largest `|a_ij|` (1 for a zero matrix, so that dividing by it is harmless).
pub(crate) fn max_abs(a: &Tensor) -> Result<f64> {
    let m = a.abs()?.max_keepdim(1)?.max_all()?.to_scalar::<f32>()? as f64;
    Ok(if m > 0.0 { m } else { 1.0 })
}

#[allow(clippy::too_many_arguments)]
fn rsi_core(
    op: &'static str,
    a: &Tensor,
    rank: usize,
    side: Side,
    k: usize,
    cfg: &RsiConfig,
    rng: &mut Rng,
    warm: Option<&Tensor>,
) -> Result<Tensor> {
    // The Right-side problem of `a_s: [m_s, n_s]`; for Left, `a_s = a^T` (never materialised).
    let a_s = Operator {
        a,
        transposed: side == Side::Left,
    };
    let n_s = a_s.cols()?;
    let omega = test_matrix(op, n_s, k, rng, warm, a.device())?; // [n_s, k]
    let mut q = thin_qr(&a_s.mul(&omega)?)?; // [m_s, k]
    for _ in 0..cfg.power_iters {
        let qz = thin_qr(&a_s.t_mul(&q)?)?; // [n_s, k]
        q = thin_qr(&a_s.mul(&qz)?)?; // [m_s, k]
    }
    let bt = a_s.t_mul(&q)?; // B^T = A^T Q: [n_s, k]
    top_right_of_tall(op, &bt, rank)
}

/// `a` (contiguous, `[m, n]`) or its transpose, applied to thin matrices. Products with a
/// transposed big operand are formed as `(x^T a)^T` with `a` in its stored layout (measured ~15%
/// faster with candle's CPU gemm than a transposed-view product; only `[k, *]` thin copies move).
struct Operator<'a> {
    a: &'a Tensor,
    transposed: bool,
}

impl Operator<'_> {
    fn cols(&self) -> Result<usize> {
        let (m, n) = self.a.dims2()?;
        Ok(if self.transposed { m } else { n })
    }

    /// `op(a) x` for `x: [cols, k]`.
    fn mul(&self, x: &Tensor) -> Result<Tensor> {
        product(self.a, self.transposed, x)
    }

    /// `op(a)^T x` for `x: [rows, k]`.
    fn t_mul(&self, x: &Tensor) -> Result<Tensor> {
        product(self.a, !self.transposed, x)
    }
}

/// `a x` (`transposed = false`) or `a^T x` = `(x^T a)^T` (`transposed = true`); `a` contiguous.
pub(crate) fn product(a: &Tensor, transposed: bool, x: &Tensor) -> Result<Tensor> {
    if transposed {
        let xt = x.t()?.contiguous()?; // [k, m]
        Ok(xt.matmul(a)?.t()?.contiguous()?) // [k, n] -> [n, k]
    } else {
        Ok(a.matmul(x)?)
    }
}

/// Exact top-`rank` subspace of a matrix that is SHORT on the other side (e.g. one attention
/// head's gradient slice `[d_head, d_model]`, Right side; DESIGN.md §1.2 item 2), from a
/// `[min(m,n), min(m,n)]` Gram-sized factorization: thin QR `A^T = Q_a R_a` (CholeskyQR2, whose
/// first step is the Gram matrix `A A^T`; Householder fallback) and the SVD of the small `R_a`.
/// This is the eigh-of-`A A^T` method (`A A^T = R_a^T R_a`, so `R_a^T = U Sigma W^T` holds the
/// eigenvectors `U` and `sqrt` eigenvalues `Sigma`) in the form `P = Q_a W` that needs no division
/// by singular values. Exact up to f32 rounding; cost `O(min(m,n)^2 max(m,n))`, so intended for
/// `min(m, n)` up to a few hundred. Returns `[n, rank]` (Right) or `[m, rank]` (Left).
pub fn gram_subspace(a: &Tensor, rank: usize, side: Side) -> Result<Tensor> {
    let op = "gram_subspace";
    let a = validate::matrix_f32(op, a)?;
    let (m, n) = a.dims2()?;
    validate::rank(op, rank, m, n)?;
    validate::finite(op, &a)?;
    let a_s = match side {
        Side::Right => a.clone(),
        Side::Left => a.t()?,
    };
    let (m_s, n_s) = a_s.dims2()?;
    if m_s <= n_s {
        // Short: the row space of a_s is range(a_s^T), a_s^T: [n_s, m_s] is tall.
        top_right_of_tall(op, &a_s.t()?, rank)
    } else {
        // Tall: a_s = Q R with R: [n_s, n_s]; the right vectors of a_s are those of R.
        let (_, r) = qr_with_r(op, &a_s)?;
        let w = small_svd_v(op, r.as_ref())?; // right vectors of R
        f64_to_tensor(w.as_ref().subcols(0, rank), a.device())
    }
}

/// Top-`rank` right singular subspace of `c^T`, given the tall `c: [n, k]` (`k <= n`): `c = Q R`,
/// `c^T = R^T Q^T`, `R^T = U Sigma W^T` => right vectors of `c^T` are `Q W`. Returns `[n, rank]`.
fn top_right_of_tall(op: &'static str, c: &Tensor, rank: usize) -> Result<Tensor> {
    let (q, r) = qr_with_r(op, c)?; // q: [n, k], r: [k, k]
    let w = small_svd_v(op, r.transpose())?; // [k, k]
    let w_r = f64_to_tensor(w.as_ref().subcols(0, rank), q.device())?; // [k, rank]
    Ok(q.matmul(&w_r)?)
}

/// Right singular vectors (as columns, by non-increasing singular value) of a small host matrix.
/// Sequential (`Par::Seq`): at `k ~ 136` waking a thread pool costs more than it saves (measured
/// on the H200 host, docs/BENCHMARKS.md), and [`rsi_many`] runs several of these in parallel.
pub(crate) fn small_svd_v(op: &'static str, x: faer::MatRef<'_, f64>) -> Result<Mat<f64>> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
    let (m, n) = x.shape();
    let par = faer::Par::Seq;
    let mut s = faer::diag::Diag::<f64>::zeros(m.min(n));
    let mut u = Mat::<f64>::zeros(m, m);
    let mut v = Mat::<f64>::zeros(n, n);
    let full = ComputeSvdVectors::Full;
    let mut mem = MemBuffer::new(svd_scratch::<f64>(
        m,
        n,
        full,
        full,
        par,
        Default::default(),
    ));
    svd(
        x,
        s.as_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| LinalgError::NoConvergence {
        op,
        msg: format!("faer SVD of [k, k]: {e:?}"),
    })?;
    Ok(v)
}

/// `warm` as f32 on `device`, checked to be `[rows, c]` with `c <= k` and finite.
fn checked_warm(
    op: &'static str,
    warm: Option<&Tensor>,
    rows: usize,
    k: usize,
    device: &Device,
) -> Result<Option<Tensor>> {
    let Some(w) = warm else { return Ok(None) };
    let w = validate::matrix_f32(op, w)?;
    let (wr, wc) = w.dims2()?;
    if wr != rows || wc > k {
        return Err(LinalgError::Shape {
            op,
            msg: format!(
                "warm-start projector is [{wr}, {wc}], expected [{rows}, c] with c <= {k}"
            ),
        });
    }
    validate::finite(op, &w)?;
    Ok(Some(w.to_device(device)?))
}

/// `[rows, cols]` entries `0..rows*cols` (row-major) of the counter-based normal stream `key`,
/// drawn on `device` (CUDA: `kernels::counter_normal`; CPU: [`crate::rng::counter_normal_vec`]).
pub fn gaussian(key: u64, rows: usize, cols: usize, device: &Device) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cd) = device {
        return crate::kernels::counter_normal(key, rows, cols, cd);
    }
    let v = crate::rng::counter_normal_vec(key, rows * cols);
    Ok(Tensor::from_vec(v, (rows, cols), device)?)
}

/// `Omega: [rows, k]`: the columns of `warm` (already checked) first, then standard normal
/// columns (one key from `rng`, [`gaussian`]).
fn test_matrix(
    op: &'static str,
    rows: usize,
    k: usize,
    rng: &mut Rng,
    warm: Option<&Tensor>,
    device: &Device,
) -> Result<Tensor> {
    let n_warm = warm.map_or(0, |w| w.dims()[1]);
    let n_gauss = k - n_warm;
    let gauss = (n_gauss > 0)
        .then(|| gaussian(rng.next_key(), rows, n_gauss, device))
        .transpose()?;
    match (warm, gauss) {
        (Some(w), Some(g)) => Ok(Tensor::cat(&[w, &g], 1)?),
        (Some(w), None) => Ok(w.clone()),
        (None, Some(g)) => Ok(g),
        (None, None) => Err(LinalgError::InvalidArgument {
            op,
            msg: "empty sketch".into(),
        }),
    }
}
