//! `gpu-check` part 2: the fused CUDA kernels of `crosslore_linalg::kernels` against their CPU
//! twins on the same inputs (only with a CUDA device; see `check.rs` for the measures).
//!
//! Tolerances:
//! - counter-based normals: largest `|x_dev - x_cpu| / |x_cpu|` <= 2.4e-7 (= 2 f32 ulps; both
//!   sides compute the same f64 Box-Muller, the device's f64 `log`/`cos` may differ from libm in
//!   the last f64 bit, which moves the f32 rounding by at most one ulp).
//! - finiteness flags: exact (0 = all three answers right).
//! - AdamW on bf16 weights, 4 steps: largest `|W_dev - W_cpu| / |W_cpu|` <= 7.8e-3 (= 2 bf16
//!   ulps: the f32 update is computed in a different operation order on each side, which can flip
//!   a bf16 rounding of the weight at a step; later steps can carry that one ulp).
//! - sampled product (`r = 16` terms per entry): `rel` <= 1e-5 (different summation order).
//! - bf16 low-rank commit `w = (w - c u) d`: at most 1 bf16 ulp (the CPU rounds `c u` and the
//!   product by `d` separately in f32, the kernel keeps them in registers; same f32 formula).
//! - bf16 scatter-sub: largest `|W_dev - W_cpu|` in bf16 ulps of the entry <= 1 (both sides round
//!   the increment to bf16 and add in f32; equal unless candle's CPU affine rounds differently).
//! - `rsi_many` (batched device refresh) vs `rsi_subspace` on the CPU: subspace distance <= 1e-3.
//! - top-k of `|x|` and `SparseResidual::select` (submodule `topk`): exact, 0 differing indices.
use candle_core::{DType, Device, Tensor, Var};
use crosslore_linalg::kernels;
use crosslore_linalg::rng::counter_normal_vec;
use crosslore_linalg::rsi::{rsi_many, rsi_subspace, RsiConfig};
use crosslore_linalg::{Rng, Side};
use crosslore_optim::residual::sampled_product;
use crosslore_optim::{AdamW, AdamWConfig, ParamOptimizer};

use crate::check::{decaying, gaussian, proj, rel, CheckReport};
use crate::Result;

mod sq_norms;
mod topk;

pub fn run(dev: &Device, seed: u64, rep: &mut CheckReport) -> Result<()> {
    let Device::Cuda(cd) = dev else {
        return Ok(());
    };
    let mut rng = Rng::new(seed + 11);

    // Counter-based normal stream.
    let key = rng.next_key();
    let (rows, cols) = (1000, 137);
    let d = kernels::counter_normal(key, rows, cols, cd)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let c = counter_normal_vec(key, rows * cols);
    let (mx, worst) = max_rel_diff(&c, &d);
    rep.push(
        "counter_normal [1000,137]: max |dev - cpu| / |cpu|",
        mx,
        worst,
        2.4e-7,
    );

    // Finiteness flags (f32 clean, f32 with a NaN, bf16 with an Inf).
    let clean = gaussian(&mut rng, 300, 70)?.to_device(dev)?;
    let mut v = gaussian(&mut rng, 300, 70)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    v[12345] = f32::NAN;
    let nan = Tensor::from_vec(v.clone(), (300, 70), dev)?;
    v[12345] = f32::INFINITY;
    let inf = Tensor::from_vec(v, (300, 70), dev)?.to_dtype(DType::BF16)?;
    let right = !kernels::any_nonfinite(&clean)?
        && kernels::any_nonfinite(&nan)?
        && kernels::any_nonfinite(&inf)?;
    rep.push(
        "any_nonfinite f32 clean / f32 NaN / bf16 Inf",
        0.0,
        if right { 0.0 } else { 1.0 },
        0.0,
    );

    // AdamW on bf16 weights and gradients (fused kernel on CUDA, candle ops on the CPU).
    let shape = (192, 160);
    let w0 = gaussian(&mut rng, shape.0, shape.1)?.to_dtype(DType::BF16)?;
    let grads: Vec<Tensor> = (0..4)
        .map(|_| Ok(gaussian(&mut rng, shape.0, shape.1)?.to_dtype(DType::BF16)?))
        .collect::<Result<_>>()?;
    let run_adamw = |device: &Device| -> Result<Tensor> {
        let mut opt = AdamW::new(AdamWConfig::default())?;
        let var = Var::from_tensor(&w0.to_device(device)?)?;
        for g in &grads {
            opt.step_param("w", &var, &g.to_device(device)?)?;
        }
        Ok(var.as_tensor().to_device(&Device::Cpu)?)
    };
    let (wc, wd) = (run_adamw(&Device::Cpu)?, run_adamw(dev)?);
    let (c, d) = (host_f32(&wc)?, host_f32(&wd)?);
    let (mx, worst) = max_rel_diff(&c, &d);
    rep.push(
        "AdamW bf16 fused [192,160] 4 steps: max |W_dev - W_cpu| / |W_cpu|",
        mx,
        worst,
        7.8e-3,
    );

    // Sampled product at random distinct flat indices.
    let a = gaussian(&mut rng, 300, 16)?;
    let b = gaussian(&mut rng, 200, 16)?;
    let mut idx: Vec<u32> = rng
        .sample_distinct(300 * 200, 5000)
        .into_iter()
        .map(|i| i as u32)
        .collect();
    idx.sort_unstable();
    let idx_c = Tensor::from_vec(idx.clone(), idx.len(), &Device::Cpu)?;
    let pc = sampled_product(&a, &b, &idx_c)?;
    let pd = kernels::sampled_product(
        &a.to_device(dev)?,
        &b.to_device(dev)?,
        &idx_c.to_device(dev)?,
    )?;
    let (mx, r) = rel(&pd, &pc, None)?;
    rep.push(
        "sampled_product [300,16]x[200,16] at 5000 indices",
        mx,
        r,
        1e-5,
    );

    // bf16 scatter-sub vs candle's CPU scatter_add of the rounded increment.
    let w = gaussian(&mut rng, 300, 200)?.to_dtype(DType::BF16)?;
    let delta = Tensor::from_vec(rng.normal_vec(idx.len()), idx.len(), &Device::Cpu)?;
    let coef = 0.01f64;
    let wc = w.copy()?;
    let src = delta.affine(-coef, 0.0)?.to_dtype(DType::BF16)?;
    wc.flatten_all()?.scatter_add_set(&idx_c, &src, 0)?;
    let wd = w.to_device(dev)?;
    kernels::scatter_sub(
        &wd,
        &idx_c.to_device(dev)?,
        &delta.to_device(dev)?,
        coef as f32,
    )?;
    let (mx, ulps) = bf16_ulp_diff(&host_f32(&wc)?, &host_f32(&wd)?);
    rep.push(
        "scatter_sub bf16 [300,200] at 5000 indices: max diff in bf16 ulps",
        mx,
        ulps,
        1.0,
    );

    // Low-rank commit on a bf16 weight with a bf16 dense update: w = (w - c u) d.
    let w = gaussian(&mut rng, 300, 200)?.to_dtype(DType::BF16)?;
    let u = gaussian(&mut rng, 300, 200)?.to_dtype(DType::BF16)?;
    let (c_, d_) = (0.05f32, 0.999f32);
    let wc = ((w.to_dtype(DType::F32)? - (u.to_dtype(DType::F32)? * c_ as f64)?)? * d_ as f64)?
        .to_dtype(DType::BF16)?;
    let wd = w.to_device(dev)?;
    kernels::lowrank_update(&wd, &u.to_device(dev)?, c_, d_)?;
    let (mx, ulps) = bf16_ulp_diff(&host_f32(&wc)?, &host_f32(&wd)?);
    rep.push(
        "lowrank_update bf16 [300,200]: max diff in bf16 ulps",
        mx,
        ulps,
        1.0,
    );

    // Batched device refresh vs one-by-one on the CPU (same generators).
    let cfg = RsiConfig::default();
    let mats = [
        decaying(&mut rng, 600, 400, 100)?,
        decaying(&mut rng, 400, 600, 100)?,
        decaying(&mut rng, 500, 500, 100)?,
    ];
    let sides = [Side::Right, Side::Left, Side::Right];
    let on: Vec<Tensor> = mats
        .iter()
        .map(|m| m.to_device(dev))
        .collect::<candle_core::Result<_>>()?;
    let jobs: Vec<_> = on
        .iter()
        .zip(sides)
        .map(|(a, s)| (a, 32, s, None))
        .collect();
    let mut rngs: Vec<Rng> = (0..3).map(|i| Rng::derive(seed, i)).collect();
    let pd = rsi_many(&jobs, &cfg, &mut rngs)?;
    for (i, (a, s)) in mats.iter().zip(sides).enumerate() {
        let pc = rsi_subspace(a, 32, s, &cfg, &mut Rng::derive(seed, i as u64), None)?;
        let (mx, r) = proj(&pd[i], &pc)?;
        rep.push(
            &format!("rsi_many (device batch) matrix {i} {s:?} r=32"),
            mx,
            r,
            1e-3,
        );
    }
    sq_norms::run(dev, seed, rep)?;
    topk::run(dev, seed, rep)
}

/// Largest absolute difference of `d` from the reference `c`, and the largest one relative to the
/// reference entry (entries where the reference is 0 count only in the absolute one).
fn max_rel_diff(c: &[f32], d: &[f32]) -> (f64, f64) {
    let (mut mx, mut worst) = (0f64, 0f64);
    for (x, y) in d.iter().zip(c) {
        let diff = (x - y).abs() as f64;
        mx = mx.max(diff);
        if *y != 0.0 {
            worst = worst.max(diff / y.abs() as f64);
        }
    }
    (mx, worst)
}

fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// Largest absolute difference of `d` from the reference `c`, and the largest difference in bf16
/// ulps of the reference value (8 mantissa bits).
fn bf16_ulp_diff(c: &[f32], d: &[f32]) -> (f64, f64) {
    let (mut mx, mut ulps) = (0f64, 0f64);
    for (x, y) in d.iter().zip(c) {
        let diff = (x - y).abs() as f64;
        mx = mx.max(diff);
        if diff > 0.0 {
            ulps = ulps.max(diff / (y.abs() as f64 * 2f64.powi(-8)).max(f64::MIN_POSITIVE));
        }
    }
    (mx, ulps)
}
