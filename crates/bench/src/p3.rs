//! P3/P4 (partial, issue 5): end-to-end training steps of a LLaMA-2-7B-shaped model with random
//! weights, bf16, through the crate's own `Trainer` (forward + backward + optimizer, the same code
//! as `crosslore finetune`), and the device memory in use.
//!
//! Setting of the reference figures (`../shared/ANCHORS.md`, measured on the same H200 with
//! PyTorch + transformers + galore-torch/peft): batch 4 x sequence 512 (2048 tokens), random
//! tokens, no gradient checkpointing. Methods timed here: `adamw` (full model) and `crosslore`
//! (layerwise, rank 128, gap 200, scale 0.25, cross-head q/k, residual 1.2 %). GaLore is left out
//! (its first step refreshes 224 exact SVDs, ~3.5 min: P1), as are LoRA/DoRA.
//!
//! Time: median of `steps` synchronised steps after 2 warm-up steps (the first refreshes the
//! projectors; the refresh amortised at gap 200 is P1's figure / 200). Throughput:
//! `batch * seq / step`; MFU: `6 * N * tokens / time / peak`, N = parameter count, peak = the
//! bf16 matmul rate measured in the same run (as ANCHORS). Memory ("P4"): device memory in use
//! (`cuMemGetInfo`: total - free) sampled every ~1 ms by a thread during the timed steps, minus
//! the value before the model was built. This is memory *reserved* by the CUDA allocator (the
//! stream-ordered pool gives freed blocks back only at synchronisations), so it is an upper bound
//! of the allocated peak; torch's figure in ANCHORS is `max_memory_allocated`.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use crosslore_data::Encoded;
use crosslore_linalg::Rng;
use crosslore_model::{Llama, LlamaConfig, LoadOptions, Training};
use crosslore_train::config::{DType as TrainDType, DeviceKind, Method};
use crosslore_train::{TrainConfig, Trainer};
use serde::Serialize;

use crate::floors::{self, Rates};
use crate::shapes::ModelDims;
use crate::timing::median;
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct P3Options {
    pub dims: ModelDims,
    pub batch: usize,
    pub seq: usize,
    /// Timed steps per method (after 2 warm-up steps).
    pub steps: usize,
    pub seed: u64,
    pub rate_scale: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct P3Result {
    pub method: String,
    pub layerwise: bool,
    pub samples_s: Vec<f64>,
    pub step_s: f64,
    pub tokens_per_s: f64,
    pub mfu: f64,
    /// Device memory in use above the empty-device baseline, GiB (see the module docs).
    pub peak_reserved_gib: f64,
    pub last_loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct P3Report {
    pub device: String,
    pub options: P3Options,
    pub rates: Rates,
    pub n_params: usize,
    pub results: Vec<P3Result>,
}

fn config(d: &ModelDims) -> Result<LlamaConfig> {
    let v = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": d.hidden,
        "intermediate_size": d.ffn,
        "num_hidden_layers": d.layers,
        "num_attention_heads": d.n_heads,
        "num_key_value_heads": d.n_heads,
        "vocab_size": d.vocab,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "torch_dtype": "bfloat16"
    });
    Ok(LlamaConfig::from_json_value(v, "p3 config")?)
}

fn random_model(cfg: &LlamaConfig, dev: &Device) -> Result<Llama> {
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
        training: Training::Full,
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

/// Device memory in use (bytes), or 0 off CUDA.
fn used_bytes(dev: &Device) -> usize {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cd) = dev {
        if let Ok((free, total)) = cd.cuda_stream().context().mem_get_info() {
            return total - free;
        }
    }
    let _ = dev;
    0
}

/// Samples [`used_bytes`] every ~1 ms until stopped; returns the maximum.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicUsize>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PeakSampler {
    fn start(dev: &Device) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicUsize::new(used_bytes(dev)));
        let (s, p, d) = (stop.clone(), peak.clone(), dev.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(used_bytes(&d), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        Self {
            stop,
            peak,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Runs P3 for `adamw` (full model) and `crosslore` (layerwise) on `dev`.
pub fn run(dev: &Device, opt: &P3Options) -> Result<P3Report> {
    let rates = floors::measure(dev, opt.rate_scale)?;
    let cfg_model = config(&opt.dims)?;
    let mut results = Vec::new();
    let mut n_params = 0;
    for (method, layerwise) in [(Method::Crosslore, true), (Method::Adamw, false)] {
        dev.synchronize()?;
        let base = used_bytes(dev);
        let model = random_model(&cfg_model, dev)?;
        n_params = model
            .params()
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum();
        let cfg = TrainConfig {
            method,
            rank: opt.dims.rank,
            update_interval: 200,
            scale: 0.25,
            residual_ratio: 0.012,
            learning_rate: 1e-5,
            warmup_steps: 0,
            batch_size: opt.batch,
            grad_accum: 1,
            max_steps: opt.steps + 2,
            max_len: opt.seq,
            max_grad_norm: 0.0,
            seed: opt.seed,
            device: if dev.is_cuda() {
                DeviceKind::Cuda
            } else {
                DeviceKind::Cpu
            },
            dtype: TrainDType::Bf16,
            layerwise,
            ..TrainConfig::default()
        };
        let data = dataset(
            opt.batch * (opt.steps + 2),
            opt.seq,
            opt.dims.vocab,
            opt.seed,
        );
        let mut t = Trainer::new(cfg, model, data, 0)?;
        for _ in 0..2 {
            t.step()?;
        }
        dev.synchronize()?;
        let sampler = PeakSampler::start(dev);
        let mut samples = Vec::new();
        let mut last_loss = f64::NAN;
        for _ in 0..opt.steps {
            let t0 = std::time::Instant::now();
            let rep = t.step()?;
            dev.synchronize()?;
            samples.push(t0.elapsed().as_secs_f64());
            last_loss = rep.loss;
        }
        let peak = sampler.finish();
        let step_s = median(&samples);
        let tokens = (opt.batch * opt.seq) as f64;
        let r = P3Result {
            method: format!("{method:?}").to_lowercase(),
            layerwise,
            samples_s: samples,
            step_s,
            tokens_per_s: tokens / step_s,
            mfu: 6.0 * n_params as f64 * tokens / step_s / rates.bf16_square_flops,
            peak_reserved_gib: peak.saturating_sub(base) as f64 / (1u64 << 30) as f64,
            last_loss,
        };
        eprintln!("p3: {r:?}");
        results.push(r);
        drop(t);
        dev.synchronize()?;
    }
    Ok(P3Report {
        device: crate::device_name(dev),
        options: opt.clone(),
        rates,
        n_params,
        results,
    })
}

/// The P3 table as Markdown.
pub fn table(rep: &P3Report) -> String {
    let mut s = format!(
        "P3/P4 end-to-end step, {} parameters, batch {} x seq {}, bf16, device {}\n\n| method | layerwise | s / step | tokens / s | MFU | peak reserved GiB |\n|---|---|---|---|---|---|\n",
        rep.n_params, rep.options.batch, rep.options.seq, rep.device
    );
    for r in &rep.results {
        s += &format!(
            "| {} | {} | {:.3} | {:.0} | {:.1} % | {:.1} |\n",
            r.method,
            r.layerwise,
            r.step_s,
            r.tokens_per_s,
            100.0 * r.mfu,
            r.peak_reserved_gib
        );
    }
    s += &format!(
        "\nbf16 matmul {:.0} TFLOP/s (MFU denominator, same run)\n",
        rep.rates.bf16_square_flops / 1e12
    );
    s
}
