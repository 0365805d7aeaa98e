//! Device-resident randomized subspace iteration on CUDA (feature `cuda`; the same algorithm as
//! [`crate::rsi`], HMT 2011 Alg. 4.4 + 5.1, paper Sec. 4.1.2).
//!
//! The host path ([`crate::qr`]) copies every `[k, k]` Gram matrix to the host for its Cholesky
//! factor and the inverse back: six round trips per RSI (q = 2), each a device synchronisation.
//! Here every CholeskyQR2 pass stays on the device: Gram product (cuBLAS, f32), Cholesky of the
//! Gram matrix in f64 (cuSOLVER `potrf`, as the host path factors it in f64), `Q = Y R^{-1}` by a
//! triangular solve (cuBLAS `trsm`, f32). The failure tests of the host path (non-positive pivot,
//! `||Q1^T Q1 - I||_F > 0.5` after a first pass, NaN/Inf) are evaluated on the device and read
//! once, together with the final `[k, k]` factor, in ONE synchronisation per matrix; when any
//! fails, the caller reruns the host path on the same draw (same `Omega`).
//!
//! [`rsi_many`] runs the device phase of many matrices back to back and their small host SVDs in
//! parallel, so a whole refresh (e.g. 224 matrices) pays one synchronisation per matrix without
//! waiting on the host in between.
use candle_core::{CudaDevice, DType, Tensor};
use cudarc::cublas::{sys as bs, CudaBlas};
use cudarc::cusolver::sys as cs;
use cudarc::driver::{CudaSlice, DevicePtrMut};
use faer::Mat;
use std::cell::RefCell;
use std::sync::Arc;

use crate::cuda::{copy_to_slice, cu_err, solver, to_i32, wrap};
use crate::Result;

thread_local! {
    static BLAS: RefCell<Vec<(candle_core::cuda_backend::DeviceId, Arc<CudaBlas>)>> =
        const { RefCell::new(Vec::new()) };
}

fn blas(cd: &CudaDevice) -> Result<Arc<CudaBlas>> {
    BLAS.with(|h| {
        let mut h = h.borrow_mut();
        if let Some((_, b)) = h.iter().find(|(id, _)| *id == cd.id()) {
            return Ok(b.clone());
        }
        let b = Arc::new(CudaBlas::new(cd.cuda_stream()).map_err(|e| cu_err("cublasCreate", e))?);
        h.push((cd.id(), b.clone()));
        Ok(b)
    })
}

/// Largest `||Q1^T Q1 - I||_F^2` accepted after a first CholeskyQR pass (the host path's 0.5^2).
const MAX_DEVIATION_SQ: f64 = 0.25;

/// Device state of one CholeskyQR2-based RSI until its single synchronisation.
pub(crate) struct Pending {
    /// `Q_b: [n_s, k]` of the final QR of `B^T`.
    q_b: Tensor,
    /// `R_b^T: [k, k]` f64 (lower triangular) on the device.
    r_b_t: Tensor,
    /// Squared first-pass deviations of every QR, `[n_qr]` f32.
    deviations: Vec<Tensor>,
    /// cuSOLVER `potrf` infos of every pass.
    info: CudaSlice<i32>,
    rank: usize,
}

/// Host-side result of [`Pending::fetch`]: `None` when a device check failed.
pub(crate) struct Fetched {
    q_b: Tensor,
    r_b_t: Option<Mat<f64>>,
    rank: usize,
}

/// The `[k, k]` constants of every QR of one RSI, built once per RSI rather than per pass.
struct Masks {
    /// Ones on and below the diagonal, f64.
    tril: Tensor,
    /// The identity, f32.
    eye: Tensor,
}

/// One Cholesky pass on the device: `y = Q R`; returns `Q: [m, k]` (f32) and `R^T` (f64, `[k, k]`,
/// lower triangular), writing potrf's info into `info[slot]`.
fn chol_pass(
    y: &Tensor,
    cd: &CudaDevice,
    info: &mut CudaSlice<i32>,
    slot: usize,
    masks: &Masks,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "rsi_device";
    let (m, k) = y.dims2()?;
    let stream = cd.cuda_stream();
    let y = y.contiguous()?;
    let gram = y.t()?.matmul(&y)?; // [k, k] f32, symmetric

    // potrf (upper, column-major) of the f64 Gram matrix: G = U^T U. Row-major, the buffer's
    // lower triangle is then U^T = R^T (its upper triangle keeps entries of G).
    let mut a = copy_to_slice::<f64>(&gram.to_dtype(DType::F64)?, cd)?;
    let h = solver(cd)?;
    let ki = to_i32(op, k)?;
    let upper = cs::cublasFillMode_t::CUBLAS_FILL_MODE_UPPER;
    let mut lw = 0i32;
    {
        let (pa, _g) = a.device_ptr_mut(&stream);
        // SAFETY: buffer-size query for a k x k f64 matrix at a valid device pointer.
        unsafe { cs::cusolverDnDpotrf_bufferSize(h.cu(), upper, ki, pa as *mut f64, ki, &mut lw) }
            .result()
            .map_err(|e| cu_err("potrf_bufferSize", e))?;
    }
    let mut work = stream
        .alloc_zeros::<f64>(lw.max(1) as usize)
        .map_err(|e| cu_err("alloc", e))?;
    {
        let (pa, _1) = a.device_ptr_mut(&stream);
        let (pw, _2) = work.device_ptr_mut(&stream);
        let mut slot_view = info.slice_mut(slot..slot + 1);
        let (pi, _3) = slot_view.device_ptr_mut(&stream);
        // SAFETY: a: k*k f64 (lda = k), work: lw f64, info slot: one i32; all on this stream.
        unsafe {
            cs::cusolverDnDpotrf(
                h.cu(),
                upper,
                ki,
                pa as *mut f64,
                ki,
                pw as *mut f64,
                lw,
                pi as *mut i32,
            )
        }
        .result()
        .map_err(|e| cu_err("potrf", e))?;
    }
    let buf = wrap(a, cd, (k, k));
    let r_t = buf.mul(&masks.tril)?; // R^T, [k, k]

    // Q = Y R^{-1}: row-major Y [m, k] is column-major Y^T (k x m, ld k); solve R^T X = Y^T.
    let u32c = buf.to_dtype(DType::F32)?; // column-major U in its upper triangle
    let mut q = copy_to_slice::<f32>(&y, cd)?;
    let blas = blas(cd)?;
    let mi = to_i32(op, m)?;
    {
        let pu = crate::kernels::ptr(op, &u32c, cd)?;
        let (pq, _2) = q.device_ptr_mut(&stream);
        let one = 1.0f32;
        // SAFETY: U: k x k f32 column-major (upper used), B = Y^T: k x m column-major, ld = k.
        unsafe {
            bs::cublasStrsm_v2(
                *blas.handle(),
                bs::cublasSideMode_t::CUBLAS_SIDE_LEFT,
                bs::cublasFillMode_t::CUBLAS_FILL_MODE_UPPER,
                bs::cublasOperation_t::CUBLAS_OP_T,
                bs::cublasDiagType_t::CUBLAS_DIAG_NON_UNIT,
                ki,
                mi,
                &one,
                pu as *const f32,
                ki,
                pq as *mut f32,
                ki,
            )
        }
        .result()
        .map_err(|e| cu_err("trsm", e))?;
    }
    Ok((wrap(q, cd, (m, k)), r_t, gram))
}

/// CholeskyQR2 on the device: `(Q, R^T)` with `y = Q R`, `R^T` f64 lower triangular; pushes the
/// squared deviation `||Q1^T Q1 - I||_F^2` of the first pass and uses info slots `slot, slot+1`.
fn chol_qr2(
    y: &Tensor,
    cd: &CudaDevice,
    info: &mut CudaSlice<i32>,
    slot: usize,
    deviations: &mut Vec<Tensor>,
    masks: &Masks,
) -> Result<(Tensor, Tensor)> {
    let (q1, r1_t, _) = chol_pass(y, cd, info, slot, masks)?;
    let (q2, r2_t, g2) = chol_pass(&q1, cd, info, slot + 1, masks)?;
    deviations.push(g2.sub(&masks.eye)?.sqr()?.sum_all()?.reshape(1)?);
    // y = q1 R1 = q2 R2 R1, so R^T = R1^T R2^T.
    Ok((q2, r1_t.matmul(&r2_t)?))
}

/// Number of QRs of a cold/warm RSI with `q` power iterations (one after every product, plus
/// the final QR of `B^T`), two info slots each.
fn info_slots(q: usize) -> usize {
    2 * (2 * q + 2)
}

/// Device phase of RSI on the Right-side operator `a_s` (`product(a, transposed, x)` as in
/// `rsi.rs`): `omega: [n_s, k]` test matrix, `q` power iterations. Queues all work, no sync.
pub(crate) fn start(
    a: &Tensor,
    transposed: bool,
    omega: &Tensor,
    q: usize,
    rank: usize,
) -> Result<Pending> {
    let op = "rsi_device";
    let cd = crate::kernels::cuda_dev(op, a)?;
    let mut info = cd
        .cuda_stream()
        .alloc_zeros::<i32>(info_slots(q))
        .map_err(|e| cu_err("alloc", e))?;
    let mut devs = Vec::with_capacity(2 * q + 2);
    let k = omega.dims2()?.1; // every QR below factors an [*, k] matrix
    let masks = Masks {
        tril: Tensor::tril2(k, DType::F64, a.device())?,
        eye: Tensor::eye(k, DType::F32, a.device())?,
    };
    let mul = |x: &Tensor| crate::rsi::product(a, transposed, x);
    let t_mul = |x: &Tensor| crate::rsi::product(a, !transposed, x);
    let mut slot = 0;
    let (mut qm, _) = chol_qr2(&mul(omega)?, cd, &mut info, slot, &mut devs, &masks)?; // [m_s, k]
    slot += 2;
    for _ in 0..q {
        let (qz, _) = chol_qr2(&t_mul(&qm)?, cd, &mut info, slot, &mut devs, &masks)?; // [n_s, k]
        slot += 2;
        qm = chol_qr2(&mul(&qz)?, cd, &mut info, slot, &mut devs, &masks)?.0; // [m_s, k]
        slot += 2;
    }
    let bt = t_mul(&qm)?; // B^T = A^T Q: [n_s, k]
    let (q_b, r_b_t) = chol_qr2(&bt, cd, &mut info, slot, &mut devs, &masks)?;
    Ok(Pending {
        q_b,
        r_b_t,
        deviations: devs,
        info,
        rank,
    })
}

impl Pending {
    /// The single synchronisation: copies `R_b^T`, the deviations and the infos to the host.
    pub(crate) fn fetch(self) -> Result<Fetched> {
        // f64 all the way (the host path keeps R in f64 too).
        let k = self.r_b_t.dims2()?.0;
        let v = self
            .r_b_t
            .to_device(&candle_core::Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let r_b_t = Mat::from_fn(k, k, |i, j| v[i * k + j]);
        let devs = Tensor::cat(&self.deviations, 0)?.to_vec1::<f32>()?;
        let cd = crate::kernels::cuda_dev("rsi_device", &self.q_b)?;
        let info = cd
            .cuda_stream()
            .clone_dtoh(&self.info)
            .map_err(|e| cu_err("info copy", e))?;
        let ok = info.iter().all(|&i| i == 0)
            && devs.iter().all(|&d| (d as f64) <= MAX_DEVIATION_SQ)
            && crate::host::all_finite(r_b_t.as_ref());
        Ok(Fetched {
            q_b: self.q_b,
            r_b_t: ok.then_some(r_b_t),
            rank: self.rank,
        })
    }
}

impl Fetched {
    /// Host SVD of `R_b^T` (sequential faer, f64) -> the `[k, rank]` right vectors `W`.
    pub(crate) fn small_svd(&self) -> Result<Option<Mat<f64>>> {
        let Some(rt) = &self.r_b_t else {
            return Ok(None);
        };
        let w = crate::rsi::small_svd_v("rsi_subspace", rt.as_ref())?;
        Ok(Some(w.as_ref().subcols(0, self.rank).to_owned()))
    }

    /// `P = Q_b W`: `[n_s, rank]`.
    pub(crate) fn finish(&self, w: &Mat<f64>) -> Result<Tensor> {
        let w = crate::host::f64_to_tensor(w.as_ref(), self.q_b.device())?;
        Ok(self.q_b.matmul(&w)?)
    }
}
