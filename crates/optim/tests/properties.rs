//! Property tests of the optimizers: residual algebra, cross-head recovery, save/load
//! bit-identical continuation, degenerate and non-finite gradients, exact state bytes.
use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use candle_core::{DType, Device, Tensor, Var};
use crosslore_linalg::Rng;
use crosslore_optim::cross_head::HeadLayout;
use crosslore_optim::crosslore::{CrossHeadConfig, ModelHeads};
use crosslore_optim::residual::{ResidualConfig, ResidualMode};
use crosslore_optim::state::stored_tensor_bytes;
use crosslore_optim::{
    AdamW, AdamWConfig, CrossLoreAdamW, CrossLoreConfig, GaLoreAdamW, GaLoreConfig, GroupRule,
    OptimError, ParamOptimizer, ProjSettings, ProjType, Projector,
};

fn randn(rng: &mut Rng, dims: &[usize]) -> Result<Tensor> {
    let n = dims.iter().product();
    Ok(Tensor::from_vec(rng.normal_vec(n), dims, &Device::Cpu)?)
}

/// A rank-`k` `[m, n]` matrix.
fn low_rank(rng: &mut Rng, m: usize, n: usize, k: usize) -> Result<Tensor> {
    Ok(randn(rng, &[m, k])?.matmul(&randn(rng, &[k, n])?)?)
}

fn max_abs(t: &Tensor) -> Result<f32> {
    Ok(t.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

fn bits(t: &Tensor) -> Result<Vec<u32>> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .map(|x| x.to_bits())
        .collect())
}

fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(t.flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .all(|x| x.is_finite()))
}

fn settings(rank: usize, gap: usize) -> ProjSettings {
    ProjSettings {
        rank,
        update_proj_gap: gap,
        scale: 0.25,
        proj_type: ProjType::Std,
    }
}

const Q: &str = "model.layers.0.self_attn.q_proj.weight";
const K: &str = "model.layers.0.self_attn.k_proj.weight";
const UP: &str = "model.layers.0.mlp.up_proj.weight";
const NORM: &str = "model.layers.0.input_layernorm.weight";

/// A small LLaMA-like parameter set: d_model 16, 4 query heads / 2 kv heads of 4, FFN 24.
fn llama_params(rng: &mut Rng) -> Result<Vec<(String, Var)>> {
    Ok(vec![
        (Q.to_string(), Var::from_tensor(&randn(rng, &[16, 16])?)?),
        (K.to_string(), Var::from_tensor(&randn(rng, &[8, 16])?)?),
        (UP.to_string(), Var::from_tensor(&randn(rng, &[24, 16])?)?),
        (NORM.to_string(), Var::from_tensor(&randn(rng, &[16])?)?),
    ])
}

fn heads() -> CrossHeadConfig {
    CrossHeadConfig {
        heads: Some(ModelHeads {
            n_heads: 4,
            n_kv_heads: 2,
            d_head: 4,
        }),
        ..Default::default()
    }
}

fn galore_cfg(rank: usize, gap: usize) -> GaLoreConfig {
    GaLoreConfig {
        lr: 1e-2,
        weight_decay: 0.1,
        groups: crosslore_optim::groups::default_rules(settings(rank, gap)),
        ..Default::default()
    }
}

fn crosslore_cfg(rank: usize, gap: usize, ratio: f64, warmup: usize) -> CrossLoreConfig {
    CrossLoreConfig {
        galore: galore_cfg(rank, gap),
        cross_head: heads(),
        residual: ResidualConfig {
            ratio,
            warmup_steps: Some(warmup),
            ..Default::default()
        },
        seed: 42,
        ..Default::default()
    }
}

/// Gradients for `steps` steps of every parameter (seeded, shapes of `params`).
fn grads(params: &[(String, Var)], steps: usize, seed: u64) -> Result<Vec<Vec<Tensor>>> {
    let mut rng = Rng::new(seed);
    (0..steps)
        .map(|_| {
            params
                .iter()
                .map(|(_, v)| randn(&mut rng, v.dims()))
                .collect()
        })
        .collect()
}

fn run<O: ParamOptimizer>(opt: &mut O, params: &[(String, Var)], gs: &[Vec<Tensor>]) -> Result<()> {
    for step in gs {
        for ((n, v), g) in params.iter().zip(step) {
            opt.step_param(n, v, g)?;
        }
    }
    Ok(())
}

fn clone_params(params: &[(String, Var)]) -> Result<Vec<(String, Var)>> {
    params
        .iter()
        .map(|(n, v)| Ok((n.clone(), Var::from_tensor(&v.as_tensor().copy()?)?)))
        .collect()
}

/// With residual ratio 100 % and a projector fixed over the run (gap > steps), the
/// reconstructed first moment plus the residual, `M' P^T + dM`, equals full-rank Adam's first
/// moment (galore form, `M = b1 M + (1-b1) G`) on the same gradients (paper Eq. 9).
/// The first gradient has rank r, so it lies in the span of the projector computed from it and
/// the first step (where `L` is selected and no residual is tracked yet) leaves nothing out.
#[test]
fn residual_at_full_ratio_completes_the_first_moment() -> Result<()> {
    check_full_ratio_first_moment(ResidualMode::Paper)
}

/// The default mode stores the full first moment at `L` itself: at ratio 100 % `dM` is exactly
/// full AdamW's first moment (it starts from `project_back(M')`, which equals it after a first
/// gradient inside the projector's span).
#[test]
fn tracked_moments_at_full_ratio_hold_the_full_first_moment() -> Result<()> {
    check_full_ratio_first_moment(ResidualMode::TrackedMoments)
}

fn check_full_ratio_first_moment(mode: ResidualMode) -> Result<()> {
    let (m, n, r) = (12, 8, 3);
    let name = "w";
    let mut cfg = crosslore_cfg(r, 100, 1.0, 0);
    cfg.residual.mode = mode;
    cfg.galore.groups = vec![GroupRule::projected("^w$", settings(r, 100))];
    cfg.residual_targets = vec!["^w$".into()];
    let mut rng = Rng::new(5);
    let var = Var::from_tensor(&randn(&mut rng, &[m, n])?)?;
    let mut opt = CrossLoreAdamW::with_params(vec![(name.into(), var.clone())], cfg.clone())?;
    let b1 = cfg.galore.beta1;
    let mut full_m = Tensor::zeros((m, n), DType::F32, &Device::Cpu)?;
    for t in 0..6 {
        let g = if t == 0 {
            low_rank(&mut rng, m, n, r)?
        } else {
            randn(&mut rng, &[m, n])?
        };
        let info = opt.step_param(name, &var, &g)?;
        assert_eq!(info.residual_applied, t > 0);
        full_m = (full_m.affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
    }
    let p = opt.projector(name).ok_or_else(|| anyhow!("no projector"))?;
    let (mp, _) = opt.moments(name).ok_or_else(|| anyhow!("no moments"))?;
    let res = opt.residual(name).ok_or_else(|| anyhow!("no residual"))?;
    assert_eq!(res.len(), m * n);
    let idx: Vec<u32> = res.index().to_vec1()?;
    assert!(idx.iter().enumerate().all(|(i, &j)| i as u32 == j));
    let dm = res.dm().reshape((m, n))?; // L = all positions, sorted: [m, n]
    let recon = match mode {
        ResidualMode::Paper => (p.project_back(mp)? + dm)?,
        ResidualMode::TrackedMoments => dm,
    };
    let err = max_abs(&(&recon - &full_m)?)? / max_abs(&full_m)?;
    // f32 sums of ~10 terms of O(1): ~1e-6
    assert!(err < 1e-5, "M' P^T + dM vs full M: {err:e}");
    // and the low-rank part alone is far from it (the check is not vacuous)
    let lr_only = max_abs(&(p.project_back(mp)? - &full_m)?)? / max_abs(&full_m)?;
    assert!(lr_only > 0.1, "{lr_only}");
    Ok(())
}

/// With rank equal to the full dimension the projector is a rotation and the residual is zero.
#[test]
fn full_rank_gives_zero_residual() -> Result<()> {
    let (m, n) = (12, 8);
    let mut cfg = crosslore_cfg(n, 3, 0.5, 1);
    cfg.residual.mode = ResidualMode::Paper; // the residual moments themselves vanish
    cfg.galore.groups = vec![GroupRule::projected("^w$", settings(n, 3))];
    cfg.residual_targets = vec!["^w$".into()];
    let mut rng = Rng::new(6);
    let var = Var::from_tensor(&randn(&mut rng, &[m, n])?)?;
    let mut opt = CrossLoreAdamW::with_params(vec![("w".into(), var.clone())], cfg)?;
    for _ in 0..7 {
        let info = opt.step_param("w", &var, &randn(&mut rng, &[m, n])?)?;
        assert!(all_finite(var.as_tensor())?);
        let _ = info;
    }
    let res = opt.residual("w").ok_or_else(|| anyhow!("no residual"))?;
    assert_eq!(res.len(), m * n / 2);
    // gradients are O(1); dM, dV collect only rounding of G - G P P^T
    assert!(max_abs(res.dm())? < 1e-5, "dM {}", max_abs(res.dm())?);
    assert!(max_abs(res.dv())? < 1e-5, "dV {}", max_abs(res.dv())?);
    Ok(())
}

/// CrossLore on a q_proj whose heads all share one r-dimensional row space: the projector drawn
/// from one head spans it, so it projects every head (and later gradients with the same row
/// space) without loss.
#[test]
fn cross_head_recovers_shared_row_space() -> Result<()> {
    let mut rng = Rng::new(7);
    let params = llama_params(&mut rng)?;
    let cfg = crosslore_cfg(3, 100, 0.0, 0);
    let mut opt = CrossLoreAdamW::with_params(params.clone(), cfg)?;
    let basis = randn(&mut rng, &[3, 16])?; // shared row space
    let g = randn(&mut rng, &[16, 3])?.matmul(&basis)?;
    let (_, q) = &params[0];
    let info = opt.step_param(Q, q, &g)?;
    assert!(info.refreshed && info.projected);
    assert_eq!(
        opt.head_layout(Q),
        Some(HeadLayout {
            n_heads: 4,
            d_head: 4
        })
    );
    assert_eq!(opt.heads(Q).map(|h| h.len()), Some(1)); // ceil(3 / 4) heads
    let p = opt.projector(Q).ok_or_else(|| anyhow!("no projector"))?;
    assert_eq!(p.right().map(|r| r.dims().to_vec()), Some(vec![16, 3]));
    let res = opt
        .projection_residual(Q, &g)?
        .ok_or_else(|| anyhow!("no residual"))?;
    assert!(res < 1e-5, "subspace residual {res:e}");
    let g2 = randn(&mut rng, &[16, 3])?.matmul(&basis)?;
    let res2 = opt
        .projection_residual(Q, &g2)?
        .ok_or_else(|| anyhow!("no residual"))?;
    assert!(res2 < 1e-5, "subspace residual on a new gradient {res2:e}");
    // a gradient outside the shared row space is not captured (the check can fail)
    let g3 = randn(&mut rng, &[16, 16])?;
    let res3 = opt
        .projection_residual(Q, &g3)?
        .ok_or_else(|| anyhow!("no residual"))?;
    assert!(res3 > 0.5, "{res3}");
    Ok(())
}

/// Save mid-run, continue; load into a fresh optimizer with copies of the saved weights and
/// continue with the same gradients: bit-identical weights. Refreshes (and RNG draws) happen
/// after the save point; the residual is active before it.
fn roundtrip<O: ParamOptimizer>(mut a: O, params: Vec<(String, Var)>) -> Result<()> {
    let gs = grads(&params, 12, 99)?;
    run(&mut a, &params, &gs[..5])?;
    let dir = tempfile::tempdir()?;
    a.save(dir.path())?;
    let copy = clone_params(&params)?;
    run(&mut a, &params, &gs[5..])?;
    let mut b = O::load(dir.path(), &Device::Cpu)?;
    assert_eq!(b.state_bytes(), {
        let mut c = O::load(dir.path(), &Device::Cpu)?;
        let _ = &mut c;
        c.state_bytes()
    });
    run(&mut b, &copy, &gs[5..])?;
    for ((n, va), (_, vb)) in params.iter().zip(&copy) {
        assert_eq!(
            bits(va.as_tensor())?,
            bits(vb.as_tensor())?,
            "{n} differs after resume"
        );
    }
    assert_eq!(a.state_bytes(), b.state_bytes());
    Ok(())
}

#[test]
fn save_load_roundtrip_is_bit_identical_adamw() -> Result<()> {
    let params = llama_params(&mut Rng::new(8))?;
    roundtrip(AdamW::new(AdamWConfig::default())?, params)
}

#[test]
fn save_load_roundtrip_is_bit_identical_galore() -> Result<()> {
    let params = llama_params(&mut Rng::new(9))?;
    roundtrip(
        GaLoreAdamW::with_params(params.clone(), galore_cfg(3, 4))?,
        params,
    )
}

#[test]
fn save_load_roundtrip_is_bit_identical_crosslore() -> Result<()> {
    let params = llama_params(&mut Rng::new(10))?;
    let mut cfg = crosslore_cfg(3, 4, 0.1, 2);
    cfg.warm_start = true;
    cfg.residual.refresh_index_on_projection = true;
    cfg.galore.reproject_moments = true;
    let opt = CrossLoreAdamW::with_params(params.clone(), cfg)?;
    roundtrip(opt, params)
}

/// Zero and rank-deficient gradients, through refreshes: no NaN anywhere.
fn degenerate<O: ParamOptimizer>(mut opt: O, params: &[(String, Var)]) -> Result<()> {
    let mut rng = Rng::new(11);
    for t in 0..9 {
        for (n, v) in params {
            let g = match (t % 3, v.dims()) {
                (0, _) => v.as_tensor().zeros_like()?,
                (1, &[m, k]) => low_rank(&mut rng, m, k, 1)?,
                _ => randn(&mut rng, v.dims())?.affine(1e-30, 0.0)?, // tiny, subnormal squares
            };
            opt.step_param(n, v, &g)?;
            assert!(all_finite(v.as_tensor())?, "{n} step {t}");
        }
    }
    Ok(())
}

#[test]
fn zero_and_rank_deficient_gradients_give_no_nan() -> Result<()> {
    let p = llama_params(&mut Rng::new(12))?;
    degenerate(AdamW::new(AdamWConfig::default())?, &p)?;
    let p = llama_params(&mut Rng::new(12))?;
    degenerate(GaLoreAdamW::with_params(p.clone(), galore_cfg(3, 2))?, &p)?;
    let p = llama_params(&mut Rng::new(12))?;
    let opt = CrossLoreAdamW::with_params(p.clone(), crosslore_cfg(3, 2, 0.2, 1))?;
    degenerate(opt, &p)
}

/// A NaN or Inf gradient is a typed error; weights and state are untouched, so the run
/// continues exactly as if the bad gradient had never been offered.
fn non_finite<O: ParamOptimizer>(mk: impl Fn(&[(String, Var)]) -> Result<O>) -> Result<()> {
    let params = llama_params(&mut Rng::new(13))?;
    let copy = clone_params(&params)?;
    let (mut a, mut b) = (mk(&params)?, mk(&copy)?);
    let gs = grads(&params, 6, 14)?;
    run(&mut a, &params, &gs[..3])?;
    run(&mut b, &copy, &gs[..3])?;
    let dir = tempfile::tempdir()?;
    a.save(dir.path())?;
    let before_state = std::fs::read(dir.path().join("optimizer.safetensors"))?;
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for (n, v) in &params {
            let before = bits(v.as_tensor())?;
            let mut data = randn(&mut Rng::new(1), v.dims())?
                .flatten_all()?
                .to_vec1::<f32>()?;
            data[v.elem_count() / 2] = bad;
            let g = Tensor::from_vec(data, v.dims(), &Device::Cpu)?;
            // A bf16 gradient too: the low-rank methods check it in bf16 (no f32 copy).
            for g in [g.clone(), g.to_dtype(DType::BF16)?] {
                match a.step_param(n, v, &g) {
                    Err(OptimError::NonFinite { param }) => assert_eq!(&param, n),
                    other => panic!(
                        "expected NonFinite for {n} ({:?}), got {other:?}",
                        g.dtype()
                    ),
                }
            }
            assert_eq!(bits(v.as_tensor())?, before, "{n} weight changed");
        }
    }
    a.save(dir.path())?;
    assert_eq!(
        std::fs::read(dir.path().join("optimizer.safetensors"))?,
        before_state
    );
    run(&mut a, &params, &gs[3..])?;
    run(&mut b, &copy, &gs[3..])?;
    for ((n, va), (_, vb)) in params.iter().zip(&copy) {
        assert_eq!(bits(va.as_tensor())?, bits(vb.as_tensor())?, "{n}");
    }
    Ok(())
}

#[test]
fn non_finite_gradient_is_an_error_and_leaves_everything_untouched() -> Result<()> {
    non_finite(|_| Ok(AdamW::new(AdamWConfig::default())?))?;
    non_finite(|p| Ok(GaLoreAdamW::with_params(p.to_vec(), galore_cfg(3, 2))?))?;
    non_finite(|p| {
        Ok(CrossLoreAdamW::with_params(
            p.to_vec(),
            crosslore_cfg(3, 2, 0.2, 1),
        )?)
    })
}

/// The exact state-byte count equals the bytes of the saved tensors, and for the test shapes
/// DESIGN.md §1.3's formula: right side `4 (n r + 2 m r) + 12 |L|`, plain `4 * 2 m n`.
#[test]
fn state_bytes_are_exact() -> Result<()> {
    let params = llama_params(&mut Rng::new(15))?;
    let gs = grads(&params, 4, 16)?;
    let dir = tempfile::tempdir()?;
    let r = 3;
    let ratio = 0.1;
    let mut opt = CrossLoreAdamW::with_params(params.clone(), crosslore_cfg(r, 2, ratio, 1))?;
    run(&mut opt, &params, &gs)?;
    opt.save(dir.path())?;
    let sb = opt.state_bytes();
    assert_eq!(sb.total, stored_tensor_bytes(dir.path())?);
    let l = |m: usize, n: usize| (ratio * (m * n) as f64).round() as usize;
    let expected: BTreeMap<String, usize> = [
        (Q.to_string(), 4 * (16 * r + 2 * 16 * r) + 12 * l(16, 16)),
        (K.to_string(), 4 * (16 * r + 2 * 8 * r) + 12 * l(8, 16)),
        (UP.to_string(), 4 * (16 * r + 2 * 24 * r)), // tall: right side, no residual
        (NORM.to_string(), 4 * 2 * 16),
    ]
    .into_iter()
    .collect();
    assert_eq!(sb.per_param, expected);

    let mut g = GaLoreAdamW::with_params(params.clone(), galore_cfg(r, 2))?;
    run(&mut g, &params, &gs)?;
    g.save(dir.path())?;
    assert_eq!(g.state_bytes().total, stored_tensor_bytes(dir.path())?);
    let mut a = AdamW::new(AdamWConfig::default())?;
    run(&mut a, &params, &gs)?;
    a.save(dir.path())?;
    assert_eq!(a.state_bytes().total, stored_tensor_bytes(dir.path())?);
    assert_eq!(
        a.state_bytes().total,
        4 * 2 * (16 * 16 + 8 * 16 + 24 * 16 + 16)
    );
    Ok(())
}

#[test]
fn rank_above_min_dimension_is_a_config_error_at_construction() -> Result<()> {
    let params = llama_params(&mut Rng::new(17))?;
    for res in [
        GaLoreAdamW::with_params(params.clone(), galore_cfg(9, 2)).map(|_| ()),
        CrossLoreAdamW::with_params(params.clone(), crosslore_cfg(9, 2, 0.0, 1)).map(|_| ()),
    ] {
        match res {
            Err(OptimError::Config { param, msg }) => {
                assert_eq!(param, K, "{msg}"); // k_proj is [8, 16]
            }
            other => panic!("expected a config error, got {:?}", other.err()),
        }
    }
    // cross-head target without a head layout
    let mut cfg = crosslore_cfg(3, 2, 0.0, 1);
    cfg.cross_head.heads = None;
    assert!(matches!(
        CrossLoreAdamW::with_params(params, cfg),
        Err(OptimError::Config { .. })
    ));
    Ok(())
}

/// `candle_nn::Optimizer::step` from a `GradStore` equals `step_param` with the same gradient.
#[test]
fn candle_optimizer_trait_matches_step_param() -> Result<()> {
    use candle_nn::Optimizer;
    let mut rng = Rng::new(18);
    let w0 = randn(&mut rng, &[6, 4])?;
    let x = randn(&mut rng, &[4, 3])?;
    let a = Var::from_tensor(&w0)?;
    let b = Var::from_tensor(&w0)?;
    let cfg = GaLoreConfig {
        groups: vec![GroupRule::projected("param", settings(2, 3))],
        ..Default::default()
    };
    let mut oa = <GaLoreAdamW as Optimizer>::new(vec![a.clone()], cfg.clone())?;
    let mut ob = GaLoreAdamW::new(cfg)?;
    for _ in 0..4 {
        let loss = a.as_tensor().matmul(&x)?.sqr()?.sum_all()?;
        oa.backward_step(&loss)?;
        let g = (b.as_tensor().matmul(&x)?.matmul(&x.t()?)? * 2.0)?;
        let info = ob.step_param("param.0", &b, &g)?;
        assert!(info.projected);
    }
    let d = max_abs(&(a.as_tensor() - b.as_tensor())?)?;
    assert!(d < 1e-5, "{d}");
    assert!(max_abs(&(a.as_tensor() - &w0)?)? > 1e-3);
    Ok(())
}

/// Moment re-projection: when the new projector is the old one with permuted and flipped
/// columns, the re-projected moments are the old ones with the same columns permuted (and the
/// first moment's columns flipped), which makes the update basis-independent.
#[test]
fn moment_reprojection_follows_the_basis() -> Result<()> {
    let mut rng = Rng::new(19);
    let p = crosslore_linalg::qr::thin_qr(&randn(&mut rng, &[8, 3])?)?; // [8, 3]
    let old = Projector::one_sided(crosslore_linalg::Side::Right, p.clone())?;
    let cols = [
        p.narrow(1, 2, 1)?,
        p.narrow(1, 0, 1)?.neg()?,
        p.narrow(1, 1, 1)?,
    ];
    let new = Projector::one_sided(crosslore_linalg::Side::Right, Tensor::cat(&cols, 1)?)?;
    let m = randn(&mut rng, &[5, 3])?;
    let v = randn(&mut rng, &[5, 3])?.sqr()?;
    let (m2, v2) = old.reproject_moments(&new, &m, &v)?;
    let em = Tensor::cat(
        &[
            m.narrow(1, 2, 1)?,
            m.narrow(1, 0, 1)?.neg()?,
            m.narrow(1, 1, 1)?,
        ],
        1,
    )?;
    let ev = Tensor::cat(
        &[v.narrow(1, 2, 1)?, v.narrow(1, 0, 1)?, v.narrow(1, 1, 1)?],
        1,
    )?;
    assert!(max_abs(&(&m2 - em)?)? < 1e-5);
    assert!(max_abs(&(v2 - ev)?)? < 1e-5);
    // and the reconstruction M' P^T is unchanged
    let d = max_abs(&(old.project_back(&m)? - new.project_back(&m2)?)?)?;
    assert!(d < 1e-5, "{d}");
    Ok(())
}

/// With residual ratio 0 and no cross-head targets, CrossLore is GaLore with another projector:
/// injecting GaLore's projectors through the refresh hook gives bit-identical weights (the
/// low-rank update, the weight-decay order and the plain parameters are the same code path).
#[test]
fn crosslore_at_ratio_zero_with_galore_projectors_is_galore() -> Result<()> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let params = llama_params(&mut Rng::new(20))?;
    let copy = clone_params(&params)?;
    let gs = grads(&params, 9, 21)?;
    let seen: Arc<Mutex<HashMap<(String, u64), Projector>>> = Arc::default();
    let mut g = GaLoreAdamW::with_params(params.clone(), galore_cfg(3, 4))?;
    let rec = seen.clone();
    g.set_refresh_hook(Some(Box::new(
        move |name: &str, step: u64, p: &mut Projector| {
            if let Ok(mut m) = rec.lock() {
                m.insert((name.to_string(), step), p.clone());
            }
            Ok(())
        },
    )));
    run(&mut g, &params, &gs)?;
    let mut cfg = crosslore_cfg(3, 4, 0.0, 1);
    cfg.cross_head.targets.clear();
    let mut c = CrossLoreAdamW::with_params(copy.clone(), cfg)?;
    let inj = seen.clone();
    c.set_refresh_hook(Some(Box::new(
        move |name: &str, step: u64, p: &mut Projector| {
            let m = inj.lock().map_err(|_| OptimError::State {
                msg: "poisoned".into(),
            })?;
            *p = m
                .get(&(name.to_string(), step))
                .cloned()
                .ok_or_else(|| OptimError::State {
                    msg: format!("no projector {name} {step}"),
                })?;
            Ok(())
        },
    )));
    run(&mut c, &copy, &gs)?;
    assert_eq!(seen.lock().map_err(|_| anyhow!("poisoned"))?.len(), 3 * 3);
    for ((n, va), (_, vb)) in params.iter().zip(&copy) {
        assert_eq!(bits(va.as_tensor())?, bits(vb.as_tensor())?, "{n}");
    }
    Ok(())
}

/// bf16 weights are updated in f32 and stored back in bf16; the state stays f32.
#[test]
fn bf16_weights_step_with_f32_state() -> Result<()> {
    let mut rng = Rng::new(22);
    let w = randn(&mut rng, &[12, 8])?;
    let v16 = Var::from_tensor(&w.to_dtype(DType::BF16)?)?;
    let v32 = Var::from_tensor(&w.to_dtype(DType::BF16)?.to_dtype(DType::F32)?)?;
    let mut cfg = galore_cfg(3, 2);
    cfg.groups = vec![GroupRule::projected("^w$", settings(3, 2))];
    let (mut a, mut b) = (GaLoreAdamW::new(cfg.clone())?, GaLoreAdamW::new(cfg)?);
    let g = randn(&mut rng, &[12, 8])?;
    a.step_param("w", &v16, &g.to_dtype(DType::BF16)?)?;
    b.step_param("w", &v32, &g.to_dtype(DType::BF16)?.to_dtype(DType::F32)?)?;
    assert_eq!(v16.dtype(), DType::BF16);
    let (m, _) = a.moments("w").ok_or_else(|| anyhow!("no moments"))?;
    assert_eq!(m.dtype(), DType::F32);
    let expect = v32
        .as_tensor()
        .to_dtype(DType::BF16)?
        .to_dtype(DType::F32)?;
    let got = v16.as_tensor().to_dtype(DType::F32)?;
    assert_eq!(bits(&got)?, bits(&expect)?);
    Ok(())
}

/// The optimizers actually optimise: least squares `min ||W X - Y||^2` with a rank-2 target
/// `Y = W* X`; 60 steps of each optimizer at least halve the loss, and the refresh steps
/// report the projector's residual on the gradient (paper Fig. 2b telemetry).
#[test]
fn optimizers_reduce_a_least_squares_loss() -> Result<()> {
    let mut rng = Rng::new(23);
    let (m, n, b) = (16, 16, 32);
    let x = randn(&mut rng, &[n, b])?;
    let y = low_rank(&mut rng, m, n, 2)?.matmul(&x)?;
    let w0 = randn(&mut rng, &[m, n])?.affine(0.1, 0.0)?;
    let loss = |w: &Tensor| -> Result<f32> {
        Ok((w.matmul(&x)? - &y)?.sqr()?.sum_all()?.to_scalar::<f32>()?)
    };
    let grad =
        |w: &Tensor| -> Result<Tensor> { Ok(((w.matmul(&x)? - &y)?.matmul(&x.t()?)? * 2.0)?) };
    let name = Q; // cross-head + residual target for CrossLore
    let mk_rule = || {
        GroupRule::projected(
            "q_proj",
            ProjSettings {
                scale: 1.0,
                ..settings(4, 10)
            },
        )
    };
    let mut galore_cfg = galore_cfg(4, 10);
    galore_cfg.groups = vec![mk_rule()];
    galore_cfg.weight_decay = 0.0;
    galore_cfg.lr = 0.05;
    let mut cross_cfg = crosslore_cfg(4, 10, 0.05, 10);
    cross_cfg.galore = galore_cfg.clone();
    // the paper's residual formula diverges here (see the report / residual.rs `ResidualMode`)
    cross_cfg.residual.mode = crosslore_optim::residual::ResidualMode::TrackedMoments;
    let mut cross0_cfg = cross_cfg.clone();
    cross0_cfg.residual.ratio = 0.0;
    let adamw_cfg = AdamWConfig {
        lr: 0.05,
        weight_decay: 0.0,
        ..Default::default()
    };
    let opts: Vec<(&str, Box<dyn ParamOptimizer>)> = vec![
        ("adamw", Box::new(AdamW::new(adamw_cfg)?)),
        ("galore", Box::new(GaLoreAdamW::new(galore_cfg)?)),
        ("crosslore", Box::new(CrossLoreAdamW::new(cross_cfg)?)),
        (
            "crosslore-ratio0",
            Box::new(CrossLoreAdamW::new(cross0_cfg)?),
        ),
    ];
    for (label, mut opt) in opts {
        let v = Var::from_tensor(&w0)?;
        let l0 = loss(v.as_tensor())?;
        let mut refreshes = 0;
        for t in 0..60 {
            let info = opt.step_param(name, &v, &grad(v.as_tensor())?)?;
            if let Some(r) = info.refresh_residual {
                assert!(info.refreshed && (0.0..=1.0).contains(&r), "{label} {r}");
                refreshes += 1;
            }
            if label == "crosslore" {
                assert_eq!(info.residual_applied, t >= 10, "{label} step {t}");
            }
        }
        let l1 = loss(v.as_tensor())?;
        eprintln!("{label}: loss {l0} -> {l1}");
        assert!(l1 < 0.5 * l0, "{label}: loss {l0} -> {l1}");
        assert_eq!(refreshes, if label == "adamw" { 0 } else { 6 }, "{label}");
    }
    Ok(())
}

/// Loading a missing, foreign or corrupt state directory is a typed error naming the file.
#[test]
fn load_errors_are_typed_and_name_the_file() -> Result<()> {
    let params = llama_params(&mut Rng::new(24))?;
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("nope");
    match GaLoreAdamW::load(&missing, &Device::Cpu) {
        Err(OptimError::Io { path, .. }) => assert!(path.ends_with("optimizer.json")),
        other => panic!("expected Io, got {:?}", other.err()),
    }
    let mut a = AdamW::new(AdamWConfig::default())?;
    run(&mut a, &params, &grads(&params, 1, 25)?)?;
    a.save(dir.path())?;
    assert!(!dir.path().join("optimizer.json.tmp").exists());
    match GaLoreAdamW::load(dir.path(), &Device::Cpu) {
        Err(OptimError::State { msg }) => assert!(msg.contains("AdamW"), "{msg}"),
        other => panic!("expected State, got {:?}", other.err()),
    }
    std::fs::write(dir.path().join("optimizer.json"), b"{ not json")?;
    match AdamW::load(dir.path(), &Device::Cpu) {
        Err(OptimError::State { msg }) => assert!(msg.contains("optimizer.json"), "{msg}"),
        other => panic!("expected State, got {:?}", other.err()),
    }
    Ok(())
}

const V: &str = "model.layers.0.self_attn.v_proj.weight";
const DOWN: &str = "model.layers.0.mlp.down_proj.weight";

/// [`llama_params`] plus a value (right side) and a down projection (left side): one-sided
/// RSI refreshes that `step_params` batches, besides the cross-head q/k and the plain norm.
fn batch_params(rng: &mut Rng) -> Result<Vec<(String, Var)>> {
    let mut p = llama_params(rng)?;
    p.push((V.to_string(), Var::from_tensor(&randn(rng, &[8, 16])?)?));
    p.push((DOWN.to_string(), Var::from_tensor(&randn(rng, &[16, 24])?)?));
    Ok(p)
}

fn step_all<O: ParamOptimizer>(
    opt: &mut O,
    params: &[(String, Var)],
    g: &[Tensor],
) -> Result<Vec<crosslore_optim::StepInfo>> {
    let items: Vec<(&str, &Var, &Tensor)> = params
        .iter()
        .zip(g)
        .map(|((n, v), g)| (n.as_str(), v, g))
        .collect();
    Ok(opt.step_params(&items)?)
}

/// The loop of `step_param` over `params` with gradients `g` (what `step_params` must equal).
fn step_loop<O: ParamOptimizer>(
    opt: &mut O,
    params: &[(String, Var)],
    g: &[Tensor],
) -> Result<Vec<crosslore_optim::StepInfo>> {
    params
        .iter()
        .zip(g)
        .map(|((n, v), g)| Ok(opt.step_param(n, v, g)?))
        .collect()
}

/// `a` and `b` save byte-identical state files.
fn assert_same_saved_state<O: ParamOptimizer>(a: &O, b: &O, what: &str) -> Result<()> {
    let (da, db) = (tempfile::tempdir()?, tempfile::tempdir()?);
    a.save(da.path())?;
    b.save(db.path())?;
    for f in ["optimizer.safetensors", "optimizer.json"] {
        assert_eq!(
            std::fs::read(da.path().join(f))?,
            std::fs::read(db.path().join(f))?,
            "{f} {what}"
        );
    }
    Ok(())
}

/// CrossLore's batched `step_params` (refreshes through `rsi_many`, one finiteness pass) gives
/// bit-identical weights, step infos and saved state to the loop of `step_param`, through
/// several refreshes (gap 3), with warm starts, the residual and a two-sided (`Full`) variant.
#[test]
fn crosslore_step_params_equals_the_step_param_loop_bit_identically() -> Result<()> {
    for (warm, full) in [(false, false), (true, false), (false, true)] {
        let mut cfg = crosslore_cfg(3, 3, 0.1, 2);
        cfg.warm_start = warm;
        if full {
            cfg.galore.groups = crosslore_optim::groups::default_rules(ProjSettings {
                proj_type: ProjType::Full,
                ..settings(3, 3)
            });
            cfg.residual.ratio = 0.0; // the residual needs a one-sided projection
        }
        let params = batch_params(&mut Rng::new(21))?;
        let copy = clone_params(&params)?;
        let mut a = CrossLoreAdamW::with_params(params.clone(), cfg.clone())?;
        let mut b = CrossLoreAdamW::with_params(copy.clone(), cfg)?;
        let gs = grads(&params, 8, 22)?;
        for (t, g) in gs.iter().enumerate() {
            let ia = step_loop(&mut a, &params, g)?;
            let ib = step_all(&mut b, &copy, g)?;
            assert_eq!(ia, ib, "step infos, step {t} (warm {warm}, full {full})");
            assert!(ia.iter().any(|i| i.refreshed) == (t % 3 == 0), "step {t}");
        }
        for ((n, va), (_, vb)) in params.iter().zip(&copy) {
            assert_eq!(
                bits(va.as_tensor())?,
                bits(vb.as_tensor())?,
                "{n} (warm {warm}, full {full})"
            );
        }
        assert_same_saved_state(&a, &b, &format!("(warm {warm}, full {full})"))?;
    }
    Ok(())
}

/// GaLore's `step_params` (batched finiteness check) equals its `step_param` loop bit for bit.
#[test]
fn galore_step_params_equals_the_step_param_loop_bit_identically() -> Result<()> {
    let params = batch_params(&mut Rng::new(25))?;
    let copy = clone_params(&params)?;
    let mut a = GaLoreAdamW::with_params(params.clone(), galore_cfg(3, 3))?;
    let mut b = GaLoreAdamW::with_params(copy.clone(), galore_cfg(3, 3))?;
    for g in &grads(&params, 7, 26)? {
        assert_eq!(step_loop(&mut a, &params, g)?, step_all(&mut b, &copy, g)?);
    }
    for ((n, va), (_, vb)) in params.iter().zip(&copy) {
        assert_eq!(bits(va.as_tensor())?, bits(vb.as_tensor())?, "{n}");
    }
    Ok(())
}

/// AdamW's `step_params` (all gradients checked first, one finiteness sync on CUDA) equals its
/// `step_param` loop bit for bit: weights, step infos and saved state, f32 and bf16 weights.
#[test]
fn adamw_step_params_equals_the_step_param_loop_bit_identically() -> Result<()> {
    for dtype in [DType::F32, DType::BF16] {
        let params = batch_params(&mut Rng::new(27))?
            .into_iter()
            .map(|(n, v)| Ok((n, Var::from_tensor(&v.as_tensor().to_dtype(dtype)?)?)))
            .collect::<Result<Vec<_>>>()?;
        let copy = clone_params(&params)?;
        let cfg = AdamWConfig {
            lr: 1e-2,
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut a = AdamW::with_params(params.clone(), cfg.clone())?;
        let mut b = AdamW::with_params(copy.clone(), cfg)?;
        for g in &grads(&params, 4, 28)? {
            let g = g
                .iter()
                .map(|g| Ok(g.to_dtype(dtype)?))
                .collect::<Result<Vec<_>>>()?;
            let ia = step_loop(&mut a, &params, &g)?;
            assert_eq!(ia, step_all(&mut b, &copy, &g)?, "{dtype:?}");
        }
        for ((n, va), (_, vb)) in params.iter().zip(&copy) {
            let f = |v: &Var| bits(&v.as_tensor().to_dtype(DType::F32)?);
            assert_eq!(f(va)?, f(vb)?, "{n} {dtype:?}");
        }
        assert_same_saved_state(&a, &b, &format!("{dtype:?}"))?;
    }
    Ok(())
}

/// A NaN/Inf gradient anywhere in a `step_params` batch is an error naming that parameter, and
/// no parameter of the batch (not even the ones before it) nor the state changes (CrossLore,
/// GaLore and AdamW, whose `step_params` check every gradient first).
#[test]
fn step_params_with_a_non_finite_gradient_touches_nothing() -> Result<()> {
    non_finite_batch(|p| Ok(AdamW::with_params(p.to_vec(), AdamWConfig::default())?))?;
    non_finite_batch(|p| {
        Ok(CrossLoreAdamW::with_params(
            p.to_vec(),
            crosslore_cfg(3, 2, 0.2, 1),
        )?)
    })?;
    non_finite_batch(|p| Ok(GaLoreAdamW::with_params(p.to_vec(), galore_cfg(3, 2))?))
}

fn non_finite_batch<O: ParamOptimizer>(mk: impl Fn(&[(String, Var)]) -> Result<O>) -> Result<()> {
    let params = batch_params(&mut Rng::new(23))?;
    let mut o = mk(&params)?;
    let gs = grads(&params, 3, 24)?;
    step_all(&mut o, &params, &gs[0])?;
    step_all(&mut o, &params, &gs[1])?;
    let dir = tempfile::tempdir()?;
    o.save(dir.path())?;
    let before_state = std::fs::read(dir.path().join("optimizer.safetensors"))?;
    let before: Vec<Vec<u32>> = params
        .iter()
        .map(|(_, v)| bits(v.as_tensor()))
        .collect::<Result<_>>()?;
    let bad_ix = 4; // v_proj, after q, k, up and the norm
    let mut g = gs[2].clone();
    let mut data = g[bad_ix].flatten_all()?.to_vec1::<f32>()?;
    data[3] = f32::NAN;
    g[bad_ix] = Tensor::from_vec(data, g[bad_ix].dims(), &Device::Cpu)?;
    match step_all(&mut o, &params, &g) {
        Err(e) => match e.downcast_ref::<OptimError>() {
            Some(OptimError::NonFinite { param }) => assert_eq!(param, V),
            other => panic!("expected NonFinite for {V}, got {other:?}"),
        },
        Ok(_) => panic!("a NaN gradient was accepted"),
    }
    for ((n, v), b) in params.iter().zip(&before) {
        assert_eq!(&bits(v.as_tensor())?, b, "{n} changed");
    }
    o.save(dir.path())?;
    assert_eq!(
        std::fs::read(dir.path().join("optimizer.safetensors"))?,
        before_state
    );
    Ok(())
}
