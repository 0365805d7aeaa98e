//! P2: one optimizer step without projection refresh over a LLaMA-2-7B-shaped model (issue 5),
//! against the floors measured in the same run.
//!
//! Parameters: the 224 targeted matrices (and, with `full_model`, the embeddings, LM head and
//! norms, plain AdamW in every method), bf16 weights and bf16 gradients (random normal), rank
//! 128, gap 200, scale 0.25. Methods:
//! - `adamw`: [`crosslore_optim::AdamW`] on every parameter (f32 moments).
//! - `galore`: the GaLore step without refresh. Timed with [`CrossLoreAdamW`] at residual ratio
//!   0 and no cross-head targets, whose non-refresh step is the same code as
//!   [`crosslore_optim::GaLoreAdamW`]'s (`LowRankState::advance`); this avoids 224 exact SVDs in
//!   the warm-up (the first step refreshes).
//! - `crosslore`: [`CrossLoreAdamW`] as configured by default (cross-head q/k, sparse residual
//!   1.2 % on q/k), residual warm-up 1 step so that the timed steps apply the residual.
//!
//! Steps go through [`ParamOptimizer::step_params`] (all parameters at once: CrossLore batches
//! its finiteness check and refreshes); the per-parameter `step_param` loop is timed too. The
//! first step (every projector refreshed) is timed on its own, through the loop and batched, each
//! on a fresh optimizer after an untimed one; then two warm-up steps (residual selection at step
//! 1) and the median of `reps` synchronised steps.
//!
//! Floors per step: bytes = the minimum traffic of the update (read weight, gradient and state,
//! write weight and state; see [`bytes_and_flops`]) / measured copy bandwidth; FLOPs = the two
//! projection products `2 * 2 m n r` per projected matrix / measured bf16 square-matmul rate (a
//! lower bound: thin products run below it; the gradients are bf16, and the optimizer projects a
//! bf16 gradient and forms a bf16 weight's update in bf16 with f32 accumulation,
//! `crosslore_optim::Projector::project`; until 2026-11-28 20:35 the products ran in f32 and this
//! floor used the f32 thin-matmul rate). The floor is the larger of the two.
use candle_core::{DType, Device, Tensor, Var};
use crosslore_optim::crosslore::{CrossHeadConfig, ModelHeads};
use crosslore_optim::residual::{index_len, ResidualConfig};
use crosslore_optim::{AdamW, AdamWConfig, CrossLoreAdamW, CrossLoreConfig, ParamOptimizer};
use serde::Serialize;

use crate::floors::{self, Rates};
use crate::shapes::{other_params, targets, ModelDims};
use crate::timing::{median_time, time_once};
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct P2Options {
    pub dims: ModelDims,
    pub full_model: bool,
    pub reps: usize,
    pub seed: u64,
    pub rate_scale: usize,
    /// f32 matmuls on TF32 tensor cores (`--tf32`; set by the caller, recorded here).
    pub tf32: bool,
}

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    AdamW,
    GaLore,
    CrossLore,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::AdamW => "adamw",
            Method::GaLore => "galore",
            Method::CrossLore => "crosslore",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    pub method: Method,
    pub step_s: f64,
    pub samples_s: Vec<f64>,
    pub bytes: f64,
    pub flops: f64,
    pub bytes_floor_s: f64,
    pub flop_floor_s: f64,
    /// `max(bytes_floor_s, flop_floor_s)`.
    pub floor_s: f64,
    pub state_bytes: usize,
    /// The steady step through the per-parameter `step_param` loop (`step_s`: `step_params`).
    pub loop_step_s: f64,
    /// The first step (every projector refreshed) through the loop / through `step_params`
    /// (NaN for AdamW).
    pub refresh_loop_s: f64,
    pub refresh_batched_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct P2Report {
    pub device: String,
    pub options: P2Options,
    pub rates: Rates,
    pub n_params: usize,
    pub n_elements: usize,
    /// [`batched_vs_loop`] on the first 7 parameters (layer 0's targeted matrices).
    pub batched_vs_loop_rel: f64,
    pub methods: Vec<MethodResult>,
}

const RESIDUAL_RATIO: f64 = 0.012;

/// Minimum bytes and FLOPs of one step of `method` on a parameter of `dims` (`projected`:
/// targeted matrix; `qk`: residual target), bf16 weight and gradient (2 bytes), f32 state.
/// - plain AdamW: read w, g, m, v; write w, m, v: `N (2 + 2 + 8 + 2 + 8)`.
/// - low rank, `[m, n]` with the projected side `s` (n for Right, m for Left) and the other `o`:
///   read g, read w, write w (`6 m n`), the projector twice (`8 s r`), `R`, `M'`, `V'`, `N`
///   (read/write, `24 o r`); FLOPs `2 * 2 m n r`.
/// - residual (`|L| = 1.2 % m n`): index 4, `dM`/`dV` read+write 16, gathered g 2, w read+write 4,
///   and one read of the two thin factors of the sampled products (`4 (m + n) r`).
pub fn bytes_and_flops(
    method: Method,
    dims: &[usize],
    projected: bool,
    qk: bool,
    r: usize,
) -> (f64, f64) {
    let n_el: usize = dims.iter().product();
    let plain = 22.0 * n_el as f64;
    if method == Method::AdamW || !projected || dims.len() != 2 {
        return (plain, 0.0);
    }
    let (m, n) = (dims[0] as f64, dims[1] as f64);
    let (s, o) = if m >= n { (n, m) } else { (m, n) };
    let r = r as f64;
    let mut bytes = 6.0 * m * n + 8.0 * s * r + 24.0 * o * r;
    let flops = 4.0 * m * n * r;
    if method == Method::CrossLore && qk {
        let l = index_len(RESIDUAL_RATIO, n_el) as f64;
        bytes += l * (4.0 + 16.0 + 2.0 + 4.0) + 4.0 * (m + n) * r;
    }
    (bytes, flops)
}

fn config(method: Method, d: &ModelDims) -> CrossLoreConfig {
    let mut c = CrossLoreConfig::default();
    if let Some(g) = c
        .galore
        .groups
        .first_mut()
        .and_then(|g| g.projection.as_mut())
    {
        g.rank = d.rank;
    }
    match method {
        Method::GaLore => {
            c.cross_head = CrossHeadConfig {
                targets: vec![],
                ..CrossHeadConfig::default()
            };
            c.residual = ResidualConfig {
                ratio: 0.0,
                ..ResidualConfig::default()
            };
        }
        _ => {
            c.cross_head.heads = Some(ModelHeads {
                n_heads: d.n_heads,
                n_kv_heads: d.n_heads,
                d_head: d.d_head,
            });
            c.residual = ResidualConfig {
                ratio: RESIDUAL_RATIO,
                warmup_steps: Some(1),
                ..ResidualConfig::default()
            };
        }
    }
    c
}

/// `max |W_batched - W_loop| / max |W_loop|` over the first `n` parameters after 3 CrossLore steps
/// (refresh at step 1, residual selected at step 1 and applied from step 2) through
/// [`ParamOptimizer::step_params`] and through the `step_param` loop, from copies of the same
/// weights with the same gradients: the device check of the batched path (bit-identical on
/// the CPU, `crosslore-optim` tests).
fn batched_vs_loop(d: &ModelDims, params: &[(String, Var, Tensor)], n: usize) -> Result<f64> {
    let copy = |p: &[(String, Var, Tensor)]| -> Result<Vec<(String, Var, Tensor)>> {
        p.iter()
            .take(n)
            .map(|(name, w, g)| {
                Ok((
                    name.clone(),
                    Var::from_tensor(&w.as_tensor().copy()?)?,
                    g.clone(),
                ))
            })
            .collect()
    };
    let (pa, pb) = (copy(params)?, copy(params)?);
    let mut a = CrossLoreAdamW::new(config(Method::CrossLore, d))?;
    let mut b = CrossLoreAdamW::new(config(Method::CrossLore, d))?;
    let items: Vec<(&str, &Var, &Tensor)> = pb.iter().map(|(n, w, g)| (n.as_str(), w, g)).collect();
    for _ in 0..3 {
        for (name, w, g) in &pa {
            a.step_param(name, w, g)?;
        }
        b.step_params(&items)?;
    }
    let mut worst: f64 = 0.0;
    for ((name, wa, _), (_, wb, _)) in pa.iter().zip(&pb) {
        let k = crate::model_check::compare(name.clone(), wb.as_tensor(), wa.as_tensor(), 0.0)?;
        worst = worst.max(k.rel as f64);
    }
    Ok(worst)
}

/// Runs P2 on `dev`.
pub fn run(dev: &Device, opt: &P2Options) -> Result<P2Report> {
    let d = &opt.dims;
    let rates = floors::measure(dev, opt.rate_scale)?;
    eprintln!("p2: rates {rates:?}");
    // (name, dims, projected, qk)
    let mut specs: Vec<(String, Vec<usize>, bool, bool)> = targets(d)
        .into_iter()
        .map(|t| {
            let qk = t.is_qk();
            (t.name, vec![t.rows, t.cols], true, qk)
        })
        .collect();
    if opt.full_model {
        specs.extend(
            other_params(d)
                .into_iter()
                .map(|(n, s)| (n, s, false, false)),
        );
    }
    let mut params = Vec::with_capacity(specs.len());
    for (name, dims, _, _) in &specs {
        let w = Var::from_tensor(
            &(Tensor::randn(0f32, 0.02f32, dims.as_slice(), dev)?.to_dtype(DType::BF16)?),
        )?;
        let g = Tensor::randn(0f32, 1e-3f32, dims.as_slice(), dev)?.to_dtype(DType::BF16)?;
        params.push((name.clone(), w, g));
    }
    dev.synchronize()?;
    let n_elements: usize = specs.iter().map(|s| s.1.iter().product::<usize>()).sum();
    eprintln!("p2: {} parameters, {} elements", params.len(), n_elements);
    let batched_vs_loop_rel = batched_vs_loop(d, &params, 7)?;
    eprintln!("p2: step_params vs step_param loop, layer 0, 3 CrossLore steps: max rel diff {batched_vs_loop_rel:.3e}");
    let mut methods = Vec::new();
    let items: Vec<(&str, &Var, &Tensor)> =
        params.iter().map(|(n, w, g)| (n.as_str(), w, g)).collect();
    let fresh = |method: Method| -> Result<Box<dyn ParamOptimizer>> {
        Ok(match method {
            Method::AdamW => Box::new(AdamW::new(AdamWConfig::default())?),
            _ => Box::new(CrossLoreAdamW::new(config(method, d))?),
        })
    };
    // One step through the per-parameter loop (the path before `step_params`).
    let loop_step = |o: &mut Box<dyn ParamOptimizer>| -> Result<()> {
        for (name, w, g) in &params {
            o.step_param(name, w, g)?;
        }
        Ok(())
    };
    for method in [Method::AdamW, Method::GaLore, Method::CrossLore] {
        // The first step refreshes every projector: timed through the per-parameter loop and
        // through the batched `step_params` (each on a fresh optimizer, after an untimed one that
        // loads the kernels), i.e. the optimizer path of P1.
        let (mut refresh_loop_s, mut refresh_batched_s) = (f64::NAN, f64::NAN);
        if method != Method::AdamW {
            let mut o = fresh(method)?;
            o.step_params(&items)?;
            drop(o);
            let mut o = fresh(method)?;
            refresh_loop_s = time_once(dev, &mut || loop_step(&mut o))?.0;
            drop(o);
        }
        let mut o = fresh(method)?;
        let first = time_once(dev, &mut || Ok(o.step_params(&items)?))?.0;
        if method != Method::AdamW {
            refresh_batched_s = first;
        }
        let (med, samples) = median_time(dev, 2, opt.reps, || Ok(o.step_params(&items)?))?;
        let (loop_med, _) = median_time(dev, 0, opt.reps, || loop_step(&mut o))?;
        eprintln!(
            "p2: {}: refresh step loop {refresh_loop_s:.3} s, batched {refresh_batched_s:.3} s; step batched {med:.4} s, loop {loop_med:.4} s",
            method.name()
        );
        let (mut bytes, mut flops) = (0.0, 0.0);
        for (_, dims, projected, qk) in &specs {
            let (b, f) = bytes_and_flops(method, dims, *projected, *qk, d.rank);
            bytes += b;
            flops += f;
        }
        let bytes_floor_s = bytes / rates.copy_bytes_per_s;
        let flop_floor_s = flops / rates.bf16_square_flops;
        let state_bytes = o.state_bytes().total;
        methods.push(MethodResult {
            method,
            step_s: med,
            samples_s: samples,
            bytes,
            flops,
            bytes_floor_s,
            flop_floor_s,
            floor_s: bytes_floor_s.max(flop_floor_s),
            state_bytes,
            loop_step_s: loop_med,
            refresh_loop_s,
            refresh_batched_s,
        });
        drop(o);
        dev.synchronize()?;
    }
    Ok(P2Report {
        device: crate::device_name(dev),
        options: opt.clone(),
        rates,
        n_params: specs.len(),
        n_elements,
        batched_vs_loop_rel,
        methods,
    })
}

/// The P2 table as Markdown.
pub fn table(rep: &P2Report) -> String {
    let mut s = format!(
        "P2 optimizer step without refresh, {} parameters ({:.3} B elements), device {}{}\n\n| method | step ms | loop step ms | bytes GB | bytes floor ms | GFLOP | FLOP floor ms | measured / max floor | measured / bytes floor | state GiB | refresh step loop s | refresh step batched s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        rep.n_params,
        rep.n_elements as f64 / 1e9,
        rep.device,
        if rep.options.tf32 { ", f32 matmuls on TF32" } else { "" }
    );
    for m in &rep.methods {
        s += &format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} |\n",
            m.method.name(),
            m.step_s * 1e3,
            m.loop_step_s * 1e3,
            m.bytes / 1e9,
            m.bytes_floor_s * 1e3,
            m.flops / 1e9,
            m.flop_floor_s * 1e3,
            m.step_s / m.floor_s,
            m.step_s / m.bytes_floor_s,
            m.state_bytes as f64 / (1u64 << 30) as f64,
            m.refresh_loop_s,
            m.refresh_batched_s
        );
    }
    s += &format!(
        "\nstep_params vs the step_param loop (layer 0, 3 CrossLore steps): max rel weight diff {:.3e}\n",
        rep.batched_vs_loop_rel
    );
    s += &format!(
        "\ncopy {:.2} TB/s, bf16 matmul {:.0} TFLOP/s (floors from these, same run)\n",
        rep.rates.copy_bytes_per_s / 1e12,
        rep.rates.bf16_square_flops / 1e12
    );
    s
}
