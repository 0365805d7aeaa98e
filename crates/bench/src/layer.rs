//! Issue 8: one LLaMA-2-7B-shaped decoder layer, forward and forward + backward, bf16, batch
//! 4 x sequence 512, through the hand-differentiated fused block (`crosslore_model::fused`)
//! and through candle's autograd block; the head (final norm + lm_head + cross-entropy) the
//! same way; and the gradients of the two paths compared on the device.
//!
//! FLOPs (as `../shared/ANCHORS.md` counts them): forward + backward = `6 * P * tokens` for the
//! layer's `P` weights plus the attention products `12 * b * s^2 * hidden` (QK^T and PV, each
//! `2 b s^2 h` forward and twice that backward; causal masking not subtracted). Forward alone
//! is a third of that. The floor is that work at the bf16 matmul rate measured in the same run.
use candle_core::{DType, Device, Tensor, Var};
use crosslore_model::fused::{
    head_forward_backward, layer_backward, layer_forward, shifted_targets,
};
use crosslore_model::{causal_lm_loss_sum, Block, Training};
use serde::Serialize;

use crate::floors;
use crate::p3::{config, random_model};
use crate::shapes::ModelDims;
use crate::timing::median_time;
use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct LayerOptions {
    pub batch: usize,
    pub seq: usize,
    pub reps: usize,
    pub warmup: usize,
}

impl Default for LayerOptions {
    fn default() -> Self {
        Self {
            batch: 4,
            seq: 512,
            reps: 10,
            warmup: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub what: String,
    pub ms: f64,
    pub tflops: f64,
    /// Measured time over the matmul floor (FLOPs at the measured bf16 rate).
    pub vs_floor: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub options: LayerOptions,
    pub bf16_tflops: f64,
    pub rows: Vec<LayerRow>,
    /// Largest relative difference (to each tensor's largest entry) between the fused and
    /// autograd gradients of the layer's weights and input, bf16.
    pub grad_rel_diff: Vec<(String, f32)>,
}

/// `max |a - b| / max |b|` (model-check's measure).
fn rel(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok(crate::model_check::compare(String::new(), a, b, f32::INFINITY)?.rel)
}

pub fn run(dev: &Device, opt: &LayerOptions) -> Result<LayerReport> {
    crosslore_fused::keep_memory_pool(dev)?;
    let rates = floors::measure(dev, if dev.is_cpu() { 16 } else { 1 })?;
    let peak = rates.bf16_square_flops;
    let d = ModelDims::llama2_7b(1, 1);
    let cfg = config(&d)?;
    let model = random_model(&cfg, dev, Training::Full)?;
    let layer = &model.layers[0];
    let (b, s, h) = (opt.batch, opt.seq, d.hidden);
    let tokens = (b * s) as f64;
    let layer_params: usize = layer.params().iter().map(|(_, v)| v.elem_count()).sum();
    let attn = 12.0 * b as f64 * (s * s) as f64 * h as f64;
    let fb_flops = 6.0 * layer_params as f64 * tokens + attn;
    let x = (Tensor::randn(0f32, 1f32, (b, s, h), dev)?).to_dtype(DType::BF16)?;
    let dy = (Tensor::randn(0f32, 1e-3f32, (b, s, h), dev)?).to_dtype(DType::BF16)?;
    let ctx = model.context(b, s, None, true, 0)?;
    let mut rows = Vec::new();
    let mut push = |what: &str, sec: f64, flops: f64| {
        rows.push(LayerRow {
            what: what.into(),
            ms: sec * 1e3,
            tflops: flops / sec / 1e12,
            vs_floor: sec / (flops / peak),
        });
    };
    let (t, _) = median_time(dev, opt.warmup, opt.reps, || {
        Ok(layer_forward(layer, &x, &ctx)?.0)
    })?;
    push("layer fwd, fused", t, fb_flops / 3.0);
    let (t, _) = median_time(dev, opt.warmup, opt.reps, || {
        let (_, sv) = layer_forward(layer, &x, &ctx)?;
        let mut g = Vec::new();
        Ok(layer_backward(layer, &dy, &sv, &ctx, &mut g)?)
    })?;
    push("layer fwd+bwd, fused", t, fb_flops);
    // The input as a Var (its gradient is compared below) and the layer's gradients.
    let autograd = || -> Result<(candle_core::backprop::GradStore, Var)> {
        let xv = Var::from_tensor(&x)?;
        let out = layer.forward(xv.as_tensor(), &ctx)?;
        Ok(((out * &dy)?.sum_all()?.backward()?, xv))
    };
    let (t, _) = median_time(dev, opt.warmup, opt.reps, || Ok(layer.forward(&x, &ctx)?))?;
    push("layer fwd, candle autograd ops", t, fb_flops / 3.0);
    let (t, _) = median_time(dev, opt.warmup, opt.reps, autograd)?;
    push("layer fwd+bwd, candle autograd", t, fb_flops);
    // Head: final norm + lm_head + cross-entropy over vocab 32000.
    let ids: Vec<i64> = (0..b * s).map(|i| ((i * 7919) % d.vocab) as i64).collect();
    let (targets, count) = shifted_targets(&ids, b, s, d.vocab, dev)?;
    let head_flops = 6.0 * (d.vocab * h) as f64 * tokens;
    let (t, _) = median_time(dev, opt.warmup, opt.reps, || {
        let mut g = Vec::new();
        Ok(head_forward_backward(&model.final_block, &x, &targets, 1.0 / count as f32, &mut g)?.dx)
    })?;
    push("head+loss fwd+bwd, fused", t, head_flops);
    let labels = Tensor::from_vec(ids.clone(), (b, s), dev)?;
    let (t, _) = median_time(dev, opt.warmup, opt.reps, || {
        let xv = Var::from_tensor(&x)?;
        let logits = model.final_block.forward(xv.as_tensor(), &ctx)?;
        let (loss, _) = causal_lm_loss_sum(&logits, &labels, None)?;
        Ok(loss.backward()?)
    })?;
    push("head+loss fwd+bwd, candle autograd", t, head_flops);
    // Gradients of the two paths on the same inputs.
    let (store, xv) = autograd()?;
    let (_, sv) = layer_forward(layer, &x, &ctx)?;
    let mut fused = Vec::new();
    let dx = layer_backward(layer, &dy, &sv, &ctx, &mut fused)?;
    let mut grad_rel_diff = Vec::new();
    if let Some(g) = store.get(xv.as_tensor()) {
        grad_rel_diff.push(("input".to_string(), rel(&dx, g)?));
    }
    for (name, var, g) in &fused {
        if let Some(want) = store.get(var.as_tensor()) {
            grad_rel_diff.push((name.clone(), rel(g, want)?));
        }
    }
    Ok(LayerReport {
        options: opt.clone(),
        bf16_tflops: peak / 1e12,
        rows,
        grad_rel_diff,
    })
}

pub fn table(r: &LayerReport) -> String {
    let mut out = format!(
        "LLaMA-2-7B layer, bf16, batch {} x seq {}; bf16 matmul peak {:.0} TFLOP/s\n| what | ms | TFLOP/s | x floor |\n|---|---|---|---|\n",
        r.options.batch, r.options.seq, r.bf16_tflops
    );
    for row in &r.rows {
        out += &format!(
            "| {} | {:.2} | {:.0} | {:.2} |\n",
            row.what, row.ms, row.tflops, row.vs_floor
        );
    }
    out += "fused vs autograd gradients (bf16, relative to the largest entry):\n";
    for (n, d) in &r.grad_rel_diff {
        out += &format!("  {n}: {d:.2e}\n");
    }
    out
}
