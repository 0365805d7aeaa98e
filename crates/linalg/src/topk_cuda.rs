//! CUDA path of [`crate::topk::topk_abs_indices`] (paper Sec. 4.2.2: the sparse residual's index
//! set `L`): radix select of the threshold key on the device, then a stable compaction, with the
//! kernels `topk_*_f32` of `kernels/crosslore.cu` and the host logic of [`crate::topk`]. The dense
//! input stays on the device; the host reads two 65536-bin histograms (256 KiB each) and two u32
//! counts per block, and uploads two u32 bases per block.
use candle_core::{DType, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::kernels::{cuda_dev, empty, grid, ptr, MODULE, PTX};
use crate::topk::{block_bases, chunking, pick_digit, threshold, MAX_BLOCKS, RADIX_BINS, TILE};
use crate::{LinalgError, Result};

const OP: &str = "topk_abs_indices (cuda)";

/// One radix histogram pass: kernel `name` over `x` (f32 `[n]`, contiguous, on CUDA) into a
/// zeroed `[65536]` u32 histogram, read back to the host (one synchronisation). `hi` is the high
/// digit for the low-digit pass (`topk_hist_lo_f32`), `None` for the high-digit pass.
fn histogram(x: &Tensor, n: u64, hi: Option<u32>) -> Result<Vec<u32>> {
    let cd = cuda_dev(OP, x)?;
    let hist = Tensor::zeros(RADIX_BINS, DType::U32, x.device())?;
    let (px, ph) = (ptr(OP, x, cd)?, ptr(OP, &hist, cd)?);
    match hi {
        None => {
            let name = "topk_hist_hi_f32".to_string();
            crate::launch_ptx!(cd, (MODULE, PTX), name, grid(n), px, n, ph);
        }
        Some(hi) => {
            let name = "topk_hist_lo_f32".to_string();
            crate::launch_ptx!(cd, (MODULE, PTX), name, grid(n), px, n, hi, ph);
        }
    }
    Ok(hist.to_vec1::<u32>()?)
}

/// Sorted u32 `[k]` indices of the `k` largest `|x|` for `x`: f32 `[n]`, contiguous, on CUDA,
/// `1 <= k <= n <= u32::MAX` (checked by [`crate::topk::topk_abs_indices`]).
pub(crate) fn topk_abs_cuda(x: &Tensor, k: usize) -> Result<Tensor> {
    let cd = cuda_dev(OP, x)?;
    let n = x.elem_count();
    if k == 0 || k > n || n > u32::MAX as usize || x.dtype() != DType::F32 {
        return Err(LinalgError::InvalidArgument {
            op: OP,
            msg: format!("expected f32 [n] with 1 <= k <= n <= u32::MAX, got k = {k}, n = {n}"),
        });
    }
    let (n64, k64) = (n as u64, k as u64);
    // Threshold key T and need = k - #(key > T).
    let hi = pick_digit(&histogram(x, n64, None)?, k64)?;
    let t = threshold(hi, &histogram(x, n64, Some(hi.digit))?, k64)?;
    let need = t.need as u32; // <= k <= u32::MAX

    // Per-block counts of keys above / equal to T ([gt | eq], 2 * blocks u32).
    let c = chunking(n, TILE, MAX_BLOCKS);
    let cfg = LaunchConfig {
        grid_dim: (c.blocks as u32, 1, 1),
        block_dim: (TILE as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let counts = empty(cd, DType::U32, &[2 * c.blocks])?;
    let px = ptr(OP, x, cd)?;
    let pc = ptr(OP, &counts, cd)?;
    let (pgt, peq) = (pc, pc + 4 * c.blocks as u64); // &counts[0], &counts[blocks]
    let chunk = c.chunk as u64;
    let name = "topk_block_counts_f32".to_string();
    crate::launch_ptx!(
        cd,
        (MODULE, PTX),
        name,
        cfg,
        px,
        n64,
        chunk,
        t.key,
        pgt,
        peq
    );
    let counts = counts.to_vec1::<u32>()?;
    let (gt, eq) = counts.split_at(c.blocks);
    let (gb, eb) = block_bases(gt, eq, &t)?;

    // Stable compaction into out[k] ([gt_base | eq_base] uploaded as one buffer).
    let bases = Tensor::from_vec([gb, eb].concat(), 2 * c.blocks, x.device())?;
    let pb = ptr(OP, &bases, cd)?;
    let (pgb, peb) = (pb, pb + 4 * c.blocks as u64); // &bases[0], &bases[blocks]
    let out = empty(cd, DType::U32, &[k])?;
    let po = ptr(OP, &out, cd)?;
    let name = "topk_write_f32".to_string();
    crate::launch_ptx!(
        cd,
        (MODULE, PTX),
        name,
        cfg,
        px,
        n64,
        chunk,
        t.key,
        need,
        pgb,
        peb,
        po
    );
    Ok(out)
}
