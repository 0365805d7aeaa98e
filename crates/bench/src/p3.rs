//! P3/P4 (issue 5): end-to-end training steps of a LLaMA-2-7B-shaped model with random
//! weights, bf16, through the crate's own `Trainer` (forward + backward + optimizer, the same code
//! as `crosslore finetune`), and the peak device memory of each run.
//!
//! Setting of the reference figures (`bench/reference/p3_torch.py`, `../shared/ANCHORS.md`,
//! PyTorch + transformers + galore-torch/peft on the same H200): batch 4 x sequence 512 (2048
//! tokens), random tokens, no gradient checkpointing, no clipping. Arms ([`Arm`]): AdamW, LoRA and
//! DoRA (rank 128, alpha 256, all-linear), GaLore's steady step, CrossLore (rank 128, gap 200,
//! scale 0.25, cross-head q/k, residual 1.2 % with a warm-up of 1 step so that the timed steps
//! include it), CrossLore layerwise. An arm whose run fails (out of memory) is reported with its
//! error and, when [`Arm::fallback`] names one, re-run in that form.
//!
//! GaLore's first step is 224 exact SVDs (P1: ~204 s on the H200), which does not fit a device
//! call; its *steady* step is the low-rank Adam step that CrossLore shares with it
//! (`LowRankState::advance` + the fused commit), so the `galore-steady` arm is CrossLore with the
//! residual off (ratio 0), refreshed by RSI at step 1. The refresh cost is P1's, amortised over
//! the gap (200) where reported.
//!
//! Time: median of `steps` synchronised steps after `warmup` steps (the first refreshes the
//! projectors, the second selects the residual index). Throughput: `batch * seq / step`; MFU:
//! `6 * N * tokens / time / peak`, N = the base model's parameter count (also for LoRA/DoRA,
//! whose frozen weights need no weight gradient: their true FLOPs are ~4 N per token), peak = the
//! bf16 matmul rate measured in the same run.
//!
//! Memory ("P4"): candle/cudarc allocate with `cuMemAllocAsync` from the device's current memory
//! pool; the run reads that pool's `CU_MEMPOOL_ATTR_USED_MEM_HIGH` (bytes handed out and not yet
//! freed, high-water mark, reset to 0 before each arm: model weights, optimizer state,
//! activations and gradients; the counterpart of torch's `max_memory_allocated`) and
//! `CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH` (what the pool held from the driver). The report says
//! whether the current pool is the default pool. Not counted: cuBLAS/cuSOLVER workspaces, which
//! those libraries allocate with `cuMemAlloc` outside the pool (tens of MB). The pool is trimmed
//! (`cuMemPoolTrimTo`) before each arm, so the reserved figure is the arm's own.
//!
//! Largest batch (`max_batch`, [`crate::p3_max`]): after an arm's run at `batch`, the largest
//! batch that fits is extrapolated from a probe at twice the batch and run; a second table.
//!
//! Profile (`profile`): after the timed steps, `steps` more steps with the trainer's per-phase
//! profiler on ([`crosslore_train::profile`]: a device synchronisation at every phase boundary),
//! reported per arm beside the unprofiled time.
use candle_core::{DType, Device, Tensor};
use crosslore_data::Encoded;
use crosslore_linalg::Rng;
use crosslore_model::{Llama, LlamaConfig, LoadOptions, Training};
use crosslore_train::config::{DType as TrainDType, DeviceKind, Method};
use crosslore_train::{BlockBackward, PhaseTime, TrainConfig, Trainer};
use serde::Serialize;

use crate::floors::{self, Rates};
use crate::p3_max::{self, AttemptError, AttemptKind, MaxBatchOptions, MaxBatchReport, MemPoint};
use crate::shapes::ModelDims;
use crate::timing::median;
use crate::{BenchError, Result};

mod memory;
mod tables;
#[cfg(feature = "cuda")]
use memory::pool;
use memory::{memory_budget, PoolPeak};
pub use tables::{max_batch_table, profile_tables, table};

/// One configuration timed by P3.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Arm {
    /// Name in the report and on the command line (`--arms`).
    pub label: &'static str,
    pub method: Method,
    pub layerwise: bool,
    /// Recompute each block's forward in the backward (less activation memory).
    pub recompute: bool,
    /// CrossLore residual ratio (0 for the other methods and for `galore-steady`).
    pub residual_ratio: f64,
    /// The arm re-run when this one fails (out of device memory).
    pub fallback: Option<&'static str>,
    /// `block_backward = "fused"`: the hand-differentiated blocks with the fused kernels
    /// (issue 8) instead of candle autograd.
    pub fused: bool,
}

const fn arm(label: &'static str, method: Method, layerwise: bool) -> Arm {
    Arm {
        label,
        method,
        layerwise,
        recompute: false,
        residual_ratio: 0.0,
        fallback: None,
        fused: false,
    }
}

/// The same arm through the fused blocks.
const fn fused(a: Arm, label: &'static str, fallback: Option<&'static str>) -> Arm {
    Arm {
        label,
        fused: true,
        fallback,
        ..a
    }
}

/// Every arm, in the default order (the memory-hungry AdamW last).
pub const ARMS: &[Arm] = &[
    Arm {
        label: "crosslore-layerwise",
        ..CL_LW
    },
    Arm {
        label: "crosslore",
        ..CL
    },
    arm("galore-steady", Method::Crosslore, false),
    arm("lora", Method::Lora, false),
    arm("dora", Method::Dora, false),
    Arm {
        fallback: Some("adamw-layerwise"),
        ..arm("adamw", Method::Adamw, false)
    },
    Arm {
        fallback: Some("adamw-layerwise-recompute"),
        ..arm("adamw-layerwise", Method::Adamw, true)
    },
    Arm {
        recompute: true,
        ..arm("adamw-layerwise-recompute", Method::Adamw, true)
    },
    fused(CL_LW, "crosslore-layerwise-fused", None),
    fused(
        Arm {
            recompute: true,
            ..CL_LW
        },
        "crosslore-layerwise-fused-recompute",
        None,
    ),
    fused(CL, "crosslore-fused", Some("crosslore-layerwise-fused")),
    fused(
        arm("", Method::Crosslore, false),
        "galore-steady-fused",
        None,
    ),
    fused(arm("", Method::Lora, false), "lora-fused", None),
    fused(arm("", Method::Dora, false), "dora-fused", None),
    fused(
        arm("", Method::Adamw, false),
        "adamw-fused",
        Some("adamw-layerwise-fused"),
    ),
    fused(arm("", Method::Adamw, true), "adamw-layerwise-fused", None),
];

/// CrossLore with the residual (1.2 %), layerwise and whole-model; labelled where used.
const CL_LW: Arm = Arm {
    residual_ratio: 0.012,
    ..arm("", Method::Crosslore, true)
};
const CL: Arm = Arm {
    residual_ratio: 0.012,
    ..arm("", Method::Crosslore, false)
};

/// The default arms: every method once (AdamW full model, falling back to layerwise).
pub const DEFAULT_ARMS: &[&str] = &[
    "crosslore-layerwise",
    "crosslore",
    "galore-steady",
    "lora",
    "dora",
    "adamw",
];

/// The arm named `label`.
pub fn find_arm(label: &str) -> Result<Arm> {
    ARMS.iter()
        .find(|a| a.label == label)
        .copied()
        .ok_or_else(|| {
            BenchError::Config(format!(
                "p3 arm {label:?}: expected one of {:?}",
                ARMS.iter().map(|a| a.label).collect::<Vec<_>>()
            ))
        })
}

#[derive(Debug, Clone, Serialize)]
pub struct P3Options {
    pub dims: ModelDims,
    pub batch: usize,
    pub seq: usize,
    /// Timed steps per arm.
    pub steps: usize,
    /// Untimed steps before them (>= 2 for CrossLore: refresh, then residual selection).
    pub warmup: usize,
    pub seed: u64,
    pub rate_scale: usize,
    /// Arm labels ([`ARMS`]), run in this order.
    pub arms: Vec<String>,
    /// Also search each arm's largest batch ([`crate::p3_max`]).
    pub max_batch: Option<MaxBatchOptions>,
    /// Also profile `steps` more steps per arm, phase by phase (module docs).
    pub profile: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct P3Result {
    pub arm: String,
    pub method: String,
    pub layerwise: bool,
    pub recompute: bool,
    pub samples_s: Vec<f64>,
    pub step_s: f64,
    pub tokens_per_s: f64,
    pub mfu: f64,
    /// Pool high-water mark of memory in use, GiB (module docs); `None` off CUDA.
    pub peak_used_gib: Option<f64>,
    /// Pool high-water mark of memory reserved from the driver, GiB.
    pub peak_reserved_gib: Option<f64>,
    /// The first (untimed) step: projector refresh, first state allocation.
    pub first_step_s: f64,
    pub last_loss: f64,
    /// The error of a failed arm (then the figures above are NaN / empty).
    pub error: Option<String>,
    /// The largest-batch search of the arm (`max_batch` runs only).
    pub max_batch: Option<MaxBatchReport>,
    /// Per-phase profile of the profiled steps (`profile` runs only) and their median wall time.
    pub profile: Option<Vec<PhaseTime>>,
    pub profiled_step_s: f64,
}

impl P3Result {
    /// The arm's description with no figures (NaN / empty / `None`).
    fn empty(arm: &Arm) -> Self {
        P3Result {
            arm: arm.label.to_string(),
            method: format!("{:?}", arm.method).to_lowercase(),
            layerwise: arm.layerwise,
            recompute: arm.recompute,
            samples_s: Vec::new(),
            step_s: f64::NAN,
            tokens_per_s: f64::NAN,
            mfu: f64::NAN,
            peak_used_gib: None,
            peak_reserved_gib: None,
            first_step_s: f64::NAN,
            last_loss: f64::NAN,
            error: None,
            max_batch: None,
            profile: None,
            profiled_step_s: f64::NAN,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct P3Report {
    pub device: String,
    pub options: P3Options,
    pub rates: Rates,
    /// Parameters of the base model (the N of the MFU).
    pub n_params: usize,
    /// The device's current memory pool is its default pool (where `cuMemAllocAsync` allocates).
    pub pool_is_default: Option<bool>,
    pub results: Vec<P3Result>,
}

pub(crate) fn config(d: &ModelDims) -> Result<LlamaConfig> {
    let v = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": d.hidden,
        "intermediate_size": d.ffn,
        "num_hidden_layers": d.layers,
        "num_attention_heads": d.n_heads,
        "num_key_value_heads": d.n_kv_heads,
        "vocab_size": d.vocab,
        "rms_norm_eps": 1e-5,
        "rope_theta": d.rope_theta,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": d.tied,
        "hidden_act": "silu",
        "torch_dtype": "bfloat16"
    });
    Ok(LlamaConfig::from_json_value(v, "p3 config")?)
}

pub(crate) fn random_model(cfg: &LlamaConfig, dev: &Device, training: Training) -> Result<Llama> {
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in cfg.expected_tensors() {
        let t = if shape.len() == 1 {
            Tensor::ones(shape.as_slice(), DType::BF16, dev)?
        } else {
            Tensor::randn(0f32, 0.02f32, shape.as_slice(), dev)?.to_dtype(DType::BF16)?
        };
        tensors.insert(name, t);
    }
    let opts = LoadOptions {
        dtype: DType::BF16,
        device: dev.clone(),
        training,
    };
    Ok(Llama::from_tensors(cfg.clone(), tensors, &opts)?)
}

fn dataset(n: usize, seq: usize, vocab: usize, seed: u64) -> Vec<Encoded> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let ids: Vec<u32> = (0..seq).map(|_| rng.below(vocab as u64) as u32).collect();
            Encoded::from_ids(ids, 1)
        })
        .collect()
}

/// Batch and step counts of one run of an arm.
#[derive(Debug, Clone, Copy)]
struct RunShape {
    batch: usize,
    warmup: usize,
    steps: usize,
    /// Profiled steps after the timed ones.
    profiled: usize,
}

fn train_config(arm: &Arm, opt: &P3Options, shape: RunShape, dev: &Device) -> TrainConfig {
    TrainConfig {
        method: arm.method,
        rank: opt.dims.rank,
        update_interval: 200,
        scale: 0.25,
        residual_ratio: arm.residual_ratio,
        // the residual index is selected at step 1, so the timed steps run the residual
        residual_warmup: 1,
        lora_alpha: 2.0 * opt.dims.rank as f64,
        lora_dropout: 0.0,
        target_modules: "all-linear".into(),
        learning_rate: 1e-5,
        warmup_steps: 0,
        batch_size: shape.batch,
        grad_accum: 1,
        max_steps: shape.steps + shape.warmup + shape.profiled,
        max_len: opt.seq,
        max_grad_norm: 0.0,
        seed: opt.seed,
        device: if dev.is_cuda() {
            DeviceKind::Cuda
        } else {
            DeviceKind::Cpu
        },
        dtype: TrainDType::Bf16,
        layerwise: arm.layerwise,
        recompute: arm.recompute,
        // The subspace-residual telemetry of log steps (one extra projection per matrix) is a
        // diagnostic, not part of a training step: no log step inside the timed run.
        log_every: 1_000_000,
        block_backward: if arm.fused {
            BlockBackward::Fused
        } else {
            BlockBackward::Autograd
        },
        ..TrainConfig::default()
    }
}

/// Times one arm; the pool's high-water marks cover model, optimizer and every step. Everything
/// the run allocated is dropped when it returns, also on an error.
#[allow(clippy::too_many_arguments)]
fn run_arm(
    dev: &Device,
    opt: &P3Options,
    model_cfg: &LlamaConfig,
    arm: &Arm,
    n_params: usize,
    peak_flops: f64,
    shape: RunShape,
) -> Result<P3Result> {
    let cfg = train_config(arm, opt, shape, dev);
    let training = match crosslore_train::run::adapter_config(&cfg)? {
        Some(a) => Training::Adapter(a),
        None => Training::Full,
    };
    let peak = PoolPeak::start(dev)?;
    let model = random_model(model_cfg, dev, training)?;
    let data = dataset(
        shape.batch * (shape.steps + shape.warmup + shape.profiled),
        opt.seq,
        opt.dims.vocab,
        opt.seed,
    );
    let mut t = Trainer::new(cfg, model, data, 0)?;
    let mut first_step_s = f64::NAN;
    for i in 0..shape.warmup {
        let t0 = std::time::Instant::now();
        t.step()?;
        dev.synchronize()?;
        if i == 0 {
            first_step_s = t0.elapsed().as_secs_f64();
        }
    }
    let mut samples = Vec::new();
    let mut last_loss = f64::NAN;
    for _ in 0..shape.steps {
        let t0 = std::time::Instant::now();
        let rep = t.step()?;
        dev.synchronize()?;
        samples.push(t0.elapsed().as_secs_f64());
        last_loss = rep.loss;
    }
    let mut profile = None;
    let mut profiled = Vec::new();
    if shape.profiled > 0 {
        t.set_profiling(true);
        for _ in 0..shape.profiled {
            let t0 = std::time::Instant::now();
            t.step()?;
            dev.synchronize()?;
            profiled.push(t0.elapsed().as_secs_f64());
        }
        profile = Some(t.profile());
        t.set_profiling(false);
    }
    let (peak_used_gib, peak_reserved_gib) = peak.finish(dev)?;
    drop(t);
    dev.synchronize()?;
    let step_s = median(&samples);
    let (tokens_per_s, mfu) = throughput(shape.batch * opt.seq, n_params, step_s, peak_flops);
    Ok(P3Result {
        samples_s: samples,
        step_s,
        tokens_per_s,
        mfu,
        peak_used_gib,
        peak_reserved_gib,
        first_step_s,
        last_loss,
        profile,
        profiled_step_s: median(&profiled),
        ..P3Result::empty(arm)
    })
}

/// (tokens / s, MFU) of a step of `tokens` tokens taking `step_s`: MFU = 6 N tokens / time /
/// the bf16 matmul rate measured in the same run (module docs).
fn throughput(tokens: usize, n_params: usize, step_s: f64, peak_flops: f64) -> (f64, f64) {
    let tokens = tokens as f64;
    (
        tokens / step_s,
        6.0 * n_params as f64 * tokens / step_s / peak_flops,
    )
}

/// Runs P3 for `opt.arms` on `dev`; a failed arm is reported (and its fallback run) without
/// stopping the others.
pub fn run(dev: &Device, opt: &P3Options) -> Result<P3Report> {
    run_with_progress(dev, opt, |_| Ok(()))
}

/// [`run`], calling `progress` with the report so far after each arm (e.g. to write the JSON,
/// so that a run stopped by a time limit keeps its finished arms).
pub fn run_with_progress(
    dev: &Device,
    opt: &P3Options,
    mut progress: impl FnMut(&P3Report) -> Result<()>,
) -> Result<P3Report> {
    let arms = opt
        .arms
        .iter()
        .map(|l| find_arm(l))
        .collect::<Result<Vec<_>>>()?;
    let rates = floors::measure(dev, opt.rate_scale)?;
    let model_cfg = config(&opt.dims)?;
    let n_params = model_cfg
        .expected_tensors()
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    #[cfg(feature = "cuda")]
    let pool_is_default = pool::current(dev)?.map(|(_, d)| d);
    #[cfg(not(feature = "cuda"))]
    let pool_is_default = None;
    let mut rep = P3Report {
        device: crate::device_name(dev),
        options: opt.clone(),
        rates,
        n_params,
        pool_is_default,
        results: Vec::new(),
    };
    let mut queue: std::collections::VecDeque<Arm> = arms.into();
    while let Some(arm) = queue.pop_front() {
        let base = RunShape {
            batch: opt.batch,
            warmup: opt.warmup,
            steps: opt.steps,
            profiled: if opt.profile { opt.steps.max(1) } else { 0 },
        };
        let peak_flops = rep.rates.bf16_square_flops;
        let r = match run_arm(dev, opt, &model_cfg, &arm, n_params, peak_flops, base) {
            Ok(mut r) => {
                if let Some(mb) = &opt.max_batch {
                    let arm_run = |shape: RunShape| {
                        run_arm(dev, opt, &model_cfg, &arm, n_params, peak_flops, shape)
                    };
                    let found = max_batch_arm(dev, opt, mb, &r, peak_flops, n_params, arm_run)?;
                    eprintln!("p3 max batch {}: {found:?}", arm.label);
                    r.max_batch = Some(found);
                }
                r
            }
            Err(e) => {
                if let Some(f) = arm.fallback {
                    queue.push_front(find_arm(f)?);
                }
                P3Result {
                    error: Some(format!("{e}")),
                    ..P3Result::empty(&arm)
                }
            }
        };
        eprintln!("p3: {r:?}");
        rep.results.push(r);
        progress(&rep)?;
        dev.synchronize()?;
    }
    Ok(rep)
}

/// The largest-batch search of one arm whose run at `opt.batch` gave `base` ([`crate::p3_max`]).
/// `run` runs the arm at a shape. Only a device/driver failure outside the attempts is an error.
fn max_batch_arm(
    dev: &Device,
    opt: &P3Options,
    mb: &MaxBatchOptions,
    base: &P3Result,
    peak_flops: f64,
    n_params: usize,
    mut run: impl FnMut(RunShape) -> Result<P3Result>,
) -> Result<MaxBatchReport> {
    let (total_gib, budget_gib, base_point) = match &mb.simulate {
        Some(sim) => {
            let (u, r) = sim.at(opt.batch);
            let point = MemPoint {
                batch: opt.batch,
                used_gib: u,
                reserved_gib: r,
            };
            let total = sim.capacity_gib;
            (total, total * (1.0 - mb.free_fraction), Some(point))
        }
        None => {
            let (total, budget) =
                memory_budget(dev, mb.free_fraction)?.unwrap_or((f64::NAN, f64::NAN));
            let point = match (base.peak_used_gib, base.peak_reserved_gib) {
                (Some(u), Some(r)) => Some(MemPoint {
                    batch: opt.batch,
                    used_gib: u,
                    reserved_gib: r,
                }),
                _ => None,
            };
            (total, budget, point)
        }
    };
    let mut rep = MaxBatchReport {
        batch: None,
        free_fraction: mb.free_fraction,
        total_gib,
        budget_gib,
        base: base_point.unwrap_or(MemPoint {
            batch: opt.batch,
            used_gib: f64::NAN,
            reserved_gib: f64::NAN,
        }),
        plan: None,
        attempts: Vec::new(),
        samples_s: Vec::new(),
        step_s: f64::NAN,
        tokens_per_s: f64::NAN,
        mfu: f64::NAN,
        peak_used_gib: None,
        peak_reserved_gib: None,
        first_step_s: f64::NAN,
        error: None,
    };
    let Some(base_point) = base_point else {
        rep.error = Some("no device memory figures (the CUDA pool) for the search".into());
        return Ok(rep);
    };
    let searched = p3_max::search(base_point, budget_gib, mb, |b, kind| {
        let shape = match kind {
            // the first step allocates the optimizer state, the second is a steady step
            AttemptKind::Probe => RunShape {
                batch: b,
                warmup: opt.warmup.max(2),
                steps: 0,
                profiled: 0,
            },
            AttemptKind::Final => RunShape {
                batch: b,
                warmup: opt.warmup,
                steps: mb.steps.max(1),
                profiled: 0,
            },
        };
        let simulated = mb.simulate.map(|sim| sim.at(b));
        if let (Some(sim), Some((_, reserved))) = (&mb.simulate, simulated) {
            if reserved > sim.capacity_gib {
                return Err(AttemptError::Oom(format!(
                    "simulated out of memory: {reserved:.1} GiB at b={b}"
                )));
            }
        }
        // A panic inside candle/cudarc on a failed allocation must not end the other arms:
        // caught and classified like an error (its unwinding drops the attempt's model).
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(shape)))
            .map_err(|p| {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                AttemptError::from_message(format!("panic: {msg}"))
            })?
            .map_err(|e| AttemptError::from_message(e.to_string()))?;
        let (used_gib, reserved_gib) = match simulated {
            Some(m) => m,
            None => (
                r.peak_used_gib.unwrap_or(f64::NAN),
                r.peak_reserved_gib.unwrap_or(f64::NAN),
            ),
        };
        Ok(p3_max::Ran {
            mem: MemPoint {
                batch: b,
                used_gib,
                reserved_gib,
            },
            result: r,
        })
    });
    // a failed attempt leaves nothing behind; the next arm starts from a trimmed pool
    dev.synchronize()?;
    rep.plan = searched.plan;
    rep.attempts = searched.attempts;
    rep.error = searched.error;
    if let Some(best) = searched.best {
        let r = best.result;
        rep.batch = Some(best.mem.batch);
        rep.step_s = r.step_s;
        (rep.tokens_per_s, rep.mfu) =
            throughput(best.mem.batch * opt.seq, n_params, r.step_s, peak_flops);
        rep.samples_s = r.samples_s;
        rep.peak_used_gib = Some(best.mem.used_gib);
        rep.peak_reserved_gib = Some(best.mem.reserved_gib);
        rep.first_step_s = r.first_step_s;
    }
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p3_max::SimulatedMemory;

    /// A panic inside an attempt (candle/cudarc failing on an allocation) is caught: an
    /// out-of-memory message steps the search down, another one ends it with its message.
    #[test]
    fn a_panicking_attempt_is_classified_and_the_search_goes_on() {
        let opt = P3Options {
            dims: ModelDims::llama2_7b(1, 16),
            batch: 2,
            seq: 32,
            steps: 1,
            warmup: 2,
            seed: 1,
            rate_scale: 16,
            arms: Vec::new(),
            max_batch: None,
            profile: false,
        };
        let mb = MaxBatchOptions {
            simulate: Some(SimulatedMemory {
                fixed_gib: 20.0,
                per_sample_gib: 3.0,
                overhead: 1.0,
                capacity_gib: 50.0,
            }),
            ..Default::default()
        };
        let arm = find_arm("lora-fused").unwrap();
        let base = P3Result::empty(&arm);
        let ok = |shape: RunShape| P3Result {
            samples_s: vec![0.1; shape.steps],
            step_s: 0.1,
            ..P3Result::empty(&arm)
        };
        // probe 4 fits; the prediction (budget 48.5 GiB: 9) and the step-downs 8, 7 panic
        let rep = max_batch_arm(&Device::Cpu, &opt, &mb, &base, 1e12, 1000, |shape| {
            if shape.batch > 4 {
                panic!("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")");
            }
            Ok(ok(shape))
        })
        .unwrap();
        let tried: Vec<usize> = rep.attempts.iter().map(|a| a.batch).collect();
        assert_eq!(tried, vec![4, 9, 8, 7]);
        assert_eq!(rep.error.as_deref(), Some("oom at b=9, 8, 7"));
        assert!(rep.batch.is_none());
        let rep = max_batch_arm(&Device::Cpu, &opt, &mb, &base, 1e12, 1000, |shape| {
            if shape.batch > 4 {
                panic!("index out of bounds");
            }
            Ok(ok(shape))
        })
        .unwrap();
        assert_eq!(rep.attempts.len(), 2);
        assert_eq!(rep.error.as_deref(), Some("panic: index out of bounds"));
    }
}
