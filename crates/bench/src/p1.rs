//! P1: projection refresh of every targeted matrix of a LLaMA-2-7B-shaped model (issue 5).
//!
//! Methods (rank `r`, oversampling `p = 8`, sketch width `k = r + p`):
//! - `exact`: GaLore's projector, the exact top-r singular subspace (`svd_subspace`: cuSOLVER
//!   `gesvdj` with `gesvd` fallback on CUDA, as `torch.linalg.svd`; faer on CPU), and on CUDA
//!   also `gesvd` alone. Timed on `svd_samples` matrices per shape; the total is the per-shape
//!   median times the number of matrices of that shape (stated in the report).
//! - `rsi_q2`: CrossLore's randomized subspace iteration, q = 2, cold (Gaussian test matrix).
//! - `rsi_warm_q1`: RSI warm-started from the previous refresh's projector, q = 1. The previous
//!   projector is the `rsi_q2` projector of an earlier gradient whose singular subspaces drifted
//!   ([`crate::synth::drifted`], drift 0.2), computed before timing.
//!   `Omega` is the seeded counter-based stream drawn on the device (`rsi_subspace` as the
//!   optimizer calls it, one matrix at a time, one synchronisation each).
//! - `rsi_q2_batched`: the same projectors through `rsi_many` (all matrices' device work queued,
//!   small host SVDs in parallel).
//! - `cross_head_qk+rsi_q2[_batched]`: CrossLore as configured by default: cross-head
//!   projection (paper Eq. 3-4) on q/k, `rsi_q2` on v, o, gate, up, down.
//! - [`P1Report::legacy_probe`]: the earlier optimizer path (xoshiro normals drawn on the host,
//!   uploaded with `Tensor::from_vec`), timed step by step on a few matrices to show where its
//!   ~0.25 s per matrix went.
//!
//! The residual of a projector is `||G - P P^T G||_F / ||G||_F` (paper Fig. 2b).
use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use crosslore_linalg::rsi::{rsi_many, rsi_subspace, RsiConfig};
use crosslore_linalg::svd::{subspace_residual, svd_subspace};
use crosslore_linalg::{Rng, Side};
use crosslore_optim::cross_head::{cross_head_projector, HeadLayout};
use serde::Serialize;

use crate::floors::{self, Rates};
use crate::shapes::{targets, ModelDims, Target};
use crate::synth::{self, Spectrum};
use crate::timing::{median, median_time, time_once};
use crate::Result;

/// P1 options.
#[derive(Debug, Clone, Serialize)]
pub struct P1Options {
    pub dims: ModelDims,
    pub spectrum: Spectrum,
    pub oversample: usize,
    /// Exact SVDs timed per shape.
    pub svd_samples: usize,
    /// Timed full passes of each randomized method (median reported).
    pub reps: usize,
    pub seed: u64,
    /// Shrink factor of the rate measurements (1 on the GPU).
    pub rate_scale: usize,
}

/// One method's result.
#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    pub method: String,
    /// Seconds for all targeted matrices (extrapolated for `exact*`, see `extrapolated`).
    pub total_s: f64,
    pub extrapolated: bool,
    /// Every timed full pass (seconds).
    pub samples_s: Vec<f64>,
    /// Mean residual over every matrix it was computed on.
    pub mean_residual: f64,
    /// Mean residual on the matrices that also have an exact SVD, and the ratio to exact's.
    pub residual_on_exact_set: f64,
    pub residual_ratio_vs_exact: f64,
    /// Counted FLOPs of the whole refresh and the floor FLOPs / measured f32 rate.
    pub flops: f64,
    pub flop_floor_s: f64,
    /// Seconds per matrix by shape `"m x n"` (exact: per-shape median).
    pub per_shape_s: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct P1Report {
    pub device: String,
    pub options: P1Options,
    pub rates: Rates,
    pub n_matrices: usize,
    /// Host time to draw xoshiro Gaussian test matrices of one cold RSI pass (the earlier path).
    pub host_gaussian_s: f64,
    /// Step-by-step timing of the earlier host-drawn-Omega path (see [`LegacyProbe`]).
    pub legacy_probe: Vec<LegacyProbe>,
    pub methods: Vec<MethodResult>,
}

fn shape_key(t: &Target) -> String {
    format!("{}x{}", t.rows, t.cols)
}

/// FLOPs of cold/warm RSI on `[m, n]` (`q` power iterations, width `k`, output rank `r`):
/// `2q + 2` products of `2 m n k`, one CholeskyQR2 (`8 rows k^2`) after each product, and the
/// final `Q W` product.
pub fn rsi_flops(m: usize, n: usize, k: usize, r: usize, q: usize, side: Side) -> f64 {
    let (ms, ns) = match side {
        Side::Right => (m as f64, n as f64),
        Side::Left => (n as f64, m as f64),
    };
    let (k, r) = (k as f64, r as f64);
    let products = (2 * q + 2) as f64 * 2.0 * ms * ns * k;
    let qrs = 8.0 * k * k * (ms + (q as f64) * (ms + ns) + ns);
    products + qrs + 2.0 * ns * k * r
}

/// Runs P1 on `dev`.
pub fn run(dev: &Device, opt: &P1Options) -> Result<P1Report> {
    let d = &opt.dims;
    let r = d.rank;
    let rates = floors::measure(dev, opt.rate_scale)?;
    eprintln!("p1: rates {rates:?}");
    let ts = targets(d);
    let cfg_q2 = RsiConfig {
        oversample: opt.oversample,
        power_iters: 2,
    };
    let cfg_q1 = RsiConfig {
        oversample: opt.oversample,
        power_iters: 1,
    };
    // Gradients and warm-start projectors (untimed).
    let mut grads = Vec::with_capacity(ts.len());
    let mut warm = Vec::with_capacity(ts.len());
    for (i, t) in ts.iter().enumerate() {
        let f = synth::factors(t.rows, t.cols, &opt.spectrum, dev)?;
        let prev = synth::gradient(&synth::drifted(&f, 0.2)?)?;
        let mut rng = Rng::derive(opt.seed ^ 0x5eed, i as u64);
        warm.push(rsi_subspace(&prev, r, t.side(), &cfg_q2, &mut rng, None)?);
        drop(prev);
        grads.push(synth::gradient(&f)?);
    }
    dev.synchronize()?;
    eprintln!("p1: {} gradients generated", grads.len());

    // Exact SVD on svd_samples matrices per shape.
    let mut by_shape: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, t) in ts.iter().enumerate() {
        by_shape.entry(shape_key(t)).or_default().push(i);
    }
    let exact_set: Vec<usize> = by_shape
        .values()
        .flat_map(|v| v.iter().take(opt.svd_samples.max(1)).copied())
        .collect();
    // Warm-up of the solver (handle creation, kernels) on a small matrix.
    let small = Tensor::randn(0f32, 1f32, (256, 128), dev)?;
    svd_subspace(&small, 8, Side::Right)?;
    let mut methods = Vec::new();
    let mut exact_res = BTreeMap::new();
    type ExactFn = Box<dyn Fn(&Tensor, Side) -> Result<Tensor>>;
    #[cfg_attr(not(feature = "cuda"), allow(unused_mut))]
    let mut exact_drivers: Vec<(String, ExactFn)> = vec![(
        "exact_svd".into(),
        Box::new(move |g: &Tensor, side| Ok(svd_subspace(g, r, side)?)),
    )];
    #[cfg(feature = "cuda")]
    if dev.is_cuda() {
        use crosslore_linalg::cuda::{svd_subspace_with, SvdDriver};
        exact_drivers[0].0 = "exact_svd_gesvdj".into();
        exact_drivers.push((
            "exact_svd_gesvd".into(),
            Box::new(move |g: &Tensor, side| Ok(svd_subspace_with(g, r, side, SvdDriver::Gesvd)?)),
        ));
    }
    for (name, f) in &exact_drivers {
        let mut per_shape = BTreeMap::new();
        let mut total = 0.0;
        let mut res = Vec::new();
        for (key, idx) in &by_shape {
            let mut times = Vec::new();
            for &i in idx.iter().take(opt.svd_samples.max(1)) {
                let t = &ts[i];
                let (secs, p) = time_once(dev, &mut || f(&grads[i], t.side()))?;
                times.push(secs);
                let rr = subspace_residual(&grads[i], &p, t.side())? as f64;
                res.push(rr);
                exact_res.entry(i).or_insert(rr);
            }
            let med = median(&times);
            per_shape.insert(key.clone(), med);
            total += med * idx.len() as f64;
            eprintln!("p1: {name} {key}: {med:.3} s/matrix");
        }
        let mean = res.iter().sum::<f64>() / res.len().max(1) as f64;
        methods.push(MethodResult {
            method: name.clone(),
            total_s: total,
            extrapolated: true,
            samples_s: vec![total],
            mean_residual: mean,
            residual_on_exact_set: mean,
            residual_ratio_vs_exact: 1.0,
            flops: f64::NAN,
            flop_floor_s: f64::NAN,
            per_shape_s: per_shape,
        });
    }
    let exact_mean = exact_set.iter().map(|i| exact_res[i]).sum::<f64>() / exact_set.len() as f64;

    // Host cost of the Gaussian test matrices of one cold pass.
    let host_gaussian_s = {
        let t0 = std::time::Instant::now();
        for (i, t) in ts.iter().enumerate() {
            let (ns, k) = omega_dims(t, r, opt.oversample);
            let v = Rng::derive(opt.seed, i as u64).normal_vec(ns * k);
            std::hint::black_box(v);
        }
        t0.elapsed().as_secs_f64()
    };

    // Randomized methods over all matrices.
    let layout = HeadLayout {
        n_heads: d.n_heads,
        d_head: d.d_head,
    };
    type PassFn<'a> = Box<dyn Fn(usize, &Target) -> Result<Tensor> + 'a>;
    let grads_ref = &grads;
    let warm_ref = &warm;
    let seed = opt.seed;
    // Cold RSI as the optimizer runs it (Omega from the seeded counter-based stream, drawn on
    // the device), one matrix at a time or batched through `rsi_many`.
    let cold = |i: usize, t: &Target| -> Result<Tensor> {
        let mut rng = Rng::derive(seed, i as u64);
        Ok(rsi_subspace(
            &grads_ref[i],
            r,
            t.side(),
            &cfg_q2,
            &mut rng,
            None,
        )?)
    };
    let cross = |i: usize, t: &Target| -> Result<Tensor> {
        if t.is_qk() {
            let mut rng = Rng::derive(seed, i as u64);
            Ok(cross_head_projector(&grads_ref[i], &layout, r, &cfg_q2, &mut rng, None)?.0)
        } else {
            cold(i, t)
        }
    };
    // Batched passes: (matrix indices, whether q/k use cross-head).
    let batched = |idx: &[usize], cross_qk: bool| -> Result<Vec<Tensor>> {
        let rsi_idx: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| !(cross_qk && ts[i].is_qk()))
            .collect();
        let jobs: Vec<_> = rsi_idx
            .iter()
            .map(|&i| (&grads_ref[i], r, ts[i].side(), None))
            .collect();
        let mut rngs: Vec<Rng> = rsi_idx
            .iter()
            .map(|&i| Rng::derive(seed, i as u64))
            .collect();
        let mut ps = rsi_many(&jobs, &cfg_q2, &mut rngs)?.into_iter();
        let mut out = Vec::with_capacity(idx.len());
        for &i in idx {
            out.push(if cross_qk && ts[i].is_qk() {
                cross(i, &ts[i])?
            } else {
                ps.next()
                    .ok_or_else(|| crosslore_linalg::LinalgError::InvalidArgument {
                        op: "p1",
                        msg: "rsi_many returned too few projectors".into(),
                    })?
            });
        }
        Ok(out)
    };
    let all: Vec<usize> = (0..ts.len()).collect();
    let randomized: Vec<(&str, PassFn)> = vec![
        ("rsi_q2", Box::new(cold)),
        (
            "rsi_warm_q1",
            Box::new(|i, t: &Target| {
                let mut rng = Rng::derive(seed, i as u64);
                Ok(rsi_subspace(
                    &grads_ref[i],
                    r,
                    t.side(),
                    &cfg_q1,
                    &mut rng,
                    Some(&warm_ref[i]),
                )?)
            }),
        ),
        ("cross_head_qk+rsi_q2", Box::new(cross)),
    ];
    let batched_methods: Vec<(&str, bool)> = vec![
        ("rsi_q2_batched", false),
        ("cross_head_qk+rsi_q2_batched", true),
    ];
    for (name, cross_qk) in &batched_methods {
        batched(&all[..7], *cross_qk)?; // warm-up
        let mut last = Vec::new();
        let (med, samples) = median_time(dev, 0, opt.reps, || {
            last = batched(&all, *cross_qk)?;
            Ok(())
        })?;
        let mut per_shape = BTreeMap::new();
        for (key, idx) in &by_shape {
            let (s, _) = time_once(dev, &mut || batched(idx, *cross_qk))?;
            per_shape.insert(key.clone(), s / idx.len() as f64);
        }
        methods.push(summarize(
            name, *cross_qk, med, samples, per_shape, &last, &ts, &grads, &exact_set, exact_mean,
            d, &layout, opt, &rates,
        )?);
    }
    for (name, f) in &randomized {
        // Warm-up: one matrix of each shape kind.
        for (i, t) in ts.iter().enumerate().take(7) {
            f(i, t)?;
        }
        let mut last = Vec::new();
        let (med, samples) = median_time(dev, 0, opt.reps, || {
            last = ts
                .iter()
                .enumerate()
                .map(|(i, t)| f(i, t))
                .collect::<Result<Vec<_>>>()?;
            Ok(())
        })?;
        // Per-shape seconds per matrix (one synchronised pass per shape, informational).
        let mut per_shape = BTreeMap::new();
        for (key, idx) in &by_shape {
            let (s, _) = time_once(dev, &mut || {
                for &i in idx {
                    f(i, &ts[i])?;
                }
                Ok(())
            })?;
            per_shape.insert(key.clone(), s / idx.len() as f64);
        }
        methods.push(summarize(
            name,
            name.starts_with("cross_head"),
            med,
            samples,
            per_shape,
            &last,
            &ts,
            &grads,
            &exact_set,
            exact_mean,
            d,
            &layout,
            opt,
            &rates,
        )?);
    }
    let legacy_probe = legacy_probe(dev, &grads, &ts, r, &cfg_q2, opt.seed)?;
    for p in &legacy_probe {
        eprintln!("p1: legacy probe {p:?}");
    }
    Ok(P1Report {
        device: crate::device_name(dev),
        options: opt.clone(),
        rates,
        n_matrices: ts.len(),
        host_gaussian_s,
        legacy_probe,
        methods,
    })
}

/// Residuals, FLOPs and floors of one randomized method's pass.
#[allow(clippy::too_many_arguments)]
fn summarize(
    name: &str,
    cross_qk: bool,
    med: f64,
    samples: Vec<f64>,
    per_shape: BTreeMap<String, f64>,
    last: &[Tensor],
    ts: &[Target],
    grads: &[Tensor],
    exact_set: &[usize],
    exact_mean: f64,
    d: &ModelDims,
    layout: &HeadLayout,
    opt: &P1Options,
    rates: &Rates,
) -> Result<MethodResult> {
    let r = d.rank;
    let mut res = Vec::with_capacity(ts.len());
    let mut flops = 0.0;
    for (i, t) in ts.iter().enumerate() {
        let is_cross = cross_qk && t.is_qk();
        let side = if is_cross { Side::Right } else { t.side() };
        res.push(subspace_residual(&grads[i], &last[i], side)? as f64);
        let (_, k) = omega_dims(t, r, opt.oversample);
        flops += if name == "rsi_warm_q1" {
            rsi_flops(t.rows, t.cols, k, r, 1, side)
        } else if is_cross {
            let rows = d.d_head * crosslore_optim::cross_head::heads_needed(layout, r);
            8.0 * (t.cols * rows * rows) as f64 + 2.0 * (t.cols * rows * r) as f64
        } else {
            rsi_flops(t.rows, t.cols, k, r, 2, side)
        };
    }
    let mean = res.iter().sum::<f64>() / res.len() as f64;
    let on_exact = exact_set.iter().map(|&i| res[i]).sum::<f64>() / exact_set.len() as f64;
    eprintln!("p1: {name}: {med:.4} s, mean residual {mean:.5}");
    Ok(MethodResult {
        method: name.to_string(),
        total_s: med,
        extrapolated: false,
        samples_s: samples,
        mean_residual: mean,
        residual_on_exact_set: on_exact,
        residual_ratio_vs_exact: on_exact / exact_mean,
        flops,
        flop_floor_s: flops / rates.f32_thin_flops,
        per_shape_s: per_shape,
    })
}

/// `(rows, cols)` of the Gaussian test matrix `Omega` of a cold RSI pass on `t`: the projected
/// side's length by `k = r + oversample` (capped by the matrix).
fn omega_dims(t: &Target, r: usize, oversample: usize) -> (usize, usize) {
    let ns = match t.side() {
        Side::Right => t.cols,
        Side::Left => t.rows,
    };
    (ns, (r + oversample).min(t.rows).min(t.cols))
}

/// One matrix of the legacy host-Omega probe: seconds of each step, each ended by a device
/// synchronisation (`draw`: xoshiro normals on the host; `upload`: `Tensor::from_vec` to the
/// device; `rsi`: RSI q=2 with that `Omega`; `rsi_device_omega`: RSI with the counter-based
/// device draw, for comparison; `draw_after_rsi`: the same host draw repeated right after an RSI).
#[derive(Debug, Clone, Serialize)]
pub struct LegacyProbe {
    pub shape: String,
    pub draw_s: f64,
    pub upload_s: f64,
    pub rsi_s: f64,
    pub rsi_device_omega_s: f64,
    pub draw_after_rsi_s: f64,
    /// The draw's thread CPU time (user, system; from /proc/thread-self/stat, 10 ms ticks) and
    /// minor page faults.
    pub draw_user_s: f64,
    pub draw_sys_s: f64,
    pub draw_minflt: u64,
    /// The same draw right after a `vzeroupper` (x86-64 with AVX; NaN elsewhere): tests whether
    /// dirty upper vector-register state left by earlier code slows the SSE math of the draw.
    pub draw_after_vzeroupper_s: f64,
}

/// `(utime_s, stime_s, minflt)` of the calling thread (Linux; zeros elsewhere).
fn thread_times() -> (f64, f64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return (0.0, 0.0, 0);
    };
    // Fields after the parenthesised command: state is field 3; minflt 10, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| {
        f.get(i - 3)
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (num(14) as f64 / 100.0, num(15) as f64 / 100.0, num(10))
}

/// Seconds of one host draw of `n` xoshiro normals after `vzeroupper`.
fn draw_after_vzeroupper(seed: u64, i: u64, n: usize) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: vzeroupper only zeroes the upper halves of the vector registers (AVX present).
        unsafe { std::arch::asm!("vzeroupper") };
        let t = std::time::Instant::now();
        std::hint::black_box(Rng::derive(seed, i).normal_vec(n));
        return t.elapsed().as_secs_f64();
    }
    let _ = (seed, i, n);
    f64::NAN
}

fn legacy_probe(
    dev: &Device,
    grads: &[Tensor],
    ts: &[Target],
    r: usize,
    cfg: &RsiConfig,
    seed: u64,
) -> Result<Vec<LegacyProbe>> {
    let mut out = Vec::new();
    for (i, t) in ts.iter().enumerate().take(7) {
        let (ns, k) = omega_dims(t, r, cfg.oversample);
        let t0 = thread_times();
        let (draw_s, v) = time_once(dev, &mut || {
            Ok(Rng::derive(seed, i as u64).normal_vec(ns * k))
        })?;
        let t1 = thread_times();
        let mut v = Some(v);
        let (upload_s, omega) = time_once(dev, &mut || {
            Ok(Tensor::from_vec(
                v.take().unwrap_or_default(),
                (ns, k),
                dev,
            )?)
        })?;
        let mut rng = Rng::derive(seed, i as u64);
        let (rsi_s, _) = time_once(dev, &mut || {
            Ok(rsi_subspace(
                &grads[i],
                r,
                t.side(),
                cfg,
                &mut rng,
                Some(&omega),
            )?)
        })?;
        let (draw_after_rsi_s, _) = time_once(dev, &mut || {
            Ok(std::hint::black_box(
                Rng::derive(seed, i as u64).normal_vec(ns * k),
            ))
        })?;
        let (rsi_device_omega_s, _) = time_once(dev, &mut || {
            Ok(rsi_subspace(&grads[i], r, t.side(), cfg, &mut rng, None)?)
        })?;
        out.push(LegacyProbe {
            shape: shape_key(t),
            draw_s,
            upload_s,
            rsi_s,
            rsi_device_omega_s,
            draw_after_rsi_s,
            draw_user_s: t1.0 - t0.0,
            draw_sys_s: t1.1 - t0.1,
            draw_minflt: t1.2.saturating_sub(t0.2),
            draw_after_vzeroupper_s: draw_after_vzeroupper(seed, i as u64, ns * k),
        });
    }
    Ok(out)
}

/// The P1 table as Markdown.
pub fn table(rep: &P1Report) -> String {
    let exact = rep.methods.first().map(|m| m.total_s).unwrap_or(f64::NAN);
    let mut s = format!(
        "P1 projection refresh, {} matrices, rank {}, device {}\n\n| method | total s | x faster than exact | mean residual | residual / exact (same matrices) | FLOP floor s | measured / floor |\n|---|---|---|---|---|---|---|\n",
        rep.n_matrices, rep.options.dims.rank, rep.device
    );
    for m in &rep.methods {
        s += &format!(
            "| {}{} | {:.4} | {:.1} | {:.5} | {:.3} | {:.4} | {:.2} |\n",
            m.method,
            if m.extrapolated {
                " (extrapolated)"
            } else {
                ""
            },
            m.total_s,
            exact / m.total_s,
            m.mean_residual,
            m.residual_ratio_vs_exact,
            m.flop_floor_s,
            m.total_s / m.flop_floor_s
        );
    }
    s += &format!(
        "\nhost Gaussian draws of one cold RSI pass: {:.3} s; f32 thin matmul {:.1} TFLOP/s, copy {:.2} TB/s\n",
        rep.host_gaussian_s,
        rep.rates.f32_thin_flops / 1e12,
        rep.rates.copy_bytes_per_s / 1e12
    );
    s
}
