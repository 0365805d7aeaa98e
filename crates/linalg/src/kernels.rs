//! Fused CUDA kernels (feature `cuda`): the PTX of `kernels/crosslore.cu` (built by `build.rs`
//! with nvcc), loaded once per device through candle's custom-module cache, and typed launchers.
//! Each launcher has a CPU twin elsewhere in the workspace (named in its doc) and a CUDA-vs-CPU
//! check in `crosslore-bench gpu-check`.
//!
//! Tensors are passed as raw device pointers of their contiguous storage (offset applied); the
//! launchers check device, dtype, contiguity and lengths first. Kernels that update tensors in
//! place (`adamw`, `residual_tracked`, `scatter_sub`) write through those pointers: the caller
//! owns the state tensors, and candle `Var`s are updated in place by design (as `Var::set`).
//! Everything runs on the device's candle stream, so ordering with candle ops is preserved.
use candle_core::backend::BackendDevice;
use candle_core::{CudaDevice, CudaStorage, DType, Device, Storage, Tensor};
use cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};

use crate::{LinalgError, Result};

pub(crate) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/crosslore.ptx"));
pub(crate) const MODULE: &str = "crosslore_kernels";

fn err(what: &str, e: impl std::fmt::Debug) -> LinalgError {
    LinalgError::Candle(candle_core::Error::Msg(format!(
        "CUDA kernel {what}: {e:?}"
    )))
}

fn bad(op: &'static str, msg: String) -> LinalgError {
    LinalgError::InvalidArgument { op, msg }
}

/// The CUDA device of `t` (an error naming `op` when `t` is elsewhere). Shared with the other
/// crates that launch their own PTX (`crosslore-fused`).
pub fn cuda_dev<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a CudaDevice> {
    match t.device() {
        Device::Cuda(cd) => Ok(cd),
        _ => Err(bad(op, "tensor is not on a CUDA device".into())),
    }
}

/// Raw device pointer of the contiguous storage of `t` (f32, bf16 or u32), offset applied.
/// Valid while `t` lives.
pub fn ptr(op: &'static str, t: &Tensor, cd: &CudaDevice) -> Result<u64> {
    if !matches!(t.device(), Device::Cuda(d) if d.same_device(cd)) {
        return Err(bad(op, "tensors are on different devices".into()));
    }
    let (st, layout) = t.storage_and_layout();
    if !layout.is_contiguous() {
        return Err(bad(op, format!("tensor {:?} is not contiguous", t.dims())));
    }
    let off = layout.start_offset() as u64;
    let Storage::Cuda(cs) = &*st else {
        return Err(bad(op, "tensor is not on a CUDA device".into()));
    };
    let stream = cd.cuda_stream();
    let p = match t.dtype() {
        DType::F32 => cs.as_cuda_slice::<f32>()?.device_ptr(&stream).0 + 4 * off,
        DType::BF16 => cs.as_cuda_slice::<half::bf16>()?.device_ptr(&stream).0 + 2 * off,
        DType::U32 => cs.as_cuda_slice::<u32>()?.device_ptr(&stream).0 + 4 * off,
        d => return Err(bad(op, format!("unsupported dtype {d:?}"))),
    };
    Ok(p)
}

pub(crate) fn grid(threads: u64) -> LaunchConfig {
    const BLOCK: u64 = 256;
    // Grid-stride kernels: enough blocks to fill an H200 (132 SMs) several times over.
    let blocks = threads.div_ceil(BLOCK).clamp(1, 132 * 32) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A kernel name with the dtype suffix of `t` (`_f32` or `_bf16`).
pub fn typed(op: &'static str, base: &str, t: &Tensor) -> Result<String> {
    match t.dtype() {
        DType::F32 => Ok(format!("{base}_f32")),
        DType::BF16 => Ok(format!("{base}_bf16")),
        d => Err(bad(op, format!("expected f32 or bf16, got {d:?}"))),
    }
}

/// Launches kernel `$name` of the PTX module `($module, $ptx)` (loaded once per device through
/// candle's custom-module cache) on the device's candle stream with the given arguments, in
/// order. Errors convert from `candle_core::Error` at the caller's `?`.
#[macro_export]
macro_rules! launch_ptx {
    ($cd:expr, ($module:expr, $ptx:expr), $name:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let f = $cd.get_or_load_custom_func(&$name, $module, $ptx)?;
        let mut b = f.builder();
        $( b.arg(&$arg); )+
        let cfg = $cfg;
        // SAFETY: argument types and order follow the kernel's signature in the .cu file; every
        // pointer addresses a live, contiguous buffer of the length passed (checked by callers).
        unsafe { b.launch(cfg) }.map_err(|e| {
            candle_core::Error::Msg(format!("CUDA kernel {}: {e:?}", $name))
        })?;
    }};
}

macro_rules! launch {
    ($cd:expr, $name:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {
        $crate::launch_ptx!($cd, (MODULE, PTX), $name, $cfg, $($arg),+)
    };
}

/// An uninitialised contiguous tensor of `dtype` (f32, bf16 or u32) and `dims` on `cd`, for
/// outputs that a kernel writes entirely before anything reads them.
pub fn empty(cd: &CudaDevice, dtype: DType, dims: &[usize]) -> Result<Tensor> {
    let n = dims.iter().product::<usize>().max(1);
    // SAFETY (all arms): the caller's kernel writes every element before it is read.
    let slice = match dtype {
        DType::F32 => CudaStorage::wrap_cuda_slice(unsafe { cd.alloc::<f32>(n)? }, cd.clone()),
        DType::BF16 => {
            CudaStorage::wrap_cuda_slice(unsafe { cd.alloc::<half::bf16>(n)? }, cd.clone())
        }
        DType::U32 => CudaStorage::wrap_cuda_slice(unsafe { cd.alloc::<u32>(n)? }, cd.clone()),
        d => return Err(bad("empty", format!("unsupported dtype {d:?}"))),
    };
    Ok(Tensor::from_storage(
        Storage::Cuda(slice),
        dims,
        candle_core::op::BackpropOp::none(),
        false,
    ))
}

/// `[rows, cols]` f32 tensor holding entries `0..rows*cols` (row-major) of the counter-based
/// normal stream `key`: the device twin of [`crate::rng::counter_normal_vec`] (within 1 f32 ulp).
pub fn counter_normal(key: u64, rows: usize, cols: usize, cd: &CudaDevice) -> Result<Tensor> {
    let out = empty(cd, DType::F32, &[rows, cols])?;
    let (po, n64) = (ptr("counter_normal", &out, cd)?, (rows * cols) as u64);
    let name = "counter_normal_f32".to_string();
    launch!(cd, name, grid(n64), po, key, n64);
    Ok(out)
}

/// True when `t` (f32 or bf16, contiguous, on CUDA) holds a NaN or an infinity. One flag
/// reduction plus a 4-byte copy to the host (a synchronisation).
pub fn any_nonfinite(t: &Tensor) -> Result<bool> {
    Ok(nonfinite_flags("any_nonfinite", &[t])?.contains(&true))
}

/// [`any_nonfinite`] of several tensors (each f32 or bf16, contiguous, on the same CUDA device)
/// with ONE synchronisation: each tensor's flag kernel writes its own slot of one flag buffer,
/// which is copied to the host once. `out[i]` is true when `ts[i]` holds a NaN or an infinity.
pub fn any_nonfinite_many(ts: &[&Tensor]) -> Result<Vec<bool>> {
    nonfinite_flags("any_nonfinite_many", ts)
}

/// The flags of [`any_nonfinite_many`] (errors name `op`).
fn nonfinite_flags(op: &'static str, ts: &[&Tensor]) -> Result<Vec<bool>> {
    let Some(first) = ts.first() else {
        return Ok(Vec::new());
    };
    let cd = cuda_dev(op, first)?;
    let stream = cd.cuda_stream();
    let flags = stream
        .alloc_zeros::<i32>(ts.len())
        .map_err(|e| err("alloc", e))?;
    let base = flags.device_ptr(&stream).0;
    for (i, t) in ts.iter().enumerate() {
        let name = typed(op, "nonfinite", t)?;
        let (p, n) = (ptr(op, t, cd)?, t.elem_count() as u64);
        // SAFETY: p addresses n elements of t's dtype; slot is the i32 flags[i] of a buffer of
        // ts.len() entries that lives until the copy below.
        let slot = base + 4 * i as u64; // &flags[i]
        launch!(cd, name, grid(n), p, n, slot);
    }
    let h = stream.clone_dtoh(&flags).map_err(|e| err("flag copy", e))?;
    Ok(h.iter().map(|&f| f != 0).collect())
}

/// Blocks of the sum-of-squares partial pass: a fixed count (not `grid(n)`) so that the partials,
/// and hence the result, are the same bits for every run on every card.
const SQSUM_BLOCKS: u32 = 1024;

/// `sum(t^2)` of each tensor (f32 or bf16, contiguous, on one CUDA device) with ONE
/// synchronisation: a partial-sum kernel per tensor (f32 per thread, fixed grid), one kernel
/// summing each tensor's partials in f64 in a fixed order, one copy of `ts.len()` f64 to the host.
/// Deterministic. Device twin of the trainer's gradient norm (`crosslore_train::grads::sq_norms`:
/// f32 squares, row sums, then a sum; the two agree to f32 rounding of the summation order).
/// Reads each gradient once (2 bytes per bf16 entry) instead of candle's convert + square + row
/// sums + sum, which wrote and read f32 copies of every gradient.
pub fn sq_norms_many(ts: &[&Tensor]) -> Result<Vec<f64>> {
    let op = "sq_norms_many";
    let Some(first) = ts.first() else {
        return Ok(Vec::new());
    };
    let cd = cuda_dev(op, first)?;
    let stream = cd.cuda_stream();
    let blocks = SQSUM_BLOCKS as usize;
    let partial = stream
        .alloc_zeros::<f32>(ts.len() * blocks)
        .map_err(|e| err("alloc", e))?;
    let out = stream
        .alloc_zeros::<f64>(ts.len())
        .map_err(|e| err("alloc", e))?;
    let base = partial.device_ptr(&stream).0;
    let cfg = LaunchConfig {
        grid_dim: (SQSUM_BLOCKS, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    for (i, t) in ts.iter().enumerate() {
        let name = typed(op, "sqsum_partial", t)?;
        let (p, n) = (ptr(op, t, cd)?, t.elem_count() as u64);
        // SAFETY: p addresses n elements of t's dtype; slot is &partial[i * blocks], SQSUM_BLOCKS
        // f32 of a buffer that lives until the copy below.
        let slot = base + 4 * (i * blocks) as u64;
        launch!(cd, name, cfg, p, n, slot);
    }
    let tensors = ts.len() as u32;
    let po = out.device_ptr(&stream).0;
    let fin = LaunchConfig {
        grid_dim: (tensors.div_ceil(128), 1, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: partial holds tensors * SQSUM_BLOCKS f32, out tensors f64, both alive here.
    launch!(
        cd,
        "sqsum_final".to_string(),
        fin,
        base,
        SQSUM_BLOCKS,
        tensors,
        po
    );
    stream.clone_dtoh(&out).map_err(|e| err("sum copy", e))
}

/// Scalars of one fused AdamW step (torch's single-tensor formula; see `crosslore_optim::adamw`).
#[derive(Debug, Clone, Copy)]
pub struct AdamWScalars {
    /// `1 - lr * weight_decay`.
    pub decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    /// `lr / (1 - beta1^t)`.
    pub step: f32,
    /// `1 / sqrt(1 - beta2^t)`.
    pub inv_sqrt_bc2: f32,
    pub eps: f32,
}

/// In place: `m`, `v` (f32) and `w` (f32 or bf16, same dtype as `g`) advance by one AdamW step
/// with gradient `g`. All contiguous, same element count, on one CUDA device. Device twin of the
/// candle-op path of `crosslore_optim::adamw::AdamW::step_param`.
pub fn adamw(w: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: &AdamWScalars) -> Result<()> {
    let op = "adamw";
    let cd = cuda_dev(op, w)?;
    let n = w.elem_count();
    if g.dtype() != w.dtype() || m.dtype() != DType::F32 || v.dtype() != DType::F32 {
        return Err(bad(op, "expected w, g of one dtype and f32 moments".into()));
    }
    if [g, m, v].iter().any(|t| t.elem_count() != n) {
        return Err(bad(op, "w, g, m, v differ in size".into()));
    }
    let name = typed(op, "adamw", w)?;
    let (pw, pg, pm, pv) = (
        ptr(op, w, cd)?,
        ptr(op, g, cd)?,
        ptr(op, m, cd)?,
        ptr(op, v, cd)?,
    );
    let n64 = n as u64;
    let (omb1, omb2) = (1.0 - s.beta1, 1.0 - s.beta2);
    launch!(
        cd,
        name,
        grid(n64),
        pw,
        pg,
        pm,
        pv,
        n64,
        s.decay,
        omb1,
        s.beta2,
        omb2,
        s.step,
        s.inv_sqrt_bc2,
        s.eps
    );
    Ok(())
}

/// `(i, j, r, n)` checks of a sampled product of `a: [m, r]`, `b: [n, r]` (f32) at u32 `idx`.
fn check_sampled(op: &'static str, a: &Tensor, b: &Tensor, idx: &Tensor) -> Result<(u32, u32)> {
    let (m, r) = a.dims2()?;
    let (n, rb) = b.dims2()?;
    if r != rb || a.dtype() != DType::F32 || b.dtype() != DType::F32 || idx.dtype() != DType::U32 {
        return Err(bad(
            op,
            "expected f32 a: [m, r], b: [n, r] and u32 indices".into(),
        ));
    }
    if m.checked_mul(n).is_none_or(|mn| mn > u32::MAX as usize + 1) {
        return Err(bad(op, format!("[{m}, {n}] exceeds u32 flat indices")));
    }
    Ok((n as u32, r as u32))
}

/// `out[l] = (a b^T)[idx[l]]` for flat indices `i * n + j` (`a: [m, r]`, `b: [n, r]`, f32,
/// contiguous; indices must be `< m * n`, as `crosslore_optim::residual` keeps them). One warp per
/// index. Device twin of `crosslore_optim::residual::sampled_product`.
pub fn sampled_product(a: &Tensor, b: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let op = "sampled_product";
    let cd = cuda_dev(op, a)?;
    let (n, r) = check_sampled(op, a, b, idx)?;
    let len = idx.dims1()?;
    let out = empty(cd, DType::F32, &[len])?;
    if len == 0 {
        return Ok(out);
    }
    let (pa, pb, pi, po) = (
        ptr(op, a, cd)?,
        ptr(op, b, cd)?,
        ptr(op, idx, cd)?,
        ptr(op, &out, cd)?,
    );
    let len64 = len as u64;
    let name = "sampled_product_f32".to_string();
    launch!(cd, name, grid(32 * len64), pa, pb, pi, po, len64, n, r);
    Ok(out)
}

/// Scalars of the TrackedMoments residual step (`crosslore_optim::residual`).
#[derive(Debug, Clone, Copy)]
pub struct ResidualScalars {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `sqrt(1 - beta2^t) / (1 - beta1^t)`.
    pub step: f32,
}

/// TrackedMoments residual step at the index set `idx` (u32, `[len]`), in place on `dm`, `dv`
/// (f32 `[len]`); returns `delta: [len]`. `g` (f32 or bf16, contiguous, `m * n` elements) is read
/// at `idx` only; the low-rank term is the sampled product of `a: [m, r]`, `b: [n, r]`. Device twin
/// of `crosslore_optim::residual::SparseResidual::update_tracked`.
pub fn residual_tracked(
    g: &Tensor,
    idx: &Tensor,
    dm: &Tensor,
    dv: &Tensor,
    a: &Tensor,
    b: &Tensor,
    s: &ResidualScalars,
) -> Result<Tensor> {
    let op = "residual_tracked";
    let cd = cuda_dev(op, g)?;
    let (n, r) = check_sampled(op, a, b, idx)?;
    let len = idx.dims1()?;
    if dm.dims() != [len]
        || dv.dims() != [len]
        || dm.dtype() != DType::F32
        || dv.dtype() != DType::F32
    {
        return Err(bad(op, format!("dm, dv must be f32 [{len}]")));
    }
    if g.elem_count() != a.dims()[0] * n as usize {
        return Err(bad(
            op,
            "gradient size differs from the factors' m * n".into(),
        ));
    }
    let delta = empty(cd, DType::F32, &[len])?;
    if len == 0 {
        return Ok(delta);
    }
    let name = typed(op, "residual_tracked", g)?;
    let (pg, pi, pdm, pdv, pd) = (
        ptr(op, g, cd)?,
        ptr(op, idx, cd)?,
        ptr(op, dm, cd)?,
        ptr(op, dv, cd)?,
        ptr(op, &delta, cd)?,
    );
    let (pa, pb) = (ptr(op, a, cd)?, ptr(op, b, cd)?);
    let len64 = len as u64;
    let (omb1, omb2) = (1.0 - s.beta1, 1.0 - s.beta2);
    launch!(
        cd,
        name,
        grid(32 * len64),
        pg,
        pi,
        pdm,
        pdv,
        pd,
        pa,
        pb,
        len64,
        n,
        r,
        s.beta1,
        omb1,
        s.beta2,
        omb2,
        s.eps,
        s.step
    );
    Ok(delta)
}

/// In place: `w.flat[idx[l]] += cast(-coef * delta[l])` (`w` f32 or bf16, contiguous; `idx`
/// distinct u32 flat indices `< w.elem_count()`; `delta` f32 `[len]`). Device twin of
/// `crosslore_optim::residual::SparseResidual::apply` (candle `scatter_add_set`).
pub fn scatter_sub(w: &Tensor, idx: &Tensor, delta: &Tensor, coef: f32) -> Result<()> {
    let op = "scatter_sub";
    let cd = cuda_dev(op, w)?;
    let len = idx.dims1()?;
    if idx.dtype() != DType::U32 || delta.dims() != [len] || delta.dtype() != DType::F32 {
        return Err(bad(
            op,
            format!("expected u32 idx and f32 delta of length {len}"),
        ));
    }
    if len == 0 {
        return Ok(());
    }
    let name = typed(op, "scatter_sub", w)?;
    let (pw, pi, pd) = (ptr(op, w, cd)?, ptr(op, idx, cd)?, ptr(op, delta, cd)?);
    let len64 = len as u64;
    launch!(cd, name, grid(len64), pw, pi, pd, len64, coef);
    Ok(())
}

/// In place: `w = (w - c * u) * d` (`w`, `u` both f32 or both bf16, same element count,
/// contiguous; arithmetic in f32).
/// Device twin of `crosslore_optim`'s low-rank commit (`W - step * scale * project_back(N)`,
/// then the weight decay `d = 1 - lr * wd`).
pub fn lowrank_update(w: &Tensor, u: &Tensor, c: f32, d: f32) -> Result<()> {
    let op = "lowrank_update";
    let cd = cuda_dev(op, w)?;
    if u.dtype() != w.dtype() || u.elem_count() != w.elem_count() {
        return Err(bad(
            op,
            format!("u must be {:?} with {} elements", w.dtype(), w.elem_count()),
        ));
    }
    let name = typed(op, "lowrank_update", w)?;
    let (pw, pu) = (ptr(op, w, cd)?, ptr(op, u, cd)?);
    let n64 = w.elem_count() as u64;
    launch!(cd, name, grid(n64), pw, pu, n64, c, d);
    Ok(())
}

/// Low-rank Adam moments, out of place (all f32, contiguous, same shape):
/// `m1 = b1 m + (1-b1) r`, `v1 = b2 v + (1-b2) r^2`, `n = m1 / (sqrt(v1) + eps)`; returns
/// `(m1, v1, n)`. Device twin of the candle-op path of `crosslore_optim::galore` (`advance`).
pub fn lowrank_adam(
    r: &Tensor,
    m: &Tensor,
    v: &Tensor,
    beta1: f32,
    beta2: f32,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "lowrank_adam";
    let cd = cuda_dev(op, r)?;
    if [r, m, v]
        .iter()
        .any(|t| t.dtype() != DType::F32 || t.dims() != r.dims())
    {
        return Err(bad(op, "r, m, v must be f32 of one shape".into()));
    }
    let n = r.elem_count();
    let dims = r.dims().to_vec();
    let (m1, v1, nn) = (
        empty(cd, DType::F32, &dims)?,
        empty(cd, DType::F32, &dims)?,
        empty(cd, DType::F32, &dims)?,
    );
    let (pr, pm, pv) = (ptr(op, r, cd)?, ptr(op, m, cd)?, ptr(op, v, cd)?);
    let (pm1, pv1, pn) = (ptr(op, &m1, cd)?, ptr(op, &v1, cd)?, ptr(op, &nn, cd)?);
    let n64 = n as u64;
    let (omb1, omb2) = (1.0 - beta1, 1.0 - beta2);
    let name = "lowrank_adam_f32".to_string();
    launch!(
        cd,
        name,
        grid(n64),
        pr,
        pm,
        pv,
        pm1,
        pv1,
        pn,
        n64,
        beta1,
        omb1,
        beta2,
        omb2,
        eps
    );
    Ok((m1, v1, nn))
}
