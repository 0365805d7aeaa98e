//! Exact top-k of `|x|` by flat index: the selection of the sparse residual's index set `L`
//! (paper Sec. 4.2.2, Alg. 2: the top `rho * m * n` positions of `|project_back(M')|`).
//!
//! Ranking: by magnitude, descending; ties go to the smaller flat index; NaN counts as the
//! smallest magnitude. Equivalently, by the u32 key [`abs_key`] (descending), then the index
//! (ascending). The result is the SORTED u32 index list, so the selected set is unique and every
//! device returns the same indices for the same input bits.
//!
//! - CPU tensors: keys on the host, `select_nth_unstable_by`, sort ([`topk_abs_host`]).
//! - CUDA tensors (feature `cuda`): the dense input never leaves the device. A radix select finds
//!   the threshold key `T` (the `k`-th largest) from two 65536-bin histograms (the high 16 bits of
//!   the key, then the low 16 bits among the keys in the chosen high bin), `need = k - #(key > T)`
//!   keys equal to `T` are taken in index order, and a stable compaction writes, in index order,
//!   every element with `key > T` or `key == T` and equal-rank `< need`: the output is sorted by
//!   construction. The host sees only the two 256 KiB histograms and two counts per block. The
//!   bin, threshold and offset logic is plain Rust here ([`pick_digit`], [`threshold`],
//!   [`chunking`], [`block_bases`], [`out_slot`]), so that the CPU tests check it through a CPU
//!   emulation of the kernels' counting.
use candle_core::{DType, Device, Tensor};

use crate::{LinalgError, Result};

const OP: &str = "topk_abs_indices";

/// Bins of one radix digit (16 bits of the key).
pub const RADIX_BINS: usize = 1 << 16;

/// Elements one block of the compaction kernels handles per step (its thread count); chunks are
/// multiples of it.
pub const TILE: usize = 256;

/// Most blocks of the compaction kernels (8 blocks of 256 threads per SM of an H200, 132 SMs).
pub const MAX_BLOCKS: usize = 132 * 8;

/// The u32 ranking key of `v`: `bits(|v|) + 1` for a non-NaN `v`, 0 for NaN. The bits of a
/// non-negative f32 (including +inf, `0x7f80_0000`) are monotone as u32, so a larger key is a
/// larger magnitude and NaN ranks below every number (as in [`topk_abs_host`]).
pub fn abs_key(v: f32) -> u32 {
    let u = v.to_bits() & 0x7fff_ffff;
    if u > 0x7f80_0000 {
        0
    } else {
        u + 1
    }
}

/// Indices (sorted ascending, u32 `[k]`) of the `k` largest `|x|` entries of `x` (any shape,
/// flattened row-major, so `i * cols + j` for a `[rows, cols]` matrix); ties go to the smaller
/// flat index, NaN is the smallest magnitude (paper Sec. 4.2.2: the index set `L` of the sparse
/// residual, Alg. 2). Float dtypes other than f32 are converted to f32 first; the result lives on
/// `x`'s device. On CUDA (feature `cuda`) the selection runs on the device (radix select and a
/// stable compaction, see the module docs), on the CPU on the host; both give the same indices.
///
/// Errors: an integer dtype, `k > x.elem_count()`, or more than `u32::MAX` elements.
pub fn topk_abs_indices(x: &Tensor, k: usize) -> Result<Tensor> {
    let n = x.elem_count();
    if !x.dtype().is_float() {
        return Err(LinalgError::InvalidArgument {
            op: OP,
            msg: format!("expected a floating-point tensor, got {:?}", x.dtype()),
        });
    }
    if k > n {
        return Err(LinalgError::InvalidArgument {
            op: OP,
            msg: format!(
                "k = {k} exceeds the {n} elements of a {:?} tensor",
                x.dims()
            ),
        });
    }
    if n > u32::MAX as usize {
        return Err(LinalgError::InvalidArgument {
            op: OP,
            msg: format!("{n} elements ({:?}) exceed u32 flat indices", x.dims()),
        });
    }
    if k == 0 {
        return Ok(Tensor::zeros(0, DType::U32, x.device())?);
    }
    let flat = x.to_dtype(DType::F32)?.flatten_all()?.contiguous()?; // [n]
    match x.device() {
        #[cfg(feature = "cuda")]
        Device::Cuda(_) => crate::topk_cuda::topk_abs_cuda(&flat, k),
        dev => {
            let host = flat.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
            let idx = topk_abs_host(&host, k);
            Ok(Tensor::from_vec(idx, k, dev)?)
        }
    }
}

/// Host top-k of `|x|` (the CPU path of [`topk_abs_indices`]): the `min(k, len)` indices ranked
/// by ([`abs_key`] descending, index ascending), sorted ascending. `x.len()` must fit u32
/// indices (checked by the caller).
pub fn topk_abs_host(x: &[f32], k: usize) -> Vec<u32> {
    let n = x.len();
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let keys: Vec<u32> = x.iter().map(|&v| abs_key(v)).collect();
    let mut all: Vec<u32> = (0..n as u32).collect();
    if k < n {
        let desc = |a: &u32, b: &u32| keys[*b as usize].cmp(&keys[*a as usize]).then(a.cmp(b));
        all.select_nth_unstable_by(k - 1, desc);
        all.truncate(k);
    }
    all.sort_unstable();
    all
}

/// The digit (bin) of one radix pass that holds the `k`-th largest key, and how many keys lie in
/// higher digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitPick {
    pub digit: u32,
    pub above: u64,
}

/// Scans `hist` (counts per digit value) from the top down for the digit holding the `k`-th
/// largest key (`k >= 1`). Errors when the counts add up to less than `k` (a counting fault).
pub fn pick_digit(hist: &[u32], k: u64) -> Result<DigitPick> {
    let mut above = 0u64;
    for (digit, &c) in hist.iter().enumerate().rev() {
        if above + c as u64 >= k {
            return Ok(DigitPick {
                digit: digit as u32,
                above,
            });
        }
        above += c as u64;
    }
    Err(LinalgError::Inconsistent {
        op: OP,
        msg: format!("histogram counts {above} keys, fewer than k = {k} (k >= 1)"),
    })
}

/// The selection threshold: the `k`-th largest key, how many keys exceed it, and how many of the
/// keys equal to it are taken (the `need` smallest indices among them; `1 <= need`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub key: u32,
    pub greater: u64,
    pub need: u64,
}

/// Combines the high-digit pick (`hi`, from the histogram of `key >> 16` for this `k`) and the
/// histogram of `key & 0xffff` among the keys with `key >> 16 == hi.digit` into the [`Threshold`]
/// of the `k`-th largest key.
pub fn threshold(hi: DigitPick, lo_hist: &[u32], k: u64) -> Result<Threshold> {
    let rest =
        k.checked_sub(hi.above)
            .filter(|&r| r >= 1)
            .ok_or_else(|| LinalgError::Inconsistent {
                op: OP,
                msg: format!("high-digit pick {hi:?} leaves nothing of k = {k}"),
            })?;
    let lo = pick_digit(lo_hist, rest)?;
    let greater = hi.above + lo.above;
    Ok(Threshold {
        key: (hi.digit << 16) | lo.digit,
        greater,
        need: k - greater,
    })
}

/// The split of `n >= 1` elements into `blocks` contiguous chunks of `chunk` elements (a multiple
/// of [`TILE`]; the last chunk may be shorter) for the counting and compaction kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    pub chunk: usize,
    pub blocks: usize,
}

/// [`Chunking`] of `n` elements with at most `max_blocks` blocks of `tile`-multiple chunks.
pub fn chunking(n: usize, tile: usize, max_blocks: usize) -> Chunking {
    let tile = tile.max(1);
    let blocks = n.div_ceil(tile).clamp(1, max_blocks.max(1));
    let chunk = n.div_ceil(blocks).div_ceil(tile).max(1) * tile;
    Chunking {
        chunk,
        blocks: n.div_ceil(chunk).max(1),
    }
}

/// Exclusive prefix sums of the per-block counts of keys above (`gt`) and equal to (`eq`) the
/// threshold: block `b`'s `(gt_base, eq_base)`, the counts over all earlier blocks. Checks the
/// totals against `t` (`sum gt == t.greater`, `sum eq >= t.need`).
pub fn block_bases(gt: &[u32], eq: &[u32], t: &Threshold) -> Result<(Vec<u32>, Vec<u32>)> {
    let scan = |c: &[u32]| {
        let mut run = 0u64;
        let base: Vec<u32> = c
            .iter()
            .map(|&x| {
                let b = run as u32; // run <= n <= u32::MAX (checked below via the totals)
                run += x as u64;
                b
            })
            .collect();
        (base, run)
    };
    let ((gb, gsum), (eb, esum)) = (scan(gt), scan(eq));
    if gt.len() != eq.len() || gsum != t.greater || esum < t.need || esum > u32::MAX as u64 {
        return Err(LinalgError::Inconsistent {
            op: OP,
            msg: format!(
                "block counts ({} blocks: {gsum} above, {esum} equal) disagree with the \
                 threshold {t:?}",
                gt.len()
            ),
        });
    }
    Ok((gb, eb))
}

/// Output position of an element of the stable compaction, `None` when it is not selected:
/// `gt_before`/`eq_before` count the keys above/equal to the threshold at smaller flat indices.
/// Selected are all keys above and the first `need` equal ones, so the position is
/// `gt_before + min(eq_before, need)` (the CUDA kernel `topk_write_f32` computes the same).
pub fn out_slot(
    is_gt: bool,
    is_eq: bool,
    gt_before: u64,
    eq_before: u64,
    need: u64,
) -> Option<u64> {
    (is_gt || (is_eq && eq_before < need)).then(|| gt_before + eq_before.min(need))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    /// Reference: full sort by (|x| desc with NaN last, index asc), first k, sorted by index.
    fn reference(x: &[f32], k: usize) -> Vec<u32> {
        let mag = |i: usize| {
            let v = x[i].abs();
            if v.is_nan() {
                f32::NEG_INFINITY
            } else {
                v
            }
        };
        let mut all: Vec<usize> = (0..x.len()).collect();
        all.sort_by(|&a, &b| mag(b).total_cmp(&mag(a)).then(a.cmp(&b)));
        let mut out: Vec<u32> = all[..k].iter().map(|&i| i as u32).collect();
        out.sort_unstable();
        out
    }

    /// CPU emulation of the CUDA path: the kernels' counting done by loops, the host logic as is.
    fn emulated(x: &[f32], k: usize, tile: usize, max_blocks: usize) -> Result<Vec<u32>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let keys: Vec<u32> = x.iter().map(|&v| abs_key(v)).collect();
        let mut hi = vec![0u32; RADIX_BINS];
        for &key in &keys {
            hi[(key >> 16) as usize] += 1; // topk_hist_hi_f32
        }
        let pick = pick_digit(&hi, k as u64)?;
        let mut lo = vec![0u32; RADIX_BINS];
        for &key in keys.iter().filter(|&&key| key >> 16 == pick.digit) {
            lo[(key & 0xffff) as usize] += 1; // topk_hist_lo_f32
        }
        let t = threshold(pick, &lo, k as u64)?;
        let c = chunking(x.len(), tile, max_blocks);
        let block =
            |b: usize| &keys[(b * c.chunk).min(keys.len())..((b + 1) * c.chunk).min(keys.len())];
        let (gt, eq): (Vec<u32>, Vec<u32>) = (0..c.blocks)
            .map(|b| {
                let ks = block(b); // topk_block_counts_f32
                let g = ks.iter().filter(|&&key| key > t.key).count() as u32;
                let e = ks.iter().filter(|&&key| key == t.key).count() as u32;
                (g, e)
            })
            .unzip();
        let (gb, eb) = block_bases(&gt, &eq, &t)?;
        let mut out = vec![u32::MAX; k];
        for b in 0..c.blocks {
            // topk_write_f32: running counts within the block, in index order.
            let (mut g, mut e) = (gb[b] as u64, eb[b] as u64);
            for (o, &key) in block(b).iter().enumerate() {
                let (is_gt, is_eq) = (key > t.key, key == t.key);
                if let Some(p) = out_slot(is_gt, is_eq, g, e, t.need) {
                    assert_eq!(out[p as usize], u32::MAX, "slot {p} written twice");
                    out[p as usize] = (b * c.chunk + o) as u32;
                }
                g += is_gt as u64;
                e += is_eq as u64;
            }
        }
        assert!(!out.contains(&u32::MAX), "a slot was left unwritten");
        Ok(out)
    }

    /// Random data with many ties: values drawn from a small pool (both signs), zeros, NaNs,
    /// infinities and subnormals.
    fn tied(rng: &mut Rng, n: usize) -> Vec<f32> {
        let pool: Vec<f32> = rng.normal_vec(7);
        (0..n)
            .map(|i| match rng.below(10) {
                0 => 0.0,
                1 => -0.0,
                2 => f32::NAN,
                3 => pool[i % 7],
                4 => -pool[(i / 3) % 7],
                5 => f32::from_bits(1 + (i % 3) as u32), // subnormal
                6 if i % 5 == 0 => f32::INFINITY,
                6 => f32::NEG_INFINITY,
                _ => rng.normal() as f32,
            })
            .collect()
    }

    fn ks(n: usize) -> Vec<usize> {
        let mut v = vec![0, 1, n / 3, n / 2, n.saturating_sub(1), n];
        v.retain(|&k| k <= n);
        v.dedup();
        v
    }

    #[test]
    fn abs_key_is_monotone_in_magnitude_and_nan_is_lowest() {
        let xs = [
            f32::NAN,
            0.0,
            -0.0,
            f32::from_bits(1),
            1e-30,
            -0.5,
            0.5,
            1.0,
            -3.0e38,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for &a in &xs {
            for &b in &xs {
                let (ma, mb) = (a.abs(), b.abs());
                if a.is_nan() || b.is_nan() {
                    assert_eq!(abs_key(a) < abs_key(b), a.is_nan() && !b.is_nan());
                } else {
                    assert_eq!(abs_key(a).cmp(&abs_key(b)), ma.total_cmp(&mb), "{a} vs {b}");
                }
            }
        }
        assert_eq!(abs_key(f32::NAN), 0);
        assert_eq!(abs_key(-f32::NAN), 0);
        assert_eq!(abs_key(0.0), 1);
        assert_eq!(abs_key(-0.0), 1);
        assert_eq!(abs_key(f32::INFINITY), 0x7f80_0001);
    }

    #[test]
    fn host_and_emulated_radix_match_sort_reference() {
        let mut rng = Rng::new(20261129);
        for (n, tile, max_blocks) in [
            (1, 4, 3),
            (7, 4, 3),
            (1000, 4, 7),
            (4099, 16, 50),
            (3000, 256, 1056),
        ] {
            for rep in 0..3 {
                let x = if rep == 0 {
                    rng.normal_vec(n)
                } else {
                    tied(&mut rng, n)
                };
                for k in ks(n) {
                    let want = reference(&x, k);
                    assert_eq!(topk_abs_host(&x, k), want, "host n={n} k={k} rep={rep}");
                    let got = emulated(&x, k, tile, max_blocks).unwrap();
                    assert_eq!(got, want, "emulated n={n} k={k} rep={rep} tile={tile}");
                }
            }
        }
    }

    #[test]
    fn all_ties_take_the_smallest_indices() {
        // A zero matrix (every key equal): the first k indices. Likewise an all-NaN vector.
        for fill in [0.0f32, f32::NAN, -2.5] {
            let x = vec![fill; 1000];
            for k in ks(1000) {
                let want: Vec<u32> = (0..k as u32).collect();
                assert_eq!(topk_abs_host(&x, k), want);
                assert_eq!(emulated(&x, k, 8, 13).unwrap(), want);
            }
        }
    }

    #[test]
    fn radix_threshold_splits_in_the_low_digit() {
        // Keys that share the high 16 bits and differ only in the low ones: the second pass
        // must pick the threshold, and `need` counts the equal keys taken.
        let base = 1.5f32.to_bits();
        let x: Vec<f32> = [5u32, 3, 5, 9, 3, 5, 1]
            .iter()
            .map(|&d| f32::from_bits(base + d))
            .collect();
        let keys: Vec<u32> = x.iter().map(|&v| abs_key(v)).collect();
        let mut hi = vec![0u32; RADIX_BINS];
        let mut lo = vec![0u32; RADIX_BINS];
        for &key in &keys {
            hi[(key >> 16) as usize] += 1;
            lo[(key & 0xffff) as usize] += 1;
        }
        let pick = pick_digit(&hi, 3).unwrap();
        assert_eq!((pick.digit, pick.above), ((base + 1) >> 16, 0));
        let t = threshold(pick, &lo, 3).unwrap();
        // keys: 9 > 5 = 5 = 5: the 3rd largest is a 5; one above (the 9), two of the three 5s.
        assert_eq!(t.key, base + 1 + 5);
        assert_eq!((t.greater, t.need), (1, 2));
        assert_eq!(topk_abs_host(&x, 3), vec![0, 2, 3]);
        assert_eq!(emulated(&x, 3, 2, 3).unwrap(), vec![0, 2, 3]);
    }

    #[test]
    fn inconsistent_counts_are_typed_errors() {
        let hist = vec![1u32; 4];
        assert!(matches!(
            pick_digit(&hist, 5),
            Err(LinalgError::Inconsistent { .. })
        ));
        assert_eq!(
            pick_digit(&hist, 4).unwrap(),
            DigitPick { digit: 0, above: 3 }
        );
        let t = Threshold {
            key: 7,
            greater: 3,
            need: 2,
        };
        assert!(block_bases(&[1, 1], &[1, 0], &t).is_err()); // 2 above, not 3
        assert!(block_bases(&[1, 2], &[1, 0], &t).is_err()); // 1 equal, need 2
        assert_eq!(
            block_bases(&[1, 2, 0], &[1, 0, 4], &t).unwrap(),
            (vec![0, 1, 3], vec![0, 1, 1])
        );
    }

    #[test]
    fn chunking_covers_n_with_tile_multiples() {
        for n in [1usize, 255, 256, 257, 10_000, 45_088_768] {
            let c = chunking(n, TILE, MAX_BLOCKS);
            assert_eq!(c.chunk % TILE, 0);
            assert!(c.blocks <= MAX_BLOCKS && c.blocks >= 1);
            assert!(
                c.blocks * c.chunk >= n && (c.blocks - 1) * c.chunk < n,
                "n={n} {c:?}"
            );
        }
    }

    #[test]
    fn topk_abs_indices_tensor_entry_point() {
        let mut rng = Rng::new(7);
        let x = tied(&mut rng, 60 * 35);
        let t = Tensor::from_vec(x.clone(), (60, 35), &Device::Cpu).unwrap();
        for k in ks(60 * 35) {
            let got = topk_abs_indices(&t, k).unwrap();
            assert_eq!(got.dtype(), DType::U32);
            assert_eq!(got.to_vec1::<u32>().unwrap(), reference(&x, k));
        }
        // bf16 input: ranked after conversion to f32.
        let b = t.to_dtype(DType::BF16).unwrap();
        let xb: Vec<f32> = b
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(
            topk_abs_indices(&b, 100).unwrap().to_vec1::<u32>().unwrap(),
            reference(&xb, 100)
        );
        assert!(matches!(
            topk_abs_indices(&t, 60 * 35 + 1),
            Err(LinalgError::InvalidArgument { .. })
        ));
        let u = Tensor::zeros(4, DType::U32, &Device::Cpu).unwrap();
        assert!(matches!(
            topk_abs_indices(&u, 1),
            Err(LinalgError::InvalidArgument { .. })
        ));
    }
}
