//! Memory accounting of a run (issue 3 item 6; DESIGN.md §2 "honest memory accounting").
//!
//! - weights: every base weight (from the config's shapes) plus adapters;
//! - gradients alive at peak: **measured** by the training loop's own bookkeeping (the largest
//!   sum of weight-gradient bytes it held at once: accumulation buffers plus the gradient store
//!   in whole-graph mode, plus one block's gradients and pending shared ones in layerwise mode),
//!   and an estimate from shapes for comparison;
//! - optimizer state: exact, from the optimizer ([`crosslore_optim::StateBytes`]);
//! - activations: **estimated** from shapes (below), for the largest micro-batch seen;
//! - process peak resident memory: `VmHWM` of `/proc/self/status` (Linux; the whole process,
//!   so it includes the allocator's slack and anything else the process holds).
//!
//! Activation estimate: per decoder layer, the tensors candle's autograd keeps for the backward
//! of the composite ops this model is built from (RMSNorm x2: 3 `[b,s,h]` each; Q/K/V
//! projections and their head-major copies; RoPE on Q and K: 4 copies each; repeated K/V and the
//! transposed K; attention scores, scaled, masked, and softmax's max-shifted/exp/normalised
//! copies: 6 `[b,nh,s,s]`; the attention output and its copy; o_proj and the residual; the MLP's
//! gate, SiLU, up, product: 4 `[b,s,f]`; down_proj and the residual), in the model dtype; the final
//! block keeps its RMSNorm, the logits and 3 f32 logits-sized tensors of the log-sum-exp.
//! Whole-graph mode and layerwise mode without recomputation keep every block's activations until
//! the backward reaches it (layerwise also keeps a detached copy of each block input);
//! layerwise with `recompute` keeps the block inputs and one block's activations at a time.

use std::collections::HashMap;

use crosslore_model::{Llama, LlamaConfig};
use serde::{Deserialize, Serialize};

use crate::grads::tensor_bytes;

/// Activation elements kept by one decoder layer for its backward (module docs).
fn layer_elems(c: &LlamaConfig, b: usize, s: usize) -> usize {
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let (nh, nkv, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
    let bs = b * s;
    let norms = 2 * 3 * bs * h;
    let qkv = 2 * (bs * nh * d + 2 * bs * nkv * d);
    let rope = 4 * (bs * nh * d + bs * nkv * d);
    let repeat = 3 * bs * nh * d;
    let scores = 6 * b * nh * s * s;
    let attn_out = 2 * bs * nh * d;
    let residuals = 4 * bs * h;
    let mlp = 4 * bs * f;
    norms + qkv + rope + repeat + scores + attn_out + residuals + mlp
}

/// Estimated activation bytes alive at the start of the backward (module docs) for a micro-batch
/// of `batch x seq` tokens. `elem` is the model dtype's size; the loss is computed in f32.
pub fn activation_bytes(
    c: &LlamaConfig,
    batch: usize,
    seq: usize,
    elem: usize,
    layerwise_recompute: bool,
) -> usize {
    let bsh = batch * seq * c.hidden_size;
    let layer = layer_elems(c, batch, seq) * elem;
    let logits = batch * seq * c.vocab_size;
    let final_block = 3 * bsh * elem + logits * elem + 3 * logits * 4;
    let l = c.num_hidden_layers;
    if layerwise_recompute {
        (l + 1) * bsh * elem + layer.max(final_block)
    } else {
        bsh * elem + l * layer + final_block
    }
}

/// Estimated activation bytes the fused blocks keep at the start of the backward
/// (`crosslore_model::fused::LayerSaved` per layer: input, two norms' outputs, rotated q/k, v,
/// attention probabilities, attention output, the residual sum, gate, up and their product, two
/// f32 `rstd` rows; the head computes its logits in chunks of at most
/// `crosslore_model::fused::LOGITS_CHUNK_BYTES`, with their gradient). With recompute: every
/// block input plus one layer's saved activations.
pub fn fused_activation_bytes(
    c: &LlamaConfig,
    batch: usize,
    seq: usize,
    elem: usize,
    recompute: bool,
) -> usize {
    let bs = batch * seq;
    let (h, f, nh, nkv, d) = (
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
    );
    let layer =
        (4 * bs * h + 2 * bs * nh * d + 2 * bs * nkv * d + batch * nh * seq * seq + 3 * bs * f)
            * elem
            + 2 * bs * 4;
    let head = 2 * (bs * c.vocab_size * elem).min(crosslore_model::fused::LOGITS_CHUNK_BYTES);
    let l = c.num_hidden_layers;
    if recompute {
        (l + 1) * bs * h * elem + layer + head
    } else {
        bs * h * elem + l * layer + head
    }
}

/// Gradient bytes alive in a layerwise sweep: the largest block's own parameters plus the
/// parameters shared between blocks (the tied embedding), whose gradient stays pending from its
/// first to its last block.
pub fn largest_block_bytes(model: &Llama) -> usize {
    let blocks = model.blocks();
    let mut uses: HashMap<String, (usize, usize)> = HashMap::new();
    for b in &blocks {
        for (name, v) in b.params() {
            uses.entry(name)
                .or_insert((0, tensor_bytes(v.as_tensor())))
                .0 += 1;
        }
    }
    let shared = |n: &str| uses.get(n).is_some_and(|(k, _)| *k > 1);
    let largest_own = blocks
        .iter()
        .map(|b| {
            b.params()
                .iter()
                .filter(|(n, _)| !shared(n))
                .map(|(_, v)| tensor_bytes(v.as_tensor()))
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    let shared_bytes: usize = uses.values().filter(|(k, _)| *k > 1).map(|(_, b)| b).sum();
    largest_own + shared_bytes
}

/// Inputs of [`report`].
#[derive(Debug, Clone)]
pub struct ReportInputs {
    pub layerwise: bool,
    /// `block_backward = "fused"`: whole-model mode sweeps blocks into the accumulation buffers
    /// (no second full gradient store).
    pub fused: bool,
    pub recompute: bool,
    pub grad_accum: usize,
    pub weights_bytes: usize,
    pub trainable_bytes: usize,
    pub block_grad_bytes: usize,
    pub grads_peak_measured: usize,
    pub optimizer_state_bytes: usize,
    pub activations: usize,
}

/// The memory report written to `memory.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// `layerwise`, `layerwise+recompute` or `whole-graph`.
    pub mode: String,
    pub weights_bytes: usize,
    pub trainable_bytes: usize,
    /// Weight-gradient bytes alive at once, from the training loop's bookkeeping.
    pub grads_peak_bytes: usize,
    /// The same from shapes: whole-graph holds a full gradient store (plus the accumulation
    /// buffers when `grad_accum > 1`); layerwise one block's gradients (plus the buffers).
    pub grads_peak_estimate_bytes: usize,
    /// Exact, from the optimizer.
    pub optimizer_state_bytes: usize,
    /// Estimated from shapes (module docs).
    pub activations_estimate_bytes: usize,
    /// weights + gradient peak (measured) + optimizer state + activations (estimated).
    pub estimated_peak_bytes: usize,
    /// `VmHWM` of this process, when available.
    pub process_peak_rss_bytes: Option<u64>,
}

/// Builds the report (module docs).
pub fn report(i: ReportInputs) -> MemoryReport {
    let buffers = if i.grad_accum > 1 {
        i.trainable_bytes
    } else {
        0
    };
    let grads_est = match (i.layerwise, i.fused) {
        (true, _) => buffers + i.block_grad_bytes,
        (false, false) => buffers + i.trainable_bytes,
        // The buffers fill block by block: the first micro-batch's gradients become the
        // buffers; later ones add one block's gradients at a time.
        (false, true) if i.grad_accum > 1 => i.trainable_bytes + i.block_grad_bytes,
        (false, true) => i.trainable_bytes,
    };
    let mode = match (i.layerwise, i.recompute) {
        (true, true) => "layerwise+recompute",
        (true, false) => "layerwise",
        (false, _) => "whole-graph",
    };
    let mode = if i.fused {
        format!("{mode} (fused blocks)")
    } else {
        mode.to_string()
    };
    MemoryReport {
        mode,
        weights_bytes: i.weights_bytes,
        trainable_bytes: i.trainable_bytes,
        grads_peak_bytes: i.grads_peak_measured,
        grads_peak_estimate_bytes: grads_est,
        optimizer_state_bytes: i.optimizer_state_bytes,
        activations_estimate_bytes: i.activations,
        estimated_peak_bytes: i.weights_bytes
            + i.grads_peak_measured
            + i.optimizer_state_bytes
            + i.activations,
        process_peak_rss_bytes: peak_rss_bytes(),
    }
}

/// `VmHWM` (peak resident set size) of this process from `/proc/self/status`, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&text)
}

/// `VmRSS` (current resident set size) of this process, in bytes.
pub fn current_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kb(&text, "VmRSS:")
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    parse_status_kb(status, "VmHWM:")
}

fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_parses_kilobytes() {
        let s = "Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(s), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
