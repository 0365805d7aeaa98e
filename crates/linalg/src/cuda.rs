//! cuSOLVER paths for tensors on a CUDA device (feature `cuda`): the exact thin SVD behind
//! [`crate::svd`] (GaLore's projector, DESIGN.md §1.1) and the Householder thin QR behind
//! [`crate::qr`]'s fallback, and the handles and buffer helpers that `rsi_cuda` (the
//! device-resident RSI) shares. The rest (CholeskyQR2 on the host path, cross-head Gram
//! subspaces) is candle products plus small host factorizations.
//!
//! Layout: candle tensors are row-major, cuSOLVER is column-major. A contiguous row-major
//! `[r, c]` buffer is the column-major `c x r` matrix, i.e. the transpose; no data is reordered
//! beyond one device copy of the input (cuSOLVER overwrites its input).
//!
//! SVD driver: [`DEFAULT_SVD_DRIVER`] = QR-iteration `gesvd` (more accurate and faster here than
//! torch's default, Jacobi `gesvdj`, which stays selectable with a fallback to `gesvd` when it
//! reports no convergence, `info > 0`); [`SvdDriver`] selects one explicitly (the benchmark times both).
use std::cell::RefCell;
use std::sync::Arc;

use candle_core::cuda_backend::CudaDType;
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, Device, Storage, Tensor};
use cudarc::cusolver::{sys as cs, DnHandle};
use cudarc::driver::{CudaSlice, DevicePtrMut, DeviceRepr};
use faer::Mat;

use crate::{LinalgError, Result};

/// The driver `svd_subspace`/`thin_svd` use on CUDA: QR-iteration `gesvd`. On the H200 it agreed
/// with the CPU SVD to 3.5e-6 (gesvdj: 7e-5) and was faster on the 7B shapes (P1: 188.7 s vs
/// 247.6 s for 224 matrices); with gesvdj, GaLore's weights after 3 steps differed from the CPU by
/// 8.3e-3 relative on a 32x64 gradient with close singular values (docs/BENCHMARKS.md).
pub const DEFAULT_SVD_DRIVER: SvdDriver = SvdDriver::Gesvd;

/// cuSOLVER SVD routine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SvdDriver {
    /// `cusolverDnSgesvdj` (one-sided Jacobi; torch's default), falling back to `gesvd` when it
    /// does not converge.
    Gesvdj,
    /// `cusolverDnSgesvd` (bidiagonalisation + QR iteration).
    Gesvd,
}

/// Which singular vectors to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Want {
    pub left: bool,
    pub right: bool,
}

/// Thin SVD factors of `a: [m, n]` on its CUDA device, `kk = min(m, n)`: `u: [m, kk]`,
/// `s: [kk]` (non-increasing), `v: [n, kk]` (right vectors as COLUMNS).
pub(crate) struct CudaSvd {
    pub u: Option<Tensor>,
    pub s: Tensor,
    pub v: Option<Tensor>,
}

/// The CUDA device of `t`, if it lives on one.
pub(crate) fn cuda_device(t: &Tensor) -> Option<&CudaDevice> {
    match t.device() {
        Device::Cuda(cd) => Some(cd),
        _ => None,
    }
}

thread_local! {
    /// One cuSOLVER handle per device and thread (creating one costs a few ms).
    static HANDLES: RefCell<Vec<(candle_core::cuda_backend::DeviceId, Arc<DnHandle>)>> =
        const { RefCell::new(Vec::new()) };
}

pub(crate) fn solver(cd: &CudaDevice) -> Result<Arc<DnHandle>> {
    HANDLES.with(|h| {
        let mut h = h.borrow_mut();
        if let Some((_, s)) = h.iter().find(|(id, _)| *id == cd.id()) {
            return Ok(s.clone());
        }
        let s =
            Arc::new(DnHandle::new(cd.cuda_stream()).map_err(|e| cu_err("cusolverDnCreate", e))?);
        h.push((cd.id(), s.clone()));
        Ok(s)
    })
}

pub(crate) fn cu_err(what: &str, e: impl std::fmt::Debug) -> LinalgError {
    LinalgError::Candle(candle_core::Error::Msg(format!("CUDA {what}: {e:?}")))
}

/// A device copy of the contiguous row-major buffer of `t` (of element type `T`: f32, f64).
pub(crate) fn copy_to_slice<T: CudaDType + DeviceRepr>(
    t: &Tensor,
    cd: &CudaDevice,
) -> Result<CudaSlice<T>> {
    let t = t.contiguous()?;
    let n = t.elem_count();
    let (st, layout) = t.storage_and_layout();
    let Storage::Cuda(s) = &*st else {
        return Err(LinalgError::InvalidArgument {
            op: "cuda",
            msg: "tensor is not on a CUDA device".into(),
        });
    };
    let src = s.as_cuda_slice::<T>()?;
    let off = layout.start_offset();
    cd.cuda_stream()
        .clone_dtod(&src.slice(off..off + n))
        .map_err(|e| cu_err("copy", e))
}

/// A device buffer as a row-major tensor of `shape` (takes ownership, no copy).
pub(crate) fn wrap<T: CudaDType>(
    slice: CudaSlice<T>,
    cd: &CudaDevice,
    shape: (usize, usize),
) -> Tensor {
    let storage = Storage::Cuda(CudaStorage::wrap_cuda_slice(slice, cd.clone()));
    Tensor::from_storage(storage, shape, BackpropOp::none(), false)
}

fn alloc(cd: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    cd.cuda_stream()
        .alloc_zeros::<f32>(n.max(1))
        .map_err(|e| cu_err("alloc", e))
}

fn read_info(cd: &CudaDevice, info: &CudaSlice<i32>) -> Result<i32> {
    let h = cd
        .cuda_stream()
        .clone_dtoh(info)
        .map_err(|e| cu_err("info copy", e))?;
    Ok(h.first().copied().unwrap_or(0))
}

pub(crate) fn to_i32(op: &'static str, x: usize) -> Result<i32> {
    i32::try_from(x).map_err(|_| LinalgError::Shape {
        op,
        msg: format!("dimension {x} exceeds cuSOLVER's 32-bit index range"),
    })
}

/// Exact thin SVD of the finite f32 matrix `a: [m, n]` on its CUDA device.
///
/// cuSOLVER factors the column-major `X` with `rows >= cols`: for `m >= n`, `X = a` (a copy of
/// `a^T` row-major), so `U_x` are `a`'s left and `V_x` its right vectors; for `m < n`, `X = a^T`
/// (`a`'s own buffer), so the roles swap. `U_x` (column-major `rows x kk`) is read as the row-major
/// `[kk, rows]` transpose; `V_x` as row-major `[cols, kk]` (`gesvdj`) or `V_x^T` column-major
/// (`gesvd`, `[kk, kk]` row-major = `V_x`).
pub(crate) fn thin_svd(
    op: &'static str,
    a: &Tensor,
    want: Want,
    driver: SvdDriver,
) -> Result<CudaSvd> {
    let cd = cuda_device(a).ok_or_else(|| LinalgError::InvalidArgument {
        op,
        msg: "tensor is not on a CUDA device".into(),
    })?;
    let (m, n) = a.dims2()?;
    let tall = m >= n;
    let (rows, kk) = (m.max(n), m.min(n));
    // Which of X's factors are wanted: X's U is a's left vectors when tall, right when wide.
    let (want_ux, want_vx) = if tall {
        (want.left, want.right)
    } else {
        (want.right, want.left)
    };
    let x_src = if tall { a.t()? } else { a.clone() };
    let (ux, s, vx) = match driver {
        SvdDriver::Gesvdj => match gesvdj(op, &x_src, cd, rows, kk, want_ux, want_vx)? {
            Some(f) => f,
            None => gesvd(op, &x_src, cd, rows, kk, want_ux, want_vx)?,
        },
        SvdDriver::Gesvd => gesvd(op, &x_src, cd, rows, kk, want_ux, want_vx)?,
    };
    let (u, v) = if tall { (ux, vx) } else { (vx, ux) };
    Ok(CudaSvd { u, s, v })
}

type Factors = (Option<Tensor>, Tensor, Option<Tensor>);

/// `gesvd` of the column-major `rows x kk` matrix stored in `x_src` (row-major `[kk, rows]`).
fn gesvd(
    op: &'static str,
    x_src: &Tensor,
    cd: &CudaDevice,
    rows: usize,
    kk: usize,
    want_u: bool,
    want_v: bool,
) -> Result<Factors> {
    let stream = cd.cuda_stream();
    let h = solver(cd)?;
    let mut a = copy_to_slice::<f32>(x_src, cd)?;
    let (mi, ni) = (to_i32(op, rows)?, to_i32(op, kk)?);
    let mut s = alloc(cd, kk)?;
    let mut u = alloc(cd, if want_u { rows * kk } else { 1 })?;
    let mut vt = alloc(cd, if want_v { kk * kk } else { 1 })?;
    let mut rwork = alloc(cd, kk)?;
    let mut info = stream
        .alloc_zeros::<i32>(1)
        .map_err(|e| cu_err("alloc", e))?;
    let mut lw = 0i32;
    unsafe { cs::cusolverDnSgesvd_bufferSize(h.cu(), mi, ni, &mut lw) }
        .result()
        .map_err(|e| cu_err("gesvd_bufferSize", e))?;
    let mut work = alloc(cd, lw.max(1) as usize)?;
    let jobu = if want_u { b'S' } else { b'N' } as i8;
    let jobvt = if want_v { b'S' } else { b'N' } as i8;
    {
        let (pa, _1) = a.device_ptr_mut(&stream);
        let (ps, _2) = s.device_ptr_mut(&stream);
        let (pu, _3) = u.device_ptr_mut(&stream);
        let (pv, _4) = vt.device_ptr_mut(&stream);
        let (pw, _5) = work.device_ptr_mut(&stream);
        let (pr, _6) = rwork.device_ptr_mut(&stream);
        let (pi, _7) = info.device_ptr_mut(&stream);
        // SAFETY: every buffer is allocated on this stream with the sizes cuSOLVER documents
        // (a: rows*kk, s: kk, u: rows*kk, vt: kk*kk, work: lwork, rwork: kk; unreferenced factors
        // get a 1-element buffer).
        unsafe {
            cs::cusolverDnSgesvd(
                h.cu(),
                jobu,
                jobvt,
                mi,
                ni,
                pa as *mut f32,
                mi,
                ps as *mut f32,
                pu as *mut f32,
                mi,
                pv as *mut f32,
                ni,
                pw as *mut f32,
                lw,
                pr as *mut f32,
                pi as *mut i32,
            )
        }
        .result()
        .map_err(|e| cu_err("gesvd", e))?;
    }
    let inf = read_info(cd, &info)?;
    if inf != 0 {
        return Err(LinalgError::NoConvergence {
            op,
            msg: format!("cusolverDnSgesvd info = {inf}"),
        });
    }
    let u = want_u
        .then(|| wrap(u, cd, (kk, rows)).t()?.contiguous()) // [rows, kk]
        .transpose()?;
    let v = want_v.then(|| wrap(vt, cd, (kk, kk))); // row-major V_x: [kk, kk]
    Ok((u, wrap_vec(s, cd, kk)?, v))
}

/// `gesvdj` (econ) of the column-major `rows x kk` matrix stored in `x_src`; `None` when it did
/// not converge (`info > 0`; the caller falls back to `gesvd`, as torch does).
fn gesvdj(
    op: &'static str,
    x_src: &Tensor,
    cd: &CudaDevice,
    rows: usize,
    kk: usize,
    want_u: bool,
    want_v: bool,
) -> Result<Option<Factors>> {
    let stream = cd.cuda_stream();
    let h = solver(cd)?;
    let mut a = copy_to_slice::<f32>(x_src, cd)?;
    let (mi, ni) = (to_i32(op, rows)?, to_i32(op, kk)?);
    let vectors = want_u || want_v;
    let jobz = if vectors {
        cs::cusolverEigMode_t::CUSOLVER_EIG_MODE_VECTOR
    } else {
        cs::cusolverEigMode_t::CUSOLVER_EIG_MODE_NOVECTOR
    };
    let mut s = alloc(cd, kk)?;
    let mut u = alloc(cd, if vectors { rows * kk } else { 1 })?;
    let mut v = alloc(cd, if vectors { kk * kk } else { 1 })?;
    let mut info = stream
        .alloc_zeros::<i32>(1)
        .map_err(|e| cu_err("alloc", e))?;
    let params = GesvdjParams::new()?;
    let mut lw = 0i32;
    {
        let (pa, _1) = a.device_ptr_mut(&stream);
        let (ps, _2) = s.device_ptr_mut(&stream);
        let (pu, _3) = u.device_ptr_mut(&stream);
        let (pv, _4) = v.device_ptr_mut(&stream);
        // SAFETY: buffer-size query on valid device pointers of the documented sizes.
        unsafe {
            cs::cusolverDnSgesvdj_bufferSize(
                h.cu(),
                jobz,
                1,
                mi,
                ni,
                pa as *const f32,
                mi,
                ps as *const f32,
                pu as *const f32,
                mi,
                pv as *const f32,
                ni,
                &mut lw,
                params.0,
            )
        }
        .result()
        .map_err(|e| cu_err("gesvdj_bufferSize", e))?;
    }
    let mut work = alloc(cd, lw.max(1) as usize)?;
    {
        let (pa, _1) = a.device_ptr_mut(&stream);
        let (ps, _2) = s.device_ptr_mut(&stream);
        let (pu, _3) = u.device_ptr_mut(&stream);
        let (pv, _4) = v.device_ptr_mut(&stream);
        let (pw, _5) = work.device_ptr_mut(&stream);
        let (pi, _6) = info.device_ptr_mut(&stream);
        // SAFETY: as above; u: rows*kk (ldu = rows), v: kk*kk (ldv = kk), econ = 1.
        unsafe {
            cs::cusolverDnSgesvdj(
                h.cu(),
                jobz,
                1,
                mi,
                ni,
                pa as *mut f32,
                mi,
                ps as *mut f32,
                pu as *mut f32,
                mi,
                pv as *mut f32,
                ni,
                pw as *mut f32,
                lw,
                pi as *mut i32,
                params.0,
            )
        }
        .result()
        .map_err(|e| cu_err("gesvdj", e))?;
    }
    let inf = read_info(cd, &info)?;
    if inf > 0 {
        return Ok(None);
    }
    if inf < 0 {
        return Err(LinalgError::InvalidArgument {
            op,
            msg: format!("cusolverDnSgesvdj: parameter {} is wrong", -inf),
        });
    }
    let u = want_u
        .then(|| wrap(u, cd, (kk, rows)).t()?.contiguous()) // [rows, kk]
        .transpose()?;
    // gesvdj returns V (not V^T) column-major kk x kk: row-major that is V^T.
    let v = want_v
        .then(|| wrap(v, cd, (kk, kk)).t()?.contiguous())
        .transpose()?;
    Ok(Some((u, wrap_vec(s, cd, kk)?, v)))
}

fn wrap_vec(s: CudaSlice<f32>, cd: &CudaDevice, k: usize) -> Result<Tensor> {
    Ok(wrap(s, cd, (1, k)).flatten_all()?)
}

/// Owns a `gesvdjInfo_t` (default tolerance and sweeps, as torch).
struct GesvdjParams(cs::gesvdjInfo_t);

impl GesvdjParams {
    fn new() -> Result<Self> {
        let mut p: cs::gesvdjInfo_t = std::ptr::null_mut();
        // SAFETY: out-pointer to a local.
        unsafe { cs::cusolverDnCreateGesvdjInfo(&mut p) }
            .result()
            .map_err(|e| cu_err("CreateGesvdjInfo", e))?;
        Ok(Self(p))
    }
}

impl Drop for GesvdjParams {
    fn drop(&mut self) {
        // SAFETY: created by cusolverDnCreateGesvdjInfo, destroyed once.
        let _ = unsafe { cs::cusolverDnDestroyGesvdjInfo(self.0) };
    }
}

/// Householder thin QR of the finite f32 `y: [m, k]` (`m >= k`) on its CUDA device (cuSOLVER
/// `geqrf` + `orgqr`, f32): `Q: [m, k]` on the device and `R: [k, k]` (upper triangle of the
/// `geqrf` output) on the host as f64. Column signs follow LAPACK's convention (`R` may have
/// negative diagonal entries), as on the CPU path.
pub(crate) fn householder_qr(op: &'static str, y: &Tensor) -> Result<(Tensor, Mat<f64>)> {
    let cd = cuda_device(y).ok_or_else(|| LinalgError::InvalidArgument {
        op,
        msg: "tensor is not on a CUDA device".into(),
    })?;
    let (m, k) = y.dims2()?;
    let stream = cd.cuda_stream();
    let h = solver(cd)?;
    // row-major [k, m] of y^T is column-major m x k = y, lda = m
    let mut a = copy_to_slice::<f32>(&y.t()?, cd)?;
    let mut tau = alloc(cd, k)?;
    let mut info = stream
        .alloc_zeros::<i32>(1)
        .map_err(|e| cu_err("alloc", e))?;
    let (mi, ki) = (to_i32(op, m)?, to_i32(op, k)?);
    let (mut l1, mut l2) = (0i32, 0i32);
    {
        let (pa, _1) = a.device_ptr_mut(&stream);
        let (pt, _2) = tau.device_ptr_mut(&stream);
        // SAFETY: buffer-size queries on valid device pointers.
        unsafe {
            cs::cusolverDnSgeqrf_bufferSize(h.cu(), mi, ki, pa as *mut f32, mi, &mut l1)
                .result()
                .map_err(|e| cu_err("geqrf_bufferSize", e))?;
            cs::cusolverDnSorgqr_bufferSize(
                h.cu(),
                mi,
                ki,
                ki,
                pa as *const f32,
                mi,
                pt as *const f32,
                &mut l2,
            )
            .result()
            .map_err(|e| cu_err("orgqr_bufferSize", e))?;
        }
    }
    let lw = l1.max(l2).max(1);
    let mut work = alloc(cd, lw as usize)?;
    {
        let (pa, _1) = a.device_ptr_mut(&stream);
        let (pt, _2) = tau.device_ptr_mut(&stream);
        let (pw, _3) = work.device_ptr_mut(&stream);
        let (pi, _4) = info.device_ptr_mut(&stream);
        // SAFETY: a: m*k (lda = m), tau: k, work: lwork, info: 1, all on this stream.
        unsafe {
            cs::cusolverDnSgeqrf(
                h.cu(),
                mi,
                ki,
                pa as *mut f32,
                mi,
                pt as *mut f32,
                pw as *mut f32,
                lw,
                pi as *mut i32,
            )
        }
        .result()
        .map_err(|e| cu_err("geqrf", e))?;
    }
    // R: the upper triangle of the first k rows of the column-major result. Row-major [k, m]
    // holds entry (i, j) at [j][i]; keep columns 0..k -> [k(j), k(i)] = R^T.
    let r_t = wrap(
        stream.clone_dtod(&a).map_err(|e| cu_err("copy", e))?,
        cd,
        (k, m),
    )
    .narrow(1, 0, k)?
    .contiguous()?;
    let r_t = crate::host::to_mat_f64(&r_t)?;
    let r = Mat::from_fn(k, k, |i, j| if i <= j { r_t[(j, i)] } else { 0.0 });
    {
        let (pa, _1) = a.device_ptr_mut(&stream);
        let (pt, _2) = tau.device_ptr_mut(&stream);
        let (pw, _3) = work.device_ptr_mut(&stream);
        let (pi, _4) = info.device_ptr_mut(&stream);
        // SAFETY: as for geqrf; orgqr overwrites a with the explicit m x k Q.
        unsafe {
            cs::cusolverDnSorgqr(
                h.cu(),
                mi,
                ki,
                ki,
                pa as *mut f32,
                mi,
                pt as *const f32,
                pw as *mut f32,
                lw,
                pi as *mut i32,
            )
        }
        .result()
        .map_err(|e| cu_err("orgqr", e))?;
    }
    let inf = read_info(cd, &info)?;
    if inf != 0 {
        return Err(LinalgError::InvalidArgument {
            op,
            msg: format!("cuSOLVER geqrf/orgqr info = {inf}"),
        });
    }
    Ok((wrap(a, cd, (k, m)).t()?.contiguous()?, r))
}

/// `svd_subspace` with an explicit cuSOLVER driver (for benchmarks; [`crate::svd::svd_subspace`]
/// uses [`SvdDriver::Gesvdj`] with the `gesvd` fallback). `a` must be on a CUDA device.
pub fn svd_subspace_with(
    a: &Tensor,
    rank: usize,
    side: crate::Side,
    driver: SvdDriver,
) -> Result<Tensor> {
    let op = "svd_subspace";
    let a = crate::validate::matrix_f32(op, a)?;
    let (m, n) = a.dims2()?;
    crate::validate::rank(op, rank, m, n)?;
    crate::validate::finite(op, &a)?;
    subspace(op, &a, rank, side, driver)
}

/// Top-`rank` columns of the wanted singular vectors (validated, finite `a` on CUDA).
pub(crate) fn subspace(
    op: &'static str,
    a: &Tensor,
    rank: usize,
    side: crate::Side,
    driver: SvdDriver,
) -> Result<Tensor> {
    let want = Want {
        left: side == crate::Side::Left,
        right: side == crate::Side::Right,
    };
    let f = thin_svd(op, a, want, driver)?;
    let p = match side {
        crate::Side::Left => f.u,
        crate::Side::Right => f.v,
    }
    .ok_or_else(|| LinalgError::InvalidArgument {
        op,
        msg: "singular vectors were not computed".into(),
    })?;
    Ok(p.narrow(1, 0, rank)?.contiguous()?)
}
