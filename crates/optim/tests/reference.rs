//! Golden tests against `torch.optim.AdamW` and `galore_torch.GaLoreAdamW` 1.0, fixtures from
//! `scripts/fixtures/optim_reference.py` (12 steps, projector refresh every 4 steps: 2 refreshes
//! after the first projection; tall 12x6, wide 6x12, square 8x8 matrices with every proj type,
//! rank 3, and a 1-D parameter without rank in the same optimizer).
//!
//! Tolerance: every compared tensor must satisfy `max|ours - ref| <= TOL * max|ref|` with
//! `TOL = 1e-5`. Both sides compute in f32 (unit roundoff 6e-8); the per-step work is a few
//! dozen rounded operations per entry, each gradient is projected with an SVD whose singular
//! vectors are accurate to about `u * sigma_1 / gap ~ 6e-8 * 2 / 0.29 ~ 4e-7` (the fixtures'
//! spectra decay by 0.6 per index), and Adam's normalisation `M/(sqrt(V)+eps)` is scale-free,
//! so errors do not amplify over 12 steps: we expect ~1e-6 and allow 1e-5. The error is measured
//! relative to the tensor's largest entry, not per entry, because entries near zero (e.g. of
//! `M'` after a sign change) carry absolute, not relative, rounding errors.
//!
//! Exception, `proj_type = full` (two-sided): at a refresh step the projected gradient
//! `R = U_r^T G V_r` of the gradient the SVD was taken of is diagonal in exact arithmetic; its
//! off-diagonal entries are pure rounding noise `|dr| ~ u * sigma_1 * few ~ 4e-7`, and Adam's
//! first step maps them to `N = 0.1 r / (0.0316 |r| + eps)` with `eps = 1e-6`, i.e. it amplifies
//! that noise by `0.1 / eps = 1e5` (to `|dN| <~ 0.04`, differing between any two SVD
//! implementations). The weight then differs by `step_size * scale * |dN| ~ 3.2e-3 * 0.25 * 0.04
//! ~ 3e-5` absolute against `max|W| ~ 2.5`: up to ~1.3e-5 relative. We measure 8e-6 and allow
//! `TOL_FULL = 5e-5` for every tensor of the three `full` matrices only.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};
use candle_core::{Device, Tensor, Var};
use crosslore_optim::{
    AdamW, AdamWConfig, GaLoreAdamW, GaLoreConfig, GroupRule, ParamOptimizer, ProjSettings,
    ProjSide, ProjType, Projector,
};
use serde_json::Value;

const TOL: f32 = 1e-5;
const TOL_FULL: f32 = 5e-5;

fn fixtures(stem: &str) -> Result<(HashMap<String, Tensor>, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let t = candle_core::safetensors::load(dir.join(format!("{stem}.safetensors")), &Device::Cpu)?;
    let j = serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.json")))?)?;
    Ok((t, j))
}

fn get<'a>(t: &'a HashMap<String, Tensor>, key: &str) -> Result<&'a Tensor> {
    t.get(key)
        .ok_or_else(|| anyhow!("fixture tensor {key} missing"))
}

/// `max|a - b| / max|b|`.
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
    anyhow::ensure!(
        a.dims() == b.dims(),
        "shape {:?} vs {:?}",
        a.dims(),
        b.dims()
    );
    let d = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let s = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    Ok(if s > 0.0 { d / s } else { d })
}

fn check(what: &str, a: &Tensor, b: &Tensor, worst: &mut f32) -> Result<()> {
    let e = rel_err(a, b)?;
    // see the module docs for the looser bound of the two-sided (`full`) projection
    let tol = if what.contains(".full ") {
        TOL_FULL
    } else {
        TOL
    };
    if tol == TOL {
        *worst = worst.max(e);
    }
    anyhow::ensure!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
    Ok(())
}

fn f(v: &Value, k: &str) -> Result<f64> {
    v[k].as_f64()
        .ok_or_else(|| anyhow!("fixture json: {k} missing"))
}

#[test]
fn adamw_matches_torch_reference() -> Result<()> {
    let (t, meta) = fixtures("adamw_reference")?;
    let h = &meta["hyper"];
    let steps = meta["steps"].as_u64().ok_or_else(|| anyhow!("steps"))? as usize;
    let cfg = AdamWConfig {
        lr: f(h, "lr")?,
        beta1: h["betas"][0].as_f64().ok_or_else(|| anyhow!("betas"))?,
        beta2: h["betas"][1].as_f64().ok_or_else(|| anyhow!("betas"))?,
        eps: f(h, "eps")?,
        weight_decay: f(h, "weight_decay")?,
    };
    let names: Vec<String> = meta["params"]
        .as_object()
        .ok_or_else(|| anyhow!("params"))?
        .keys()
        .cloned()
        .collect();
    let vars: Vec<(String, Var)> = names
        .iter()
        .map(|n| {
            Ok((
                n.clone(),
                Var::from_tensor(get(&t, &format!("weight/{n}/init"))?)?,
            ))
        })
        .collect::<Result<_>>()?;
    let mut opt = AdamW::with_params(vars.clone(), cfg)?;
    let mut worst = 0f32;
    for step in 0..steps {
        for (n, v) in &vars {
            opt.step_param(n, v, get(&t, &format!("grad/{n}/{step}"))?)?;
            let (m, s) = opt.moments(n).ok_or_else(|| anyhow!("no state"))?;
            check(
                &format!("{n} weight step {step}"),
                v.as_tensor(),
                get(&t, &format!("weight/{n}/{step}"))?,
                &mut worst,
            )?;
            check(
                &format!("{n} exp_avg step {step}"),
                m,
                get(&t, &format!("exp_avg/{n}/{step}"))?,
                &mut worst,
            )?;
            check(
                &format!("{n} exp_avg_sq step {step}"),
                s,
                get(&t, &format!("exp_avg_sq/{n}/{step}"))?,
                &mut worst,
            )?;
        }
    }
    eprintln!("adamw reference: worst relative error {worst:e}");
    Ok(())
}

/// The fixture's projector at step `step` in our layout (orthonormal columns).
fn reference_projector(
    t: &HashMap<String, Tensor>,
    name: &str,
    side: ProjSide,
    step: u64,
) -> Result<Projector> {
    let key = |k: &str| format!("{k}/{name}/{step}");
    Ok(match side {
        // galore-torch: right -> Vh[:r] [r, n]; left -> U[:, :r] [m, r]
        ProjSide::Right => {
            Projector::from_parts(side, None, Some(get(t, &key("ortho"))?.t()?.contiguous()?))?
        }
        ProjSide::Left => Projector::from_parts(side, Some(get(t, &key("ortho"))?.clone()), None)?,
        ProjSide::Both => Projector::from_parts(
            side,
            Some(get(t, &key("ortho_left"))?.clone()),
            Some(get(t, &key("ortho_right"))?.t()?.contiguous()?),
        )?,
    })
}

fn proj_type(s: &str) -> Result<ProjType> {
    Ok(match s {
        "std" => ProjType::Std,
        "reverse_std" => ProjType::ReverseStd,
        "left" => ProjType::Left,
        "right" => ProjType::Right,
        "full" => ProjType::Full,
        _ => return Err(anyhow!("unknown proj type {s}")),
    })
}

fn side(s: &str) -> Result<ProjSide> {
    Ok(match s {
        "left" => ProjSide::Left,
        "right" => ProjSide::Right,
        "both" => ProjSide::Both,
        _ => return Err(anyhow!("unknown side {s}")),
    })
}

#[test]
fn galore_matches_galore_torch_reference() -> Result<()> {
    let (t, meta) = fixtures("galore_reference")?;
    let t = Arc::new(t);
    let h = &meta["hyper"];
    let steps = meta["steps"].as_u64().ok_or_else(|| anyhow!("steps"))? as usize;
    let params = meta["params"]
        .as_object()
        .ok_or_else(|| anyhow!("params"))?;
    let mut groups = Vec::new();
    let mut sides = HashMap::new();
    for (name, p) in params {
        if let Some(pt) = p["proj_type"].as_str() {
            let settings = ProjSettings {
                rank: p["rank"].as_u64().ok_or_else(|| anyhow!("rank"))? as usize,
                update_proj_gap: h["update_proj_gap"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("gap"))? as usize,
                scale: f(h, "scale")?,
                proj_type: proj_type(pt)?,
            };
            let dims: Vec<usize> = serde_json::from_value(p["shape"].clone())?;
            let s = side(p["side"].as_str().ok_or_else(|| anyhow!("side"))?)?;
            // the side we resolve must be the side galore-torch used
            assert_eq!(settings.proj_type.side_for(dims[0], dims[1]), s, "{name}");
            sides.insert(name.clone(), s);
            groups.push(GroupRule::projected(
                &format!("^{}$", name.replace('.', r"\.")),
                settings,
            ));
        }
    }
    let cfg = GaLoreConfig {
        lr: f(h, "lr")?,
        beta1: h["betas"][0].as_f64().ok_or_else(|| anyhow!("betas"))?,
        beta2: h["betas"][1].as_f64().ok_or_else(|| anyhow!("betas"))?,
        eps: f(h, "eps")?,
        weight_decay: f(h, "weight_decay")?,
        groups,
        reproject_moments: false,
    };
    let vars: Vec<(String, Var)> = params
        .keys()
        .map(|n| {
            Ok((
                n.clone(),
                Var::from_tensor(get(&t, &format!("weight/{n}/init"))?)?,
            ))
        })
        .collect::<Result<_>>()?;
    let mut opt = GaLoreAdamW::with_params(vars.clone(), cfg)?;

    // After each refresh: check our SVD projector against galore-torch's up to column signs,
    // then align the signs (see `Projector::align_signs_to` for why this is needed).
    let svd_worst = Arc::new(Mutex::new(0f32));
    let refreshes = Arc::new(Mutex::new(Vec::new()));
    {
        let (t, sides, svd_worst, refreshes) = (
            t.clone(),
            sides.clone(),
            svd_worst.clone(),
            refreshes.clone(),
        );
        opt.set_refresh_hook(Some(Box::new(
            move |name: &str, step: u64, p: &mut Projector| {
                let s = sides[name];
                let r = reference_projector(&t, name, s, step)
                    .map_err(|e| crosslore_optim::OptimError::State { msg: e.to_string() })?;
                p.align_signs_to(&r)?;
                for (a, b) in [(p.left(), r.left()), (p.right(), r.right())] {
                    if let (Some(a), Some(b)) = (a, b) {
                        let e = rel_err(a, b).map_err(|e| crosslore_optim::OptimError::State {
                            msg: e.to_string(),
                        })?;
                        let mut w =
                            svd_worst
                                .lock()
                                .map_err(|_| crosslore_optim::OptimError::State {
                                    msg: "poisoned".into(),
                                })?;
                        *w = w.max(e);
                    }
                }
                refreshes
                    .lock()
                    .map_err(|_| crosslore_optim::OptimError::State {
                        msg: "poisoned".into(),
                    })?
                    .push((name.to_string(), step));
                Ok(())
            },
        )));
    }

    let mut worst = 0f32;
    for step in 0..steps {
        for (n, v) in &vars {
            let info = opt.step_param(n, v, get(&t, &format!("grad/{n}/{step}"))?)?;
            assert_eq!(info.step, step as u64 + 1);
            assert_eq!(info.projected, sides.contains_key(n), "{n}");
            assert_eq!(
                info.refreshed,
                sides.contains_key(n) && step % 4 == 0,
                "{n} step {step}"
            );
            let (m, s) = opt.moments(n).ok_or_else(|| anyhow!("no state"))?;
            check(
                &format!("{n} weight step {step}"),
                v.as_tensor(),
                get(&t, &format!("weight/{n}/{step}"))?,
                &mut worst,
            )?;
            check(
                &format!("{n} exp_avg step {step}"),
                m,
                get(&t, &format!("exp_avg/{n}/{step}"))?,
                &mut worst,
            )?;
            check(
                &format!("{n} exp_avg_sq step {step}"),
                s,
                get(&t, &format!("exp_avg_sq/{n}/{step}"))?,
                &mut worst,
            )?;
            if let Some(&sd) = sides.get(n) {
                let p = opt.projector(n).ok_or_else(|| anyhow!("no projector"))?;
                assert_eq!(p.side(), sd);
                let r = reference_projector(&t, n, sd, step as u64)?;
                for (a, b) in [(p.left(), r.left()), (p.right(), r.right())] {
                    if let (Some(a), Some(b)) = (a, b) {
                        check(&format!("{n} projector step {step}"), a, b, &mut worst)?;
                    }
                }
            }
        }
    }
    let svd_worst = *svd_worst.lock().map_err(|_| anyhow!("poisoned"))?;
    assert!(svd_worst <= TOL, "projector vs torch SVD: {svd_worst:e}");
    // 15 projected matrices x refreshes at steps 0, 4, 8
    assert_eq!(
        refreshes.lock().map_err(|_| anyhow!("poisoned"))?.len(),
        15 * 3
    );
    eprintln!("galore reference: worst relative error {worst:e}, projectors {svd_worst:e}");
    Ok(())
}
