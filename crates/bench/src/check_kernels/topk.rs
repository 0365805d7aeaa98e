//! `gpu-check`: the device top-k of `|x|` (`crosslore_linalg::topk::topk_abs_indices`, the sparse
//! residual's index set `L`, paper Sec. 4.2.2) against the CPU path on the same f32 bits, and
//! `SparseResidual::select` on the device against the CPU ranking of the device's own dense
//! `project_back(M')`. Both rankings are exact (ties to the smaller index, NaN lowest), so the
//! measure is the number of differing output positions (plus any length difference), tolerance 0.
//!
//! Also prints `TIME` lines (not checks): the selection of a `[4096, 4096]` and a `[11008, 4096]`
//! matrix at ratio 0.012 (the 7B shapes), device path vs the former host path (download of the
//! dense matrix + host select), and `SparseResidual::select` end to end (with its matmul).
use candle_core::{Device, Tensor};
use crosslore_linalg::topk::topk_abs_indices;
use crosslore_linalg::{Rng, Side};
use crosslore_optim::residual::{index_len, SparseResidual};

use crate::check::{gaussian, CheckReport};
use crate::timing::median_time;
use crate::Result;

/// Number of positions where `d` and `c` differ, plus their length difference.
fn mismatches(d: &[u32], c: &[u32]) -> f64 {
    let diff = d.iter().zip(c).filter(|(x, y)| x != y).count();
    (diff + d.len().abs_diff(c.len())) as f64
}

/// Device and CPU top-k of `x` (host tensor) for every `k` in `ks`; total mismatches.
fn compare(x: &Tensor, dev: &Device, ks: &[usize]) -> Result<f64> {
    let xd = x.to_device(dev)?;
    let mut total = 0.0;
    for &k in ks {
        let c: Vec<u32> = topk_abs_indices(x, k)?.to_vec1()?;
        let d: Vec<u32> = topk_abs_indices(&xd, k)?.to_vec1()?;
        total += mismatches(&d, &c);
    }
    Ok(total)
}

/// `k` edge cases and the paper's ratio for `n` entries (each `<= n`).
fn ks_for(n: usize) -> Vec<usize> {
    let mut v = vec![0, 1, 2, index_len(0.012, n), n / 2, n.saturating_sub(1), n];
    v.retain(|&k| k <= n);
    v.sort_unstable();
    v.dedup();
    v
}

/// Entries of a host `[m, n]` matrix built by `f(rng, i)`.
fn matrix(
    rng: &mut Rng,
    m: usize,
    n: usize,
    mut f: impl FnMut(&mut Rng, usize) -> f32,
) -> Result<Tensor> {
    let v: Vec<f32> = (0..m * n).map(|i| f(rng, i)).collect();
    Ok(Tensor::from_vec(v, (m, n), &Device::Cpu)?)
}

pub(super) fn run(dev: &Device, seed: u64, rep: &mut CheckReport) -> Result<()> {
    let mut rng = Rng::new(seed + 23);
    let mut cases: Vec<(String, Tensor)> = Vec::new();
    for (m, n) in [(700usize, 300usize), (300, 700), (512, 512)] {
        cases.push((format!("gaussian [{m},{n}]"), gaussian(&mut rng, m, n)?));
    }
    cases.push((
        "zero [300,200] (all tied)".into(),
        Tensor::zeros((300, 200), candle_core::DType::F32, &Device::Cpu)?,
    ));
    let pool: Vec<f32> = rng.normal_vec(5);
    cases.push((
        "5 magnitudes, both signs [400,250] (many ties)".into(),
        matrix(&mut rng, 400, 250, |r, _| {
            let v = pool[r.below(5) as usize];
            if r.below(2) == 0 {
                v
            } else {
                -v
            }
        })?,
    ));
    cases.push((
        "gaussian with 10% NaN, 1% +-Inf, 5% zeros [350,300]".into(),
        matrix(&mut rng, 350, 300, |r, _| match r.below(100) {
            0..=9 => f32::NAN,
            10 => f32::INFINITY,
            11 => f32::NEG_INFINITY,
            12..=16 => 0.0,
            _ => r.normal() as f32,
        })?,
    ));
    // Keys sharing the high 16 bits, 64 distinct low digits: the low-digit pass decides.
    cases.push((
        "one high radix digit, 64 low digits [256,300]".into(),
        matrix(&mut rng, 256, 300, |r, _| {
            f32::from_bits(0x3fc0_0000 + r.below(64) as u32)
        })?,
    ));
    cases.push((
        "vector [1]".into(),
        Tensor::from_vec(vec![-3.0f32], 1, &Device::Cpu)?,
    ));
    cases.push((
        "vector [1000]".into(),
        Tensor::from_vec(rng.normal_vec(1000), 1000, &Device::Cpu)?,
    ));
    for (label, x) in &cases {
        let ks = ks_for(x.elem_count());
        let bad = compare(x, dev, &ks)?;
        rep.push(
            &format!("topk_abs_indices {label} k in {ks:?}: differing indices dev vs cpu"),
            bad,
            bad,
            0.0,
        );
    }

    // The 7B shapes at ratio 0.012: exact agreement and timing (device vs download + host).
    for (m, n) in [(4096usize, 4096usize), (11008, 4096)] {
        let x = gaussian(&mut rng, m, n)?;
        let xd = x.to_device(dev)?;
        let k = index_len(0.012, m * n);
        let d: Vec<u32> = topk_abs_indices(&xd, k)?.to_vec1()?;
        let c: Vec<u32> = topk_abs_indices(&x, k)?.to_vec1()?;
        let (td, _) = median_time(dev, 1, 5, || Ok(topk_abs_indices(&xd, k)?))?;
        let (th, _) = median_time(dev, 0, 3, || {
            Ok(topk_abs_indices(&xd.to_device(&Device::Cpu)?, k)?)
        })?;
        let bad = mismatches(&d, &c);
        rep.push(
            &format!("topk_abs_indices gaussian [{m},{n}] k={k} (ratio 0.012): differing indices"),
            bad,
            bad,
            0.0,
        );
        println!(
            "TIME topk_abs_indices [{m},{n}] k={k}: device {:.2} ms, host path (download + select) {:.1} ms ({:.0}x)",
            td * 1e3,
            th * 1e3,
            th / td
        );
    }

    // SparseResidual::select on the device: the same indices as the CPU ranking of the device's
    // dense M' P^T (resp. P M'), formed by the same candle ops as `select`.
    for (m, n, r, side) in [
        (1024usize, 768usize, 64usize, Side::Right),
        (768, 1024, 64, Side::Left),
        (4096, 4096, 128, Side::Right),
        (11008, 4096, 128, Side::Left),
    ] {
        let p_rows = if side == Side::Right { n } else { m };
        let p = gaussian(&mut rng, p_rows, r)?.to_device(dev)?;
        let mo = match side {
            Side::Right => gaussian(&mut rng, m, r)?,
            Side::Left => gaussian(&mut rng, r, n)?,
        }
        .to_device(dev)?;
        let ratio = 0.012;
        // [m, n], the ops of `select` (back_factors, then A B^T)
        let back = || -> Result<Tensor> {
            Ok(match side {
                Side::Right => mo.matmul(&p.t()?)?,
                Side::Left => p.matmul(&mo.t()?.contiguous()?.t()?)?,
            })
        };
        let dense = back()?;
        let k = index_len(ratio, m * n);
        let d: Vec<u32> = SparseResidual::select(&mo, &p, side, ratio)?
            .index()
            .to_vec1()?;
        let c: Vec<u32> = topk_abs_indices(&dense.to_device(&Device::Cpu)?, k)?.to_vec1()?;
        drop(dense);
        let (ts, _) = median_time(dev, 1, 3, || {
            Ok(SparseResidual::select(&mo, &p, side, ratio)?)
        })?;
        // The former host path: the same product, downloaded and ranked on the host.
        let (th, _) = median_time(dev, 0, 1, || {
            Ok(topk_abs_indices(&back()?.to_device(&Device::Cpu)?, k)?)
        })?;
        let bad = mismatches(&d, &c);
        rep.push(
            &format!(
                "SparseResidual::select [{m},{n}] r={r} {side:?} ratio 0.012 (|L|={k}) dev vs cpu ranking of the device product: differing indices"
            ),
            bad,
            bad,
            0.0,
        );
        if m * n < 4096 * 4096 {
            // INFO: against the CPU select (CPU matmul: rounding differs near the threshold).
            let cpu = Device::Cpu;
            let sc =
                SparseResidual::select(&mo.to_device(&cpu)?, &p.to_device(&cpu)?, side, ratio)?;
            let ic: std::collections::BTreeSet<u32> =
                sc.index().to_vec1::<u32>()?.into_iter().collect();
            let xor = d.iter().filter(|i| !ic.contains(i)).count() * 2;
            println!(
                "INFO SparseResidual::select [{m},{n}] {side:?}: |L_dev xor L_cpu-select| = {xor} of |L| = {k} (CPU matmul rounding)"
            );
        } else {
            println!(
                "TIME SparseResidual::select [{m},{n}] r={r} {side:?} ratio 0.012: device {:.2} ms, former host path (matmul + download + host select) {:.1} ms",
                ts * 1e3,
                th * 1e3
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ks_for;

    /// On the H200 (2026-11-29) `gpu-check` stopped at the `[1]` vector: k = 2 > n.
    #[test]
    fn ks_never_exceed_n() {
        for n in [0usize, 1, 2, 3, 1000] {
            let ks = ks_for(n);
            assert!(ks.iter().all(|&k| k <= n), "n = {n}: {ks:?}");
            assert!(ks.contains(&n) && ks.contains(&0), "n = {n}: {ks:?}");
        }
    }
}
