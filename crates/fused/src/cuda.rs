//! CUDA launchers of the fused operations (feature `cuda`): the PTX of `kernels/fused.cu` (built
//! by `build.rs` with nvcc for `$CUDA_COMPUTE_CAP`), loaded once per device through candle's
//! custom-module cache, launched on the device's candle stream (so ordering with candle ops is
//! kept) with the raw-pointer helpers of `crosslore_linalg::kernels`.
//!
//! The checked entry points of the other modules validate shapes, dtypes, contiguity and devices
//! before calling these; the launchers take the same arguments and return the same types as
//! [`crate::reference`]. Outputs are fresh uninitialised tensors that the kernels write entirely;
//! no launcher synchronises with the host. Every kernel loads and stores 16 bytes at a time when
//! all its pointers are 16-byte aligned and the row lengths divisible by the vector width
//! (4 f32 / 8 bf16), else element by element.
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor};
use crosslore_linalg::kernels::{cuda_dev, empty, ptr, typed};
use crosslore_linalg::launch_ptx;
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::attention::AttnMask;
use crate::error::{invalid, Result};
use crate::rmsnorm::RmsNormOut;
use crate::xent::XentOut;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused.ptx"));
const MODULE: &str = "crosslore_fused";

macro_rules! launch {
    ($cd:expr, $name:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {
        launch_ptx!($cd, (MODULE, PTX), $name, $cfg, $($arg),+)
    };
}

fn cfg(blocks: u32, threads: (u32, u32), smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.max(1), 1, 1),
        block_dim: (threads.0, threads.1, 1),
        shared_mem_bytes: smem,
    }
}

/// Streaming multiprocessors of the device (132 on an H200).
fn sm_count(cd: &candle_core::CudaDevice) -> u32 {
    cd.cuda_stream()
        .context()
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_or(132, |n| n.max(1) as u32)
}

/// Blocks of 256 threads for a grid-stride loop over `items` (at most 16 per SM).
fn stride_blocks(items: u64, sms: u32) -> u32 {
    items.div_ceil(256).clamp(1, 16 * sms as u64) as u32
}

/// Elements of `dtype` per 16-byte vector.
fn width(dtype: DType) -> usize {
    16 / dtype.size_in_bytes()
}

/// 1 when every pointer is 16-byte aligned and every length a multiple of the vector width.
fn vec_flag(dtype: DType, ptrs: &[u64], lens: &[usize]) -> i32 {
    let v = width(dtype);
    i32::from(ptrs.iter().all(|p| p % 16 == 0) && lens.iter().all(|l| l % v == 0))
}

/// `n` as an i32 kernel argument.
fn int(op: &'static str, what: &str, n: usize) -> Result<i32> {
    i32::try_from(n)
        .map_err(|_| invalid(op, format!("{what} ({n}) exceeds the kernels' i32 range")))
}

/// A grid size (number of blocks).
fn blocks(op: &'static str, n: usize) -> Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|&b| b < i32::MAX as u32)
        .ok_or_else(|| invalid(op, format!("{n} rows exceed one grid")))
}

pub fn rms_norm_fwd(x: &Tensor, w: &Tensor, eps: f32) -> Result<RmsNormOut> {
    const OP: &str = "rms_norm_fwd";
    let cd = cuda_dev(OP, x)?;
    let (rows, h) = x.dims2()?;
    let y = empty(cd, x.dtype(), &[rows, h])?;
    let rstd = empty(cd, DType::F32, &[rows])?;
    if rows > 0 {
        let name = typed(OP, "rms_norm_fwd", x)?;
        let (px, pw, py, pr) = (
            ptr(OP, x, cd)?,
            ptr(OP, w, cd)?,
            ptr(OP, &y, cd)?,
            ptr(OP, &rstd, cd)?,
        );
        let vec = vec_flag(x.dtype(), &[px, pw, py], &[h]);
        let h32 = int(OP, "hidden", h)?;
        launch!(
            cd,
            name,
            cfg(blocks(OP, rows)?, (256, 1), 0),
            px,
            pw,
            py,
            pr,
            h32,
            eps,
            vec
        );
    }
    Ok(RmsNormOut { y, rstd })
}

pub fn rms_norm_bwd(
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    rstd: &Tensor,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "rms_norm_bwd";
    const THREADS: usize = 256;
    let cd = cuda_dev(OP, x)?;
    let (rows, h) = x.dims2()?;
    let dx = empty(cd, x.dtype(), &[rows, h])?;
    let dw = empty(cd, DType::F32, &[h])?;
    if h == 0 {
        return Ok((dx, dw));
    }
    let sms = sm_count(cd) as usize;
    // Blocks of the dx kernel: each accumulates dw over its rows; `col_sum` adds the partials.
    let g = rows.clamp(1, 4 * sms);
    let part = empty(cd, DType::F32, &[g, h])?;
    let (pdy, px, pw, pr, pdx, pp) = (
        ptr(OP, dy, cd)?,
        ptr(OP, x, cd)?,
        ptr(OP, w, cd)?,
        ptr(OP, rstd, cd)?,
        ptr(OP, &dx, cd)?,
        ptr(OP, &part, cd)?,
    );
    let vec = vec_flag(x.dtype(), &[pdy, px, pw, pdx], &[h]);
    let v = if vec == 1 { width(x.dtype()) } else { 1 };
    // One f32 per column, rounded up to whole chunks of THREADS * v.
    let smem = h.div_ceil(THREADS * v) * THREADS * v * 4;
    let smem32 = u32::try_from(smem)
        .map_err(|_| invalid(OP, format!("hidden size {h} needs too much shared memory")))?;
    let name = typed(OP, "rms_norm_bwd", x)?;
    if smem > 48 * 1024 {
        let f = cd.get_or_load_custom_func(&name, MODULE, PTX)?;
        f.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )
        .map_err(|e| {
            invalid(
                OP,
                format!("hidden size {h}: {smem} bytes of shared memory refused ({e:?})"),
            )
        })?;
    }
    let (rows32, h32, g32) = (int(OP, "rows", rows)?, int(OP, "hidden", h)?, g as i32);
    launch!(
        cd,
        name,
        cfg(g as u32, (THREADS as u32, 1), smem32),
        pdy,
        px,
        pw,
        pr,
        pdx,
        pp,
        rows32,
        h32,
        vec
    );
    let pdw = ptr(OP, &dw, cd)?;
    let cols = "col_sum_f32".to_string();
    launch!(
        cd,
        cols,
        cfg(h.div_ceil(32) as u32, (32, 8), 0),
        pp,
        pdw,
        g32,
        h32
    );
    Ok((dx, dw))
}

/// RoPE forward (`FWD`: `[b, s, n, d]` -> `[b, n, s, d]`) or backward (the reverse).
fn rope(op: &'static str, x: &Tensor, cos: &Tensor, sin: &Tensor, fwd: bool) -> Result<Tensor> {
    let cd = cuda_dev(op, x)?;
    let (b, a1, a2, d) = x.dims4()?;
    // x: [b, s, n, d] (forward) or [b, n, s, d] (backward).
    let (s, n) = if fwd { (a1, a2) } else { (a2, a1) };
    let out_dims = if fwd { [b, n, s, d] } else { [b, s, n, d] };
    let out = empty(cd, x.dtype(), &out_dims)?;
    if x.elem_count() == 0 {
        return Ok(out);
    }
    let (px, pc, ps, po) = (
        ptr(op, x, cd)?,
        ptr(op, cos, cd)?,
        ptr(op, sin, cd)?,
        ptr(op, &out, cd)?,
    );
    let vec = vec_flag(x.dtype(), &[px, pc, ps, po], &[d / 2]);
    let v = if vec == 1 { width(x.dtype()) } else { 1 };
    let items = (b * s * n * (d / 2) / v) as u64;
    if items > u32::MAX as u64 {
        return Err(invalid(
            op,
            format!("{items} work items exceed the kernel's u32 indices"),
        ));
    }
    let name = typed(op, if fwd { "rope_fwd" } else { "rope_bwd" }, x)?;
    let (s32, n32, d32) = (int(op, "s", s)?, int(op, "heads", n)?, int(op, "d", d)?);
    launch!(
        cd,
        name,
        cfg(stride_blocks(items, sm_count(cd)), (256, 1), 0),
        px,
        pc,
        ps,
        po,
        s32,
        n32,
        d32,
        items,
        vec
    );
    Ok(out)
}

pub fn rope_fwd(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    rope("rope_fwd", x, cos, sin, true)
}

pub fn rope_bwd(dy: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    rope("rope_bwd", dy, cos, sin, false)
}

pub fn swiglu_fwd(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    const OP: &str = "swiglu_fwd";
    let cd = cuda_dev(OP, g)?;
    let h = empty(cd, g.dtype(), g.dims())?;
    let n = g.elem_count();
    if n == 0 {
        return Ok(h);
    }
    let (pg, pu, ph) = (ptr(OP, g, cd)?, ptr(OP, u, cd)?, ptr(OP, &h, cd)?);
    let vec = vec_flag(g.dtype(), &[pg, pu, ph], &[n]);
    let name = typed(OP, "swiglu_fwd", g)?;
    let n64 = n as u64;
    let items = if vec == 1 { n / width(g.dtype()) } else { n } as u64;
    let grid = cfg(stride_blocks(items, sm_count(cd)), (256, 1), 0);
    launch!(cd, name, grid, pg, pu, ph, n64, vec);
    Ok(h)
}

pub fn swiglu_bwd(dh: &Tensor, g: &Tensor, u: &Tensor) -> Result<(Tensor, Tensor)> {
    const OP: &str = "swiglu_bwd";
    let cd = cuda_dev(OP, g)?;
    let dg = empty(cd, g.dtype(), g.dims())?;
    let du = empty(cd, g.dtype(), g.dims())?;
    let n = g.elem_count();
    if n == 0 {
        return Ok((dg, du));
    }
    let (pdh, pg, pu) = (ptr(OP, dh, cd)?, ptr(OP, g, cd)?, ptr(OP, u, cd)?);
    let (pdg, pdu) = (ptr(OP, &dg, cd)?, ptr(OP, &du, cd)?);
    let vec = vec_flag(g.dtype(), &[pdh, pg, pu, pdg, pdu], &[n]);
    let name = typed(OP, "swiglu_bwd", g)?;
    let n64 = n as u64;
    let items = if vec == 1 { n / width(g.dtype()) } else { n } as u64;
    let grid = cfg(stride_blocks(items, sm_count(cd)), (256, 1), 0);
    launch!(cd, name, grid, pdh, pg, pu, pdg, pdu, n64, vec);
    Ok((dg, du))
}

/// Warps (rows) per block of the softmax kernels (their launch bounds: 256 threads).
const SOFTMAX_WARPS: usize = 8;

/// Whether softmax and cross-entropy rows that fit are held in registers between the kernels'
/// two passes (one global read) instead of being read twice.
static ROW_CACHE: AtomicBool = AtomicBool::new(true);

/// Turns the register-held rows of the softmax and cross-entropy kernels on (default) or off
/// (two passes over global memory), process-wide; both give the same results. For A/B timing
/// (`crosslore-bench fused-ops`): on the H200 neither was shown faster yet.
pub fn set_row_cache(on: bool) {
    ROW_CACHE.store(on, Ordering::Relaxed);
}

fn row_cache() -> bool {
    ROW_CACHE.load(Ordering::Relaxed)
}

/// Vectors per lane when a softmax row of length `s` is held in registers (1 or 2), else 0
/// (two passes over global memory; also the element-wise path).
fn cached_chunks(dtype: DType, vec: i32, s: usize) -> i32 {
    match (vec == 1 && row_cache(), s.div_ceil(32 * width(dtype))) {
        (true, 1) => 1,
        (true, 2) => 2,
        _ => 0,
    }
}

pub fn causal_softmax_fwd(scores: &Tensor, mask: AttnMask, scale: f32) -> Result<Tensor> {
    const OP: &str = "causal_softmax_fwd";
    let cd = cuda_dev(OP, scores)?;
    // [b, n_kv, g * s, s]
    let (b, heads, rows, s) = scores.dims4()?;
    let p = empty(cd, scores.dtype(), scores.dims())?;
    let total = b * heads * rows;
    if total == 0 || s == 0 {
        return Ok(p);
    }
    let (px, pp) = (ptr(OP, scores, cd)?, ptr(OP, &p, cd)?);
    let pm = match mask {
        AttnMask::Causal => 0u64,
        AttnMask::CausalKeys(m) => ptr(OP, m, cd)?,
    };
    let vec = vec_flag(scores.dtype(), &[px, pp], &[s]);
    let ch = cached_chunks(scores.dtype(), vec, s);
    let name = typed(OP, "causal_softmax_fwd", scores)?;
    let (total64, per_batch) = (total as u64, (heads * rows) as u64);
    let s32 = int(OP, "key length", s)?;
    let grid = cfg(
        blocks(OP, total.div_ceil(SOFTMAX_WARPS))?,
        (32 * SOFTMAX_WARPS as u32, 1),
        0,
    );
    launch!(cd, name, grid, px, pm, pp, total64, s32, per_batch, scale, vec, ch);
    Ok(p)
}

pub fn causal_softmax_bwd(dp: &Tensor, p: &Tensor, scale: f32) -> Result<Tensor> {
    const OP: &str = "causal_softmax_bwd";
    let cd = cuda_dev(OP, p)?;
    let (b, heads, rows, s) = p.dims4()?;
    let ds = empty(cd, p.dtype(), p.dims())?;
    let total = b * heads * rows;
    if total == 0 || s == 0 {
        return Ok(ds);
    }
    let (pdp, pp, pds) = (ptr(OP, dp, cd)?, ptr(OP, p, cd)?, ptr(OP, &ds, cd)?);
    let vec = vec_flag(p.dtype(), &[pdp, pp, pds], &[s]);
    let ch = cached_chunks(p.dtype(), vec, s);
    let name = typed(OP, "causal_softmax_bwd", p)?;
    let total64 = total as u64;
    let s32 = int(OP, "key length", s)?;
    let grid = cfg(
        blocks(OP, total.div_ceil(SOFTMAX_WARPS))?,
        (32 * SOFTMAX_WARPS as u32, 1),
        0,
    );
    launch!(cd, name, grid, pdp, pp, pds, total64, s32, scale, vec, ch);
    Ok(ds)
}

pub fn cross_entropy_fwd_bwd(
    logits: &Tensor,
    targets: &Tensor,
    grad_scale: f32,
) -> Result<XentOut> {
    const OP: &str = "cross_entropy_fwd_bwd";
    let cd = cuda_dev(OP, logits)?;
    let (rows, vocab) = logits.dims2()?;
    let dlogits = empty(cd, logits.dtype(), &[rows, vocab])?;
    let loss_sum = empty(cd, DType::F32, &[])?;
    let row_loss = empty(cd, DType::F32, &[rows.max(1)])?;
    let (prl, pls) = (ptr(OP, &row_loss, cd)?, ptr(OP, &loss_sum, cd)?);
    if rows > 0 && vocab > 0 {
        let (pz, pt, pdz) = (
            ptr(OP, logits, cd)?,
            ptr(OP, targets, cd)?,
            ptr(OP, &dlogits, cd)?,
        );
        let vec = vec_flag(logits.dtype(), &[pz, pdz], &[vocab]);
        let v = if vec == 1 { width(logits.dtype()) } else { 1 };
        // The kernel's launch bounds: at most 512 threads. A row of at most 8 vectors per
        // thread is held in registers (`cached`; 32000 bf16 logits fit).
        let threads = if vocab / v >= 512 { 512 } else { 256 };
        let cached = i32::from(vec == 1 && row_cache() && vocab <= threads * v * 8);
        let name = typed(OP, "xent_fwd_bwd", logits)?;
        let v32 = int(OP, "vocab", vocab)?;
        let grid = cfg(blocks(OP, rows)?, (threads as u32, 1), 0);
        launch!(cd, name, grid, pz, pt, pdz, prl, v32, grad_scale, vec, cached);
    }
    let n = if vocab > 0 { rows as u64 } else { 0 };
    let sum = "sum_f32".to_string();
    launch!(cd, sum, cfg(1, (1024, 1), 0), prl, pls, n);
    Ok(XentOut { loss_sum, dlogits })
}
