//! `gpu-check`: every device path against the CPU path of the same code on the same random
//! inputs (drawn on the host with a seeded [`Rng`], then copied to both devices).
//!
//! Measures and f32 tolerances (inputs are O(1); f32 unit roundoff u = 6e-8):
//! - `rel`: `||X_dev - X_cpu||_F / ||X_cpu||_F` for deterministic outputs (CholeskyQR2 `Q`,
//!   singular values, residuals): 1e-4 (products of length <= 2000 accumulate ~ sqrt(n) u..n u
//!   in different summation orders on each device, then go through a `[k, k]` Cholesky and
//!   inverse in f64).
//! - `proj`: `||P_d P_d^T - P_c P_c^T||_F / sqrt(2 r)` (sign-free subspace distance) for SVD,
//!   RSI and Gram subspaces: 1e-3 (test spectra decay geometrically, 0.9^i, so the gap at rank r
//!   is ~10 % and the subspace's sensitivity ~ u ||A|| / gap stays far below).
//! - Householder `Q` compared up to column signs (faer's f64 vs cuSOLVER's f32 reflectors): 1e-4.
//! - optimizer weights after 4 steps: `||W_dev - W_cpu||_F / ||W_cpu - W_0||_F` (relative to the
//!   total update): 1e-3 (Adam divides by `sqrt(v) + eps`, which amplifies rounding of small
//!   gradient entries), 4e-3 (= 2^-8) with bf16 gradients (see `run`); the sparse residual's index sets must agree to within 0.5 % of `|L|`
//!   (positions near the selection threshold may swap under rounding).
use candle_core::{DType, Device, Tensor, Var};
use crosslore_linalg::qr::{householder_qr, thin_qr};
use crosslore_linalg::rsi::{gram_subspace, rsi_subspace, RsiConfig};
use crosslore_linalg::svd::{subspace_residual, svd_subspace, thin_svd};
use crosslore_linalg::{Rng, Side};
use crosslore_optim::cross_head::{cross_head_projector, HeadLayout};
use crosslore_optim::crosslore::ModelHeads;
use crosslore_optim::groups::{default_rules, ProjSettings};
use crosslore_optim::residual::ResidualConfig;
use crosslore_optim::{
    AdamW, AdamWConfig, CrossLoreAdamW, CrossLoreConfig, GaLoreAdamW, GaLoreConfig, ParamOptimizer,
};
use serde::Serialize;

use crate::Result;

/// One comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub max_abs: f64,
    pub value: f64,
    pub tol: f64,
    pub pass: bool,
}

/// All comparisons of a run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CheckReport {
    pub device: String,
    pub checks: Vec<Check>,
}

impl CheckReport {
    pub fn all_pass(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    pub(crate) fn push(&mut self, name: &str, max_abs: f64, value: f64, tol: f64) {
        let pass = value.is_finite() && value <= tol;
        println!(
            "{} {name}: {value:.3e} (tol {tol:.0e}; max abs diff {max_abs:.3e})",
            if pass { "PASS" } else { "FAIL" }
        );
        self.checks.push(Check {
            name: name.into(),
            max_abs,
            value,
            tol,
            pass,
        });
    }
}

fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

fn fro(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

/// `(max |a - b|, ||a - b||_F / ||denom||_F)`.
pub(crate) fn rel(a: &Tensor, b: &Tensor, denom: Option<&Tensor>) -> Result<(f64, f64)> {
    let (x, y) = (host(a)?, host(b)?);
    let d: Vec<f32> = x.iter().zip(&y).map(|(p, q)| p - q).collect();
    let max = d.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let den = match denom {
        Some(t) => fro(&host(t)?),
        None => fro(&y),
    };
    Ok((max, if den > 0.0 { fro(&d) / den } else { fro(&d) }))
}

/// Sign-free subspace distance `||P P^T - Q Q^T||_F / sqrt(2 r)` (on the host).
pub(crate) fn proj(p: &Tensor, q: &Tensor) -> Result<(f64, f64)> {
    let p = p.to_device(&Device::Cpu)?;
    let q = q.to_device(&Device::Cpu)?;
    let (_, r) = p.dims2()?;
    let a = p.matmul(&p.t()?)?;
    let b = q.matmul(&q.t()?)?;
    let (max, _) = rel(&a, &b, None)?;
    let d = fro(&host(&(a - b)?)?);
    Ok((max, d / (2.0 * r as f64).sqrt()))
}

/// `q` with each column's sign flipped to agree with `reference` (`sign(diag(q^T ref))`).
fn align_columns(q: &Tensor, reference: &Tensor) -> Result<Tensor> {
    let q = q.to_device(&Device::Cpu)?;
    let d = q.t()?.matmul(&reference.to_device(&Device::Cpu)?)?;
    let k = d.dims2()?.0;
    let dv = host(&d)?;
    let signs: Vec<f32> = (0..k)
        .map(|i| if dv[i * k + i] < 0.0 { -1.0 } else { 1.0 })
        .collect();
    Ok(q.broadcast_mul(&Tensor::from_vec(signs, (1, k), &Device::Cpu)?)?)
}

pub(crate) fn gaussian(rng: &mut Rng, m: usize, n: usize) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        rng.normal_vec(m * n),
        (m, n),
        &Device::Cpu,
    )?)
}

/// `U diag(0.9^i) V^T + 1e-3 N` on the host, `[m, n]`, `k` components.
pub(crate) fn decaying(rng: &mut Rng, m: usize, n: usize, k: usize) -> Result<Tensor> {
    let u = householder_qr(&gaussian(rng, m, k)?)?;
    let v = householder_qr(&gaussian(rng, n, k)?)?;
    let s: Vec<f32> = (0..k).map(|i| 0.9f32.powi(i as i32)).collect();
    let s = Tensor::from_vec(s, (1, k), &Device::Cpu)?;
    let noise = (gaussian(rng, m, n)? * 1e-3)?;
    Ok((u.broadcast_mul(&s)?.matmul(&v.t()?)? + noise)?)
}

/// Runs every comparison of `dev` against the CPU.
pub fn run(dev: &Device, seed: u64) -> Result<CheckReport> {
    let cpu = Device::Cpu;
    let mut rep = CheckReport {
        device: crate::device_name(dev),
        ..Default::default()
    };
    let mut rng = Rng::new(seed);
    let on = |t: &Tensor| -> Result<Tensor> { Ok(t.to_device(dev)?) };

    // thin_qr (CholeskyQR2): deterministic signs (positive Cholesky diagonal).
    let y = gaussian(&mut rng, 2000, 136)?;
    let (qc, qd) = (thin_qr(&y)?, thin_qr(&on(&y)?)?);
    let (mx, r) = rel(&qd, &qc, None)?;
    rep.push("thin_qr CholeskyQR2 [2000,136] Q", mx, r, 1e-4);

    // Householder QR (cuSOLVER geqrf/orgqr on CUDA, faer f64 on CPU), up to column signs.
    let y = gaussian(&mut rng, 700, 64)?;
    let (hc, hd) = (householder_qr(&y)?, householder_qr(&on(&y)?)?);
    let (mx, r) = rel(&align_columns(&hd, &hc)?, &hc, None)?;
    rep.push(
        "householder_qr [700,64] Q (column signs aligned)",
        mx,
        r,
        1e-4,
    );

    // thin_qr fallback on a rank-deficient input: [A, A] with A: [500, 20].
    let a = gaussian(&mut rng, 500, 20)?;
    let y = Tensor::cat(&[&a, &a], 1)?;
    let (qc, qd) = (thin_qr(&y)?, thin_qr(&on(&y)?)?);
    let (mx, r) = proj(&qd.narrow(1, 0, 20)?, &qc.narrow(1, 0, 20)?)?;
    rep.push(
        "thin_qr rank-deficient [500,40] fallback: range(Y) subspace",
        mx,
        r,
        1e-4,
    );
    let qdh = qd.to_device(&cpu)?;
    let (mx, r) = rel(
        &qdh.t()?.matmul(&qdh)?,
        &Tensor::eye(40, DType::F32, &cpu)?,
        None,
    )?;
    rep.push(
        "thin_qr rank-deficient fallback: |Q^T Q - I| / |I| on device",
        mx,
        r,
        1e-5,
    );

    // Zero input: orthonormal completion, compared up to column signs.
    let z = Tensor::zeros((300, 16), DType::F32, &cpu)?;
    let (qc, qd) = (thin_qr(&z)?, thin_qr(&on(&z)?)?);
    let (mx, r) = rel(&align_columns(&qd, &qc)?, &qc, None)?;
    rep.push(
        "thin_qr zero [300,16] Q (column signs aligned)",
        mx,
        r,
        1e-6,
    );

    // Exact SVD (cuSOLVER gesvdj on CUDA vs faer).
    for (m, n) in [(500usize, 300usize), (300, 500), (256, 256)] {
        let a = decaying(&mut rng, m, n, 100)?;
        let ad = on(&a)?;
        let (sc, sd) = (thin_svd(&a)?, thin_svd(&ad)?);
        let (mx, r) = rel(&sd.s.narrow(0, 0, 64)?, &sc.s.narrow(0, 0, 64)?, None)?;
        rep.push(
            &format!("thin_svd [{m},{n}] top-64 singular values"),
            mx,
            r,
            1e-4,
        );
        let (mx, r) = proj(&sd.u.narrow(1, 0, 32)?, &sc.u.narrow(1, 0, 32)?)?;
        rep.push(
            &format!("thin_svd [{m},{n}] U top-32 subspace"),
            mx,
            r,
            1e-3,
        );
        for side in [Side::Left, Side::Right] {
            let (pc, pd) = (svd_subspace(&a, 32, side)?, svd_subspace(&ad, 32, side)?);
            let (mx, r) = proj(&pd, &pc)?;
            rep.push(
                &format!("svd_subspace [{m},{n}] {side:?} r=32"),
                mx,
                r,
                1e-3,
            );
            #[cfg(feature = "cuda")]
            if dev.is_cuda() {
                use crosslore_linalg::cuda::{svd_subspace_with, SvdDriver};
                let pg = svd_subspace_with(&ad, 32, side, SvdDriver::Gesvd)?;
                let (mx, r) = proj(&pg, &pc)?;
                rep.push(
                    &format!("svd_subspace gesvd [{m},{n}] {side:?} r=32"),
                    mx,
                    r,
                    1e-3,
                );
            }
            let (rc, rd) = (
                subspace_residual(&a, &pc, side)?,
                subspace_residual(&ad, &pd, side)?,
            );
            let d = (rc - rd).abs() as f64;
            rep.push(
                &format!("subspace_residual [{m},{n}] {side:?}"),
                d,
                d / rc as f64,
                1e-4,
            );
        }
    }

    // RSI (seeded host Gaussians, identical on both devices), cold and warm.
    let cfg = RsiConfig::default();
    for (m, n) in [(600usize, 400usize), (400, 600)] {
        let a = decaying(&mut rng, m, n, 100)?;
        let ad = on(&a)?;
        for side in [Side::Left, Side::Right] {
            let (mut r1, mut r2) = (Rng::new(seed + 1), Rng::new(seed + 1));
            let pc = rsi_subspace(&a, 32, side, &cfg, &mut r1, None)?;
            let pd = rsi_subspace(&ad, 32, side, &cfg, &mut r2, None)?;
            let (mx, r) = proj(&pd, &pc)?;
            rep.push(
                &format!("rsi_subspace q=2 [{m},{n}] {side:?} r=32"),
                mx,
                r,
                1e-3,
            );
            let q1 = RsiConfig {
                power_iters: 1,
                ..cfg.clone()
            };
            let wc = rsi_subspace(&a, 32, side, &q1, &mut r1, Some(&pc))?;
            let wd = rsi_subspace(&ad, 32, side, &q1, &mut r2, Some(&on(&pc)?))?;
            let (mx, r) = proj(&wd, &wc)?;
            rep.push(
                &format!("rsi_subspace warm q=1 [{m},{n}] {side:?} r=32"),
                mx,
                r,
                1e-3,
            );
        }
    }

    // Gram subspace of a short matrix.
    let a = decaying(&mut rng, 48, 500, 48)?;
    let (pc, pd) = (
        gram_subspace(&a, 32, Side::Right)?,
        gram_subspace(&on(&a)?, 32, Side::Right)?,
    );
    let (mx, r) = proj(&pd, &pc)?;
    rep.push("gram_subspace [48,500] Right r=32", mx, r, 1e-3);

    // Cross-head projector: RSI path (1 head of 64 rows, r=16) and Gram path (2 heads of 32).
    for (heads, d_head, rank) in [(4usize, 64usize, 16usize), (8, 32, 64)] {
        let g = decaying(&mut rng, heads * d_head, 200, 100)?;
        let layout = HeadLayout {
            n_heads: heads,
            d_head,
        };
        let (mut r1, mut r2) = (Rng::new(seed + 2), Rng::new(seed + 2));
        let (pc, hc) = cross_head_projector(&g, &layout, rank, &cfg, &mut r1, None)?;
        let (pd, hd) = cross_head_projector(&on(&g)?, &layout, rank, &cfg, &mut r2, None)?;
        let (mx, r) = proj(&pd, &pc)?;
        let r = if hc == hd { r } else { f64::INFINITY };
        rep.push(
            &format!(
                "cross_head_projector [{},{}] d_head={d_head} r={rank}",
                heads * d_head,
                200
            ),
            mx,
            r,
            1e-3,
        );
    }

    optimizer_checks(dev, seed, &mut rep)?;
    #[cfg(feature = "cuda")]
    crate::check_kernels::run(dev, seed, &mut rep)?;
    crate::check_fused::run(dev, seed, &mut rep)?;
    Ok(rep)
}

/// The small model of the optimizer checks: (name, shape).
fn small_model() -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("model.layers.0.self_attn.q_proj.weight", vec![256, 256]),
        ("model.layers.0.mlp.up_proj.weight", vec![320, 128]),
        ("model.layers.0.mlp.down_proj.weight", vec![128, 320]),
        ("model.norm.weight", vec![128]),
    ]
}

/// Steps `opt` 4 times with the given gradients; returns the final weights.
fn steps(
    opt: &mut dyn ParamOptimizer,
    w0: &[Tensor],
    grads: &[Vec<Tensor>],
    dev: &Device,
) -> Result<Vec<Tensor>> {
    let vars: Vec<Var> = w0
        .iter()
        .map(|w| Var::from_tensor(&w.to_device(dev)?))
        .collect::<candle_core::Result<_>>()?;
    for g_step in grads {
        for ((name, _), (v, g)) in small_model().iter().zip(vars.iter().zip(g_step)) {
            opt.step_param(name, v, &g.to_device(dev)?)?;
        }
    }
    Ok(vars.iter().map(|v| v.as_tensor().clone()).collect())
}

fn optimizer_checks(dev: &Device, seed: u64, rep: &mut CheckReport) -> Result<()> {
    let mut rng = Rng::new(seed + 3);
    let model = small_model();
    let w0: Vec<Tensor> = model
        .iter()
        .map(|(_, s)| {
            let n: usize = s.iter().product();
            Ok(Tensor::from_vec(
                rng.normal_vec(n),
                s.as_slice(),
                &Device::Cpu,
            )?)
        })
        .collect::<Result<_>>()?;
    let grads: Vec<Vec<Tensor>> = (0..4)
        .map(|_| {
            model
                .iter()
                .map(|(_, s)| {
                    if s.len() == 2 {
                        decaying(&mut rng, s[0], s[1], 64)
                    } else {
                        Ok(Tensor::from_vec(rng.normal_vec(s[0]), s[0], &Device::Cpu)?)
                    }
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    let settings = ProjSettings {
        rank: 16,
        update_proj_gap: 100,
        ..ProjSettings::default()
    };
    let galore_cfg = GaLoreConfig {
        groups: default_rules(settings),
        weight_decay: 0.01,
        ..GaLoreConfig::default()
    };
    let cross_cfg = |ratio: f64| {
        let mut c = CrossLoreConfig {
            galore: galore_cfg.clone(),
            seed,
            residual: ResidualConfig {
                ratio,
                warmup_steps: Some(1),
                ..ResidualConfig::default()
            },
            ..CrossLoreConfig::default()
        };
        c.cross_head.heads = Some(ModelHeads {
            n_heads: 8,
            n_kv_heads: 8,
            d_head: 32,
        });
        c
    };
    type Make = Box<dyn Fn() -> Result<Box<dyn ParamOptimizer>>>;
    let gc = galore_cfg.clone();
    let makers: Vec<(&str, Make)> = vec![
        (
            "AdamW",
            Box::new(|| {
                Ok(Box::new(AdamW::new(AdamWConfig::default())?) as Box<dyn ParamOptimizer>)
            }),
        ),
        (
            "GaLoreAdamW",
            Box::new(
                move || Ok(Box::new(GaLoreAdamW::new(gc.clone())?) as Box<dyn ParamOptimizer>),
            ),
        ),
        ("CrossLoreAdamW (cross-head q, RSI, residual 5 %)", {
            let c = cross_cfg(0.05);
            Box::new(move || {
                Ok(Box::new(CrossLoreAdamW::new(c.clone())?) as Box<dyn ParamOptimizer>)
            })
        }),
    ];
    // The same optimizers with bf16 gradients (f32 weights) after the f32 ones: the low-rank
    // methods project a bf16 gradient in bf16 with f32 accumulation on both devices
    // (`Projector::project`), so the measure and tolerance are those of the f32 runs (the
    // summation order of the bf16 products differs: cuBLAS vs the CPU gemm).
    let grads_bf: Vec<Vec<Tensor>> = grads
        .iter()
        .map(|g| g.iter().map(|t| Ok(t.to_dtype(DType::BF16)?)).collect())
        .collect::<Result<_>>()?;
    // Tolerance of the bf16-gradient rows: the bf16 unit roundoff 2^-8 = 3.9e-3 (as fused-ops' bf16
    // checks). The projector is rounded to bf16 for the product, so the ~3.5e-6 subspace distance
    // between faer's and cuSOLVER's SVD flips single bf16 roundings of P, each moving entries of
    // the projected gradient by up to 2^-8 relative; Adam's normalisation passes that on to the
    // update. Measured on the H200: at most 1.33e-3 (GaLore down_proj, 2026-11-28 and -29), which
    // the f32 tolerance 1e-3 rejected although the f32-gradient runs agree to < 1e-4.
    for (tag, gs, tol) in [("", &grads, 1e-3), ("bf16 grads ", &grads_bf, 4e-3)] {
        for (label, make) in &makers {
            let mut oc = make()?;
            let mut od = make()?;
            let wc = steps(oc.as_mut(), &w0, gs, &Device::Cpu)?;
            let wd = steps(od.as_mut(), &w0, gs, dev)?;
            for (((name, _), (c, d)), w) in model.iter().zip(wc.iter().zip(&wd)).zip(&w0) {
                let upd = (c - w)?;
                let (mx, r) = rel(d, c, Some(&upd))?;
                rep.push(
                    &format!("{label} {tag}4 steps {name}: |W_dev - W_cpu| / |update|"),
                    mx,
                    r,
                    tol,
                );
            }
        }
    }
    // INFO (not a check; CPU only): how much GaLore with bf16 gradients amplifies a projector
    // difference of the size measured between faer and cuSOLVER (subspace distance ~3.5e-6,
    // "svd_subspace gesvd" above): the CPU run against itself with every refreshed projector
    // perturbed by that much. It bounds what the bf16-gradient GaLore comparison can reach.
    for (name, rel_diff) in galore_bf16_sensitivity(&w0, &grads_bf, &galore_cfg, 3.5e-6, seed)? {
        println!(
            "INFO GaLoreAdamW bf16 grads, CPU vs CPU with projectors perturbed by 3.5e-6: {name}: {rel_diff:.3e} of the update"
        );
    }
    // Residual index agreement (CrossLore, q_proj).
    let c = cross_cfg(0.05);
    let mut oc = CrossLoreAdamW::new(c.clone())?;
    let mut od = CrossLoreAdamW::new(c)?;
    steps(&mut oc, &w0, &grads, &Device::Cpu)?;
    steps(&mut od, &w0, &grads, dev)?;
    let name = model[0].0;
    if let (Some(rc), Some(rd)) = (oc.residual(name), od.residual(name)) {
        let ic: std::collections::BTreeSet<u32> = host_u32(rc.index())?.into_iter().collect();
        let id: std::collections::BTreeSet<u32> = host_u32(rd.index())?.into_iter().collect();
        let diff = ic.symmetric_difference(&id).count() as f64;
        rep.push(
            "CrossLore residual index sets: |L_dev xor L_cpu| / |L|",
            diff,
            diff / ic.len().max(1) as f64,
            5e-3,
        );
    } else {
        rep.push(
            "CrossLore residual index sets present",
            0.0,
            f64::INFINITY,
            0.0,
        );
    }
    Ok(())
}

/// `(name, ||W_perturbed - W|| / ||update||)` of 4 CPU GaLore steps whose refreshed projectors
/// get `delta * N(0, 1) / sqrt(rows)` added entrywise (subspace distance ~`delta`).
fn galore_bf16_sensitivity(
    w0: &[Tensor],
    grads: &[Vec<Tensor>],
    cfg: &GaLoreConfig,
    delta: f64,
    seed: u64,
) -> Result<Vec<(String, f64)>> {
    use crosslore_optim::projector::Projector;
    let mut plain = GaLoreAdamW::new(cfg.clone())?;
    let mut perturbed = GaLoreAdamW::new(cfg.clone())?;
    let mut rng = Rng::new(seed + 77);
    perturbed.set_refresh_hook(Some(Box::new(move |_, _, p: &mut Projector| {
        let (side, t) = match (p.left(), p.right()) {
            (Some(l), None) => (Side::Left, l.clone()),
            (None, Some(r)) => (Side::Right, r.clone()),
            _ => return Ok(()),
        };
        let (rows, cols) = t.dims2()?;
        let noise = Tensor::from_vec(rng.normal_vec(rows * cols), (rows, cols), t.device())?;
        let t = (t + (noise * (delta / (rows as f64).sqrt()))?)?;
        *p = Projector::one_sided(side, t)?;
        Ok(())
    })));
    let wa = steps(&mut plain, w0, grads, &Device::Cpu)?;
    let wb = steps(&mut perturbed, w0, grads, &Device::Cpu)?;
    let mut out = Vec::new();
    for (((name, _), (a, b)), w) in small_model().iter().zip(wa.iter().zip(&wb)).zip(w0) {
        let (_, r) = rel(b, a, Some(&(a - w)?))?;
        out.push((name.to_string(), r));
    }
    Ok(out)
}

fn host_u32(t: &Tensor) -> Result<Vec<u32>> {
    Ok(t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<u32>()?)
}
