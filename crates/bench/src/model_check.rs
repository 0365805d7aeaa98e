//! `model-check`: the trainable LLaMA and the trainer on a device against the CPU (issue 3,
//! "f32 and bf16, CPU and CUDA").
//!
//! On the tiny random HF fixtures of `crates/model/tests/fixtures/` (written by
//! `scripts/fixtures/model_reference.py`; the CPU path is itself checked against transformers
//! there), the same model is loaded on the CPU and on the device and compared:
//!
//! - f32 forward + causal-LM loss + backward: logits, loss and every weight gradient, error
//!   `max |dev - cpu| / max |cpu|` <= [`TOL_F32`] (1e-4). Both sides compute in f32 with
//!   different summation orders (cuBLAS vs gemm blocking, reductions of length <= 128): a few
//!   ulps (~1e-7) per reduction and a few 1e-6 after two layers, attention and the loss, the same
//!   budget as the transformers golden tests; a wrong kernel gives errors of 1e-2..1.
//! - 3 optimizer steps of every method (adamw, galore, crosslore, lora, dora) in layerwise mode
//!   from the same seed: every trainable weight, error relative to the weight's max <=
//!   [`TOL_TRAIN`] (1e-3). The gradients differ by ~1e-6 relative; Adam's first steps divide by
//!   `sqrt(v) + eps` with `v` of the size of `g^2`, so an update is ~`lr * sign(g)` and entries
//!   whose gradient is near zero can move by O(lr) differently; with lr 1e-2 on weights of max
//!   ~0.5 that stays far below 1e-3 unless a projection differs, while a wrong update (wrong
//!   projection, missing step, wrong moment) moves weights by ~lr = 1e-2 relative or more. The
//!   CPU run from weights with [`PERTURB`] relative noise ([`ModelCheckReport::sensitivity`])
//!   measures the method's own amplification of rounding-sized differences (~5e-5 for all five).
//!   GaLore's exact SVD runs cuSOLVER gesvdj on CUDA, whose stopping tolerance leaves ~7e-5
//!   subspace distance to faer (docs/BENCHMARKS.md, gpu-check), far above rounding: on the H200
//!   (2026-11-28) GaLore exceeded 1e-3 (8.3e-3 on one v_proj) while the other methods were at
//!   <= 3e-5. Left as a FAIL: the tolerance is not widened after the fact.
//! - bf16 forward on the device against the f32 CPU forward: <= [`TOL_BF16`] (3e-2). bf16 keeps
//!   8 significant bits (2^-9 ~ 2e-3 per rounding), compounded over two layers; the CPU bf16
//!   golden test measures ~1e-2 for the same models (PyTorch's bf16 is similar).
//!
//! - The fused (hand-differentiated) blocks, `block_backward = "fused"` (issue 8): on the device,
//!   f32 loss and every gradient against the CPU autograd pass (<= [`TOL_F32`]); bf16 gradients
//!   on the device against the f32 CPU ones (<= [`TOL_BF16_GRAD`]); 3 layerwise steps of every
//!   method with the fused blocks on the device against the autograd blocks on the CPU
//!   (<= [`TOL_TRAIN`]).
//!
//! With `--device cpu` every comparison is CPU against CPU (a smoke test of this code: zeros,
//! except bf16).
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use crosslore_data::{Encoded, IGNORE_INDEX};
use crosslore_linalg::Rng;
use crosslore_model::fused::model_loss_and_grads;
use crosslore_model::{causal_lm_loss, Llama, LoadOptions, Training};
use crosslore_train::config::{BlockBackward, DType as TrainDType, DeviceKind, Method};
use crosslore_train::run::load_options;
use crosslore_train::{TrainConfig, Trainer};
use serde::Serialize;

use crate::{BenchError, Result};

/// f32 forward/backward tolerance (relative to the tensor's max), see the module docs.
pub const TOL_F32: f32 = 1e-4;
/// f32 weights after 3 optimizer steps, see the module docs.
pub const TOL_TRAIN: f32 = 1e-3;
/// bf16 device forward vs f32 CPU forward, see the module docs.
pub const TOL_BF16: f32 = 3e-2;

/// bf16 fused gradients on the device vs f32 gradients on the CPU: bf16 rounding (2^-9) of
/// every activation and of the gradients through two layers, attention and the loss; the CPU
/// bf16 tests (crates/model/tests/fused_reference.rs) measure ~1e-2 for these models.
pub const TOL_BF16_GRAD: f32 = 5e-2;

/// Relative weight noise of the CPU sensitivity run (rounding-sized, ~10 f32 ulps).
pub const PERTURB: f32 = 1e-6;

/// Fixture folders compared (full-model HF folders with a `reference.safetensors`).
pub const CASES: [&str; 3] = ["tied_gqa", "untied_linear", "llama3_headdim"];

const METHODS: [Method; 5] = [
    Method::Adamw,
    Method::Galore,
    Method::Crosslore,
    Method::Lora,
    Method::Dora,
];

/// One comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCheck {
    pub name: String,
    /// `max |dev - cpu|`.
    pub max_abs: f32,
    /// `max_abs / max |cpu|` (or `max_abs` when the CPU tensor is zero).
    pub rel: f32,
    pub tol: f32,
    pub pass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelCheckReport {
    pub device: String,
    pub checks: Vec<ModelCheck>,
    /// Per method: CPU weights after 3 steps from weights perturbed by [`PERTURB`] relative noise
    /// against the unperturbed CPU run (information, not a check: how much the method itself
    /// amplifies rounding-sized differences; GaLore's exact top-r SVD subspace does, where
    /// singular values r and r+1 of a gradient are close).
    pub sensitivity: Vec<ModelCheck>,
}

/// `got` against `want` (any devices and dtypes, same shape): [`ModelCheck`]'s measures.
pub(crate) fn compare(name: String, got: &Tensor, want: &Tensor, tol: f32) -> Result<ModelCheck> {
    if got.dims() != want.dims() {
        return Err(BenchError::Config(format!(
            "{name}: shape {:?} on the device vs {:?} on the CPU",
            got.dims(),
            want.dims()
        )));
    }
    let g = got
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?;
    let w = want
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?;
    let max_abs = (&g - &w)?.abs()?.max(0)?.to_scalar::<f32>()?;
    let scale = w.abs()?.max(0)?.to_scalar::<f32>()?;
    let rel = if scale > 0.0 {
        max_abs / scale
    } else {
        max_abs
    };
    Ok(ModelCheck {
        name,
        max_abs,
        rel,
        tol,
        // NaN fails
        pass: rel <= tol,
    })
}

fn load(dir: &Path, dev: &Device, dtype: DType, training: Training) -> Result<Llama> {
    let opts = LoadOptions {
        dtype,
        device: dev.clone(),
        training,
    };
    Ok(Llama::from_hf_folder(dir, &opts)?)
}

/// Logits, loss and `(name, gradient)` of every parameter, all on the CPU.
type Pass = (Tensor, Tensor, Vec<(String, Tensor)>);

fn forward_backward(dir: &Path, dev: &Device, inputs: &Inputs) -> Result<Pass> {
    let model = load(dir, dev, DType::F32, Training::Full)?;
    let ids = inputs.ids.to_device(dev)?;
    let mask = inputs.mask.to_device(dev)?;
    let labels = inputs.labels.to_device(dev)?;
    let (b, s) = ids.dims2()?;
    let ctx = model.context(b, s, Some(&mask), true, 0)?;
    let logits = model.forward_with(&ids, &ctx)?; // [batch, seq, vocab]
    let loss = causal_lm_loss(&logits, &labels, None)?;
    let grads = loss.backward()?;
    let mut out = Vec::new();
    for (name, var) in model.params() {
        let g = grads.get(var.as_tensor()).ok_or_else(|| {
            BenchError::Config(format!("{}: no gradient for {name}", dir.display()))
        })?;
        out.push((name, g.to_device(&Device::Cpu)?));
    }
    Ok((
        logits.to_device(&Device::Cpu)?,
        loss.to_device(&Device::Cpu)?,
        out,
    ))
}

/// The fused blocks' loss and gradients (CPU copies, f32) on `dev` in `dtype`.
fn fused_pass(
    dir: &Path,
    dev: &Device,
    dtype: DType,
    inputs: &Inputs,
) -> Result<(f32, Vec<(String, Tensor)>)> {
    let model = load(dir, dev, dtype, Training::Full)?;
    let ids = inputs.ids.to_device(dev)?;
    let mask = inputs.mask.to_device(dev)?;
    let labels = inputs.labels.to_device(dev)?;
    let (loss, grads) = model_loss_and_grads(&model, &ids, &mask, &labels, 0)?;
    let grads = grads
        .into_iter()
        .map(|(n, g)| Ok((n, g.to_device(&Device::Cpu)?.to_dtype(DType::F32)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok((loss, grads))
}

struct Inputs {
    ids: Tensor,
    mask: Tensor,
    labels: Tensor,
}

fn inputs(dir: &Path) -> Result<Inputs> {
    let file = dir.join("reference.safetensors");
    let r = candle_core::safetensors::load(&file, &Device::Cpu)?;
    let get = |k: &str| {
        r.get(k)
            .cloned()
            .ok_or_else(|| BenchError::Config(format!("{}: no tensor {k:?}", file.display())))
    };
    Ok(Inputs {
        ids: get("input_ids")?.to_dtype(DType::U32)?,
        mask: get("attention_mask")?,
        labels: get("labels")?,
    })
}

/// `n` examples of 6..=13 tokens of a learnable rule (next = previous + 1 mod vocab), the first
/// 3 positions masked as prompt (as crates/train/tests/common).
fn dataset(n: usize, vocab: usize, seed: u64) -> Vec<Encoded> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let len = 6 + rng.below(8) as usize;
            let start = rng.below(vocab as u64) as u32;
            let ids: Vec<u32> = (0..len)
                .map(|i| (start + i as u32) % vocab as u32)
                .collect();
            let labels = ids
                .iter()
                .enumerate()
                .map(|(i, &t)| if i < 3 { IGNORE_INDEX } else { t as i64 })
                .collect();
            Encoded {
                input_ids: ids,
                labels,
                truncated: false,
            }
        })
        .collect()
}

/// Trainable weights (f32, CPU) after `steps` layerwise steps of `method` on `device`.
fn train(
    dir: &Path,
    method: Method,
    device: DeviceKind,
    steps: usize,
    seed: u64,
    perturb: f32,
    block_backward: BlockBackward,
) -> Result<Vec<(String, Tensor)>> {
    let cfg = TrainConfig {
        method,
        rank: 4,
        update_interval: 2,
        scale: 1.0,
        learning_rate: 1e-2,
        lora_alpha: 8.0,
        warmup_steps: 1,
        batch_size: 4,
        grad_accum: 1,
        max_steps: steps,
        max_len: 32,
        max_grad_norm: 0.0,
        oversample: 2,
        power_iters: 1,
        residual_ratio: 0.05,
        seed: 3 + seed,
        device,
        dtype: TrainDType::F32,
        layerwise: true,
        block_backward,
        ..TrainConfig::default()
    };
    let model = Llama::from_hf_folder(dir, &load_options(&cfg)?)?;
    if perturb > 0.0 {
        // every weight w -> w * (1 + perturb * u), u ~ N(0, 1): the size of the device's
        // rounding differences, to measure how much the method itself amplifies them
        let mut rng = Rng::new(99 + seed);
        for (_, v) in model.params() {
            let t = v.as_tensor();
            let u = Tensor::from_vec(rng.normal_vec(t.elem_count()), t.dims(), t.device())?
                .to_dtype(t.dtype())?;
            v.set(&(t + (t * u)?.affine(perturb as f64, 0.0)?)?)?;
        }
    }
    let vocab = model.config.vocab_size;
    let mut t = Trainer::new(cfg, model, dataset(16, vocab, 11 + seed), 0)?;
    for _ in 0..steps {
        t.step()?;
    }
    let mut out = Vec::new();
    for (n, v) in t.params() {
        out.push((
            n.clone(),
            v.as_tensor()
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?,
        ));
    }
    Ok(out)
}

/// Runs every comparison of the module docs, `dev` against the CPU; `fixtures` is the folder
/// holding the case folders.
pub fn run(dev: &Device, fixtures: &Path, seed: u64) -> Result<ModelCheckReport> {
    let mut checks = Vec::new();
    let mut push = |c: ModelCheck| {
        println!(
            "{} {:<48} max_abs {:.3e} rel {:.3e} (tol {:.0e})",
            if c.pass { "PASS" } else { "FAIL" },
            c.name,
            c.max_abs,
            c.rel,
            c.tol
        );
        checks.push(c);
    };
    for case in CASES {
        let dir = fixtures.join(case);
        let inp = inputs(&dir)?;
        let (lc, sc, gc) = forward_backward(&dir, &Device::Cpu, &inp)?;
        let (ld, sd, gd) = forward_backward(&dir, dev, &inp)?;
        push(compare(format!("{case} f32 logits"), &ld, &lc, TOL_F32)?);
        push(compare(format!("{case} f32 loss"), &sd, &sc, TOL_F32)?);
        // one line per case: the worst gradient; every gradient must pass
        let mut grads = Vec::with_capacity(gc.len());
        for ((nc, c), (nd, d)) in gc.iter().zip(&gd) {
            if nc != nd {
                return Err(BenchError::Config(format!(
                    "{case}: parameter order {nc} vs {nd}"
                )));
            }
            grads.push(compare(format!("{case} f32 grad {nc}"), d, c, TOL_F32)?);
        }
        let label = format!("{case} f32 grads ({})", gc.len());
        if let Some(w) = worst_of(grads, &label, gc.len() == gd.len()) {
            push(w);
        }
        for (dtype, tol) in [(DType::F32, TOL_F32), (DType::BF16, TOL_BF16_GRAD)] {
            let (lf, gf) = fused_pass(&dir, dev, dtype, &inp)?;
            let tag = if dtype == DType::F32 { "f32" } else { "bf16" };
            let want = sc.to_device(&Device::Cpu)?;
            let got = Tensor::new(lf, &Device::Cpu)?;
            push(compare(
                format!("{case} fused {tag} loss vs cpu autograd"),
                &got,
                &want,
                tol,
            )?);
            let checks = gc
                .iter()
                .zip(&gf)
                .map(|((nc, c), (_, f))| compare(format!("{case} fused {nc}"), f, c, tol))
                .collect::<Result<Vec<_>>>()?;
            let label = format!("{case} fused {tag} grads vs cpu autograd ({})", gc.len());
            if let Some(w) = worst_of(checks, &label, gc.len() == gf.len()) {
                push(w);
            }
        }
        let mb = load(&dir, dev, DType::BF16, Training::Frozen)?;
        let lb = mb.forward(&inp.ids.to_device(dev)?, Some(&inp.mask.to_device(dev)?))?;
        push(compare(
            format!("{case} bf16 logits vs f32 cpu"),
            &lb,
            &lc,
            TOL_BF16,
        )?);
    }
    let dev_kind = if dev.is_cpu() {
        DeviceKind::Cpu
    } else {
        DeviceKind::Cuda
    };
    let dir = fixtures.join(CASES[0]);
    let mut sensitivity = Vec::new();
    for method in METHODS {
        let auto = BlockBackward::Autograd;
        let wc = train(&dir, method, DeviceKind::Cpu, 3, seed, 0.0, auto)?;
        let wd = train(&dir, method, dev_kind, 3, seed, 0.0, auto)?;
        let wf = train(&dir, method, dev_kind, 3, seed, 0.0, BlockBackward::Fused)?;
        // the method's own amplification of rounding-sized differences, on the CPU alone
        let wp = train(&dir, method, DeviceKind::Cpu, 3, seed, PERTURB, auto)?;
        let mut sens: Option<ModelCheck> = None;
        for ((nc, c), (_, p)) in wc.iter().zip(&wp) {
            let k = compare(format!("{method:?} {nc}"), p, c, TOL_TRAIN)?;
            if sens.as_ref().is_none_or(|w| k.rel > w.rel) {
                sens = Some(k);
            }
        }
        if let Some(k) = sens {
            println!(
                "INFO cpu vs cpu with {PERTURB:.0e} relative weight noise, {method:?} 3 steps: worst {} rel {:.3e}",
                k.name.rsplit(' ').next().unwrap_or(""),
                k.rel
            );
            sensitivity.push(k);
        }
        for (kind, w) in [("", &wd), ("fused ", &wf)] {
            let checks = wc
                .iter()
                .zip(w)
                .map(|((nc, c), (_, x))| compare(format!("{method:?} {nc}"), x, c, TOL_TRAIN))
                .collect::<Result<Vec<_>>>()?;
            let label = format!("train {kind}{method:?} 3 steps ({} tensors)", wc.len());
            if let Some(k) = worst_of(checks, &label, wc.len() == w.len()) {
                push(k);
            }
        }
    }
    Ok(ModelCheckReport {
        device: crate::device_name(dev),
        checks,
        sensitivity,
    })
}

/// One line for many checks: the worst (largest `rel`, a NaN counts as worst) renamed
/// `<label>, worst <tensor>`, passing only if every check passed and `complete` holds.
fn worst_of(checks: Vec<ModelCheck>, label: &str, complete: bool) -> Option<ModelCheck> {
    let all_pass = complete && checks.iter().all(|k| k.pass);
    let mut worst: Option<ModelCheck> = None;
    for k in checks {
        if worst
            .as_ref()
            .is_none_or(|w| k.rel > w.rel || k.rel.is_nan())
        {
            worst = Some(k);
        }
    }
    worst.map(|mut w| {
        let tensor = w.name.rsplit(' ').next().unwrap_or("").to_string();
        w.name = format!("{label}, worst {tensor}");
        w.pass = all_pass;
        w
    })
}
