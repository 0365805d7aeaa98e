//! Autoregressive generation for [`Llama`] (issue 4, item 3): greedy or sampled (temperature,
//! top-p, seeded), stopping on EOS ids, stop strings or `max_new_tokens`, batched, on any candle
//! device.
//!
//! **With the KV cache** (default) prompts are processed in batches: left-padded to the longest
//! prompt, with an attention mask hiding the padding and per-row position ids (a row with `p`
//! pad tokens starts its positions at 0 after the padding, as transformers' `generate` does), so
//! every row computes what it would compute alone. The prompt is run once (prefill), then one
//! token per step attends to the cached keys/values ([`crate::kv_cache`]). Finished rows leave
//! the batch (their cache rows are dropped), so a long answer does not make the short ones pay.
//!
//! **Without the cache** ([`GenerateConfig::use_cache`] = false) each prompt is handled alone and
//! every step recomputes the whole sequence with [`Llama::forward`]: the slow reference the
//! cached path is tested against (token-identical greedy output).
//!
//! The cached step reuses the model's own pieces ([`rms_norm`], [`apply_rope`], [`repeat_kv`],
//! [`softmax_last_dim`], the layers' [`crate::Linear::forward`] and the embedding/final blocks);
//! only the attention wiring is restated, because [`DecoderLayer`]'s attention takes no cache.
//! It follows transformers' eager attention exactly as the layer does: scores in the model
//! dtype, mask added and softmax taken in f32, then cast back.
//!
//! Token choice runs on the host from the last position's logits: greedy takes the first
//! maximum; sampling divides by the temperature, keeps the smallest set of most likely tokens
//! whose probability reaches `top_p` (at least one), renormalises and draws from a [`Rng`]
//! derived from `(seed, prompt index)`, so a prompt's sample does not depend on which other
//! prompts share its batch.

use candle_core::{DType, Tensor};
use crosslore_linalg::Rng;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::block::Block;
use crate::ctx::ForwardCtx;
use crate::error::{ModelError, Result};
use crate::kv_cache::{KvCache, LayerCache};
use crate::layer::DecoderLayer;
use crate::model::Llama;
use crate::ops::{repeat_kv, rms_norm, softmax_last_dim};
use crate::rope::apply_rope;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// The most likely token (first one on ties).
    Greedy,
    /// Draw from `softmax(logits / temperature)` restricted to the top-p nucleus.
    Sample {
        /// `> 0`; 1 keeps the model's distribution.
        temperature: f64,
        /// In `(0, 1]`; 1 disables the nucleus cut.
        top_p: f64,
        /// Seed of the draws; prompt `i` uses the stream `Rng::derive(seed, i)`.
        seed: u64,
    },
}

/// Options of [`generate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateConfig {
    /// Tokens generated at most per prompt (an EOS counts). Default 64.
    pub max_new_tokens: usize,
    /// Default greedy.
    pub sampling: Sampling,
    /// Generation of a prompt ends when one of these ids is produced (not kept in `tokens`).
    pub eos_ids: Vec<u32>,
    /// Generation ends when the decoded text (special tokens skipped) contains one of these; the
    /// text is cut before it. Needs a tokenizer.
    pub stop_strings: Vec<String>,
    /// Use the KV cache (batched); `false` recomputes every step, one prompt at a time.
    /// Default true.
    pub use_cache: bool,
    /// Prompts per batch with the cache; 0 = all at once. Default 8.
    pub batch_size: usize,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_new_tokens: 64,
            sampling: Sampling::Greedy,
            eos_ids: Vec::new(),
            stop_strings: Vec::new(),
            use_cache: true,
            batch_size: 8,
        }
    }
}

impl GenerateConfig {
    /// Checks the sampling parameters and stop strings.
    pub fn validate(&self) -> Result<()> {
        if let Sampling::Sample {
            temperature, top_p, ..
        } = self.sampling
        {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(ModelError::input(
                    "generate temperature",
                    format!("expected a finite number > 0, got {temperature}"),
                ));
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(ModelError::input(
                    "generate top_p",
                    format!("expected a number in (0, 1], got {top_p}"),
                ));
            }
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return Err(ModelError::input(
                "generate stop_strings",
                "a stop string must not be empty",
            ));
        }
        Ok(())
    }
}

/// Why a prompt's generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// This EOS id was produced (not included in `tokens`).
    Eos { id: u32 },
    /// The text reached a stop string (the token that completed it is in `tokens`; `text` is cut
    /// before the stop string).
    StopString,
    /// `max_new_tokens` reached.
    Length,
}

/// The result for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The new token ids (without the prompt and without the final EOS).
    pub tokens: Vec<u32>,
    /// `tokens` decoded with special tokens skipped, cut before a stop string; `None` without a
    /// tokenizer.
    pub text: Option<String>,
    pub finish: FinishReason,
}

/// The per-prompt state of a generation.
struct Sequence<'a> {
    tokens: Vec<u32>,
    text: Option<String>,
    finish: Option<FinishReason>,
    rng: Option<Rng>,
    cfg: &'a GenerateConfig,
    tokenizer: Option<&'a Tokenizer>,
}

impl<'a> Sequence<'a> {
    fn new(index: usize, cfg: &'a GenerateConfig, tokenizer: Option<&'a Tokenizer>) -> Self {
        let rng = match cfg.sampling {
            Sampling::Greedy => None,
            Sampling::Sample { seed, .. } => Some(Rng::derive(seed, index as u64)),
        };
        Sequence {
            tokens: Vec::new(),
            text: tokenizer.map(|_| String::new()),
            finish: (cfg.max_new_tokens == 0).then_some(FinishReason::Length),
            rng,
            cfg,
            tokenizer,
        }
    }

    fn done(&self) -> bool {
        self.finish.is_some()
    }

    /// Choose the next token from the last position's logits and update the state.
    fn push(&mut self, logits: &[f32]) -> Result<()> {
        let next = choose(logits, &self.cfg.sampling, self.rng.as_mut());
        if self.cfg.eos_ids.contains(&next) {
            self.finish = Some(FinishReason::Eos { id: next });
            return Ok(());
        }
        self.tokens.push(next);
        if let Some(tok) = self.tokenizer {
            let mut text = decode(tok, &self.tokens)?;
            let stop = self
                .cfg
                .stop_strings
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min();
            if let Some(pos) = stop {
                text.truncate(pos);
                self.finish = Some(FinishReason::StopString);
            }
            self.text = Some(text);
        }
        if self.finish.is_none() && self.tokens.len() >= self.cfg.max_new_tokens {
            self.finish = Some(FinishReason::Length);
        }
        Ok(())
    }

    fn finish(self) -> Generation {
        Generation {
            tokens: self.tokens,
            text: self.text,
            finish: self.finish.unwrap_or(FinishReason::Length),
        }
    }
}

fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String> {
    tok.decode(ids, true)
        .map_err(|e| ModelError::input("tokenizer decode", e.to_string()))
}

/// Index of the first maximum (NaN never wins).
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

/// The next token under `sampling` (see the module docs).
fn choose(logits: &[f32], sampling: &Sampling, rng: Option<&mut Rng>) -> u32 {
    let (
        Sampling::Sample {
            temperature, top_p, ..
        },
        Some(rng),
    ) = (sampling, rng)
    else {
        return argmax(logits);
    };
    let max = logits[argmax(logits) as usize] as f64;
    if !max.is_finite() {
        return argmax(logits);
    }
    // softmax(logits / T) in f64, unnormalised; NaN logits get probability 0
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let p = ((l as f64 - max) / temperature).exp();
            (i as u32, if p.is_nan() { 0.0 } else { p })
        })
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    // most likely first; ties by id for a platform-independent order
    probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let (mut kept, mut n) = (0.0, 0);
    for &(_, p) in &probs {
        kept += p;
        n += 1;
        if kept >= top_p * total {
            break;
        }
    }
    let u = rng.next_f64() * kept;
    let mut acc = 0.0;
    for &(id, p) in &probs[..n] {
        acc += p;
        if u < acc {
            return id;
        }
    }
    probs[n - 1].0
}

fn check_prompts(model: &Llama, prompts: &[Vec<u32>]) -> Result<()> {
    let vocab = model.config.vocab_size;
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(ModelError::input(
                "generate prompts",
                format!("prompt {i} has no tokens"),
            ));
        }
        if let Some(&bad) = p.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::input(
                "generate prompts",
                format!("prompt {i}: token id {bad} >= vocab_size {vocab}"),
            ));
        }
    }
    Ok(())
}

/// Generate a continuation of each prompt (token ids). `tokenizer` is needed for
/// [`GenerateConfig::stop_strings`] and fills [`Generation::text`]. Results are in prompt order.
pub fn generate(
    model: &Llama,
    prompts: &[Vec<u32>],
    cfg: &GenerateConfig,
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<Generation>> {
    cfg.validate()?;
    if tokenizer.is_none() && !cfg.stop_strings.is_empty() {
        return Err(ModelError::input(
            "generate stop_strings",
            "stop strings need a tokenizer to decode the output",
        ));
    }
    check_prompts(model, prompts)?;
    // No graph through trainable weights (evaluation inside a training run).
    let model = &model.inference_view();
    if !cfg.use_cache {
        return prompts
            .iter()
            .enumerate()
            .map(|(i, p)| generate_recompute(model, i, p, cfg, tokenizer))
            .collect();
    }
    let size = if cfg.batch_size == 0 {
        prompts.len().max(1)
    } else {
        cfg.batch_size
    };
    let mut out = Vec::with_capacity(prompts.len());
    for (c, chunk) in prompts.chunks(size).enumerate() {
        out.extend(generate_batch(model, chunk, c * size, cfg, tokenizer)?);
    }
    Ok(out)
}

/// [`generate`] from text prompts, tokenised without special tokens (chat templates write their
/// markers in the text).
pub fn generate_text(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompts: &[&str],
    cfg: &GenerateConfig,
) -> Result<Vec<Generation>> {
    let ids = prompts
        .iter()
        .map(|p| {
            tokenizer
                .encode(*p, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| ModelError::input("tokenizer encode", e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    generate(model, &ids, cfg, Some(tokenizer))
}

impl Llama {
    /// Append up to `max_new` greedily chosen tokens to `prompt` (KV-cached); stops after any id
    /// in `stop`, which is then the last returned token. Returns only the new tokens.
    pub fn generate_greedy(
        &self,
        prompt: &[u32],
        max_new: usize,
        stop: &[u32],
    ) -> Result<Vec<u32>> {
        let cfg = GenerateConfig {
            max_new_tokens: max_new,
            eos_ids: stop.to_vec(),
            ..GenerateConfig::default()
        };
        let g = generate(self, &[prompt.to_vec()], &cfg, None)?;
        let mut out = Vec::new();
        if let Some(g) = g.into_iter().next() {
            out = g.tokens;
            if let FinishReason::Eos { id } = g.finish {
                out.push(id);
            }
        }
        Ok(out)
    }
}

/// Logits `[vocab]` of the last position of `x: [b, s, hidden]`, per row, as host f32.
fn last_logits(model: &Llama, x: &Tensor, ctx: &ForwardCtx) -> Result<Vec<Vec<f32>>> {
    let s = x.dim(1)?;
    let last = x.narrow(1, s - 1, 1)?; // [b, 1, hidden]
    let logits = model.final_block.forward(&last, ctx)?.squeeze(1)?; // [b, vocab]
    Ok(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

/// The reference path: each step runs [`Llama::forward`] on the whole sequence.
fn generate_recompute(
    model: &Llama,
    index: usize,
    prompt: &[u32],
    cfg: &GenerateConfig,
    tokenizer: Option<&Tokenizer>,
) -> Result<Generation> {
    let mut seq = Sequence::new(index, cfg, tokenizer);
    let mut ids = prompt.to_vec();
    while !seq.done() {
        let x = Tensor::new(ids.as_slice(), model.device())?.unsqueeze(0)?; // [1, s]
        let logits = model.forward(&x, None)?; // [1, s, vocab]
        let last = logits
            .narrow(1, ids.len() - 1, 1)?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let before = seq.tokens.len();
        seq.push(&last)?;
        if let Some(&t) = seq.tokens.get(before) {
            ids.push(t);
        }
    }
    Ok(seq.finish())
}

/// Forward context for per-row `positions` (`[b][s]`) with an additive f32 mask `[b, 1, s, t]`
/// that hides the entries where `masked(row, query, key)`.
fn step_context(
    model: &Llama,
    positions: &[Vec<u32>],
    t: usize,
    masked: impl Fn(usize, usize, usize) -> bool,
) -> Result<ForwardCtx> {
    let b = positions.len();
    let s = positions.first().map_or(0, Vec::len);
    let d = model.config.head_dim;
    let flat: Vec<u32> = positions.iter().flatten().copied().collect();
    let (cos, sin) = model.rope().cos_sin(&flat, model.device(), model.dtype())?; // [b*s, d]
    let cos = cos.reshape((b, 1, s, d))?; // [b, 1, s, d], broadcast over heads
    let sin = sin.reshape((b, 1, s, d))?;
    let mut mask = vec![0f32; b * s * t];
    for r in 0..b {
        for q in 0..s {
            for k in 0..t {
                if masked(r, q, k) {
                    mask[(r * s + q) * t + k] = f32::MIN;
                }
            }
        }
    }
    let mask = Tensor::from_vec(mask, (b, 1, s, t), model.device())?; // [b, 1, s, t]
    Ok(ForwardCtx {
        cos,
        sin,
        mask,
        key_mask: None,
        train: false,
        dropout_seed: 0,
    })
}

/// One decoder layer on the `s` new positions `x: [b, s, hidden]` with its cache, computing
/// what [`DecoderLayer`]'s forward computes.
fn layer_step(
    layer: &DecoderLayer,
    x: &Tensor,
    ctx: &ForwardCtx,
    cache: &mut LayerCache,
) -> Result<Tensor> {
    let h = rms_norm(x, layer.input_layernorm.tensor(), layer.eps)?;
    let x = (x + attention_step(layer, &h, ctx, cache)?)?;
    let h = rms_norm(&x, layer.post_attention_layernorm.tensor(), layer.eps)?;
    // SwiGLU: down(silu(gate(h)) * up(h))
    let g = layer.gate_proj.forward(&h, ctx)?.silu()?;
    let u = layer.up_proj.forward(&h, ctx)?;
    Ok((&x + layer.down_proj.forward(&(g * u)?, ctx)?)?)
}

/// Self-attention of the new positions (`h: [b, s, hidden]`, normalised) over the cached
/// positions and themselves.
fn attention_step(
    layer: &DecoderLayer,
    h: &Tensor,
    ctx: &ForwardCtx,
    cache: &mut LayerCache,
) -> Result<Tensor> {
    let (b, s, _) = h.dims3()?;
    let (nh, nkv, d) = (layer.n_heads, layer.n_kv_heads, layer.head_dim);
    let dtype = h.dtype();
    let heads = |t: Tensor, n: usize| -> Result<Tensor> {
        // [b, s, n*d] -> [b, s, n, d] -> [b, n, s, d]
        Ok(t.reshape((b, s, n, d))?.transpose(1, 2)?.contiguous()?)
    };
    let q = heads(layer.q_proj.forward(h, ctx)?, nh)?;
    let k = heads(layer.k_proj.forward(h, ctx)?, nkv)?;
    let v = heads(layer.v_proj.forward(h, ctx)?, nkv)?;
    let q = apply_rope(&q, &ctx.cos, &ctx.sin)?;
    let k = apply_rope(&k, &ctx.cos, &ctx.sin)?;
    let (k, v) = cache.append(&k, &v)?; // [b, nkv, t, d]
    let k = repeat_kv(&k, nh / nkv)?; // [b, nh, t, d]
    let v = repeat_kv(&v, nh / nkv)?.contiguous()?; // [b, nh, t, d]
    let scores = (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (d as f64).sqrt()))?; // [b, nh, s, t]
    let scores = scores.to_dtype(DType::F32)?.broadcast_add(&ctx.mask)?;
    let p = softmax_last_dim(&scores)?.to_dtype(dtype)?;
    let o = p.matmul(&v)?; // [b, nh, s, d]
    let o = o.transpose(1, 2)?.reshape((b, s, nh * d))?; // [b, s, nh*d]
    layer.o_proj.forward(&o, ctx)
}

/// Run `ids: [b, s]` through every layer with the cache; logits of the last position per row.
fn cached_forward(
    model: &Llama,
    ids: &Tensor,
    ctx: &ForwardCtx,
    cache: &mut KvCache,
) -> Result<Vec<Vec<f32>>> {
    let mut x = model.embed.forward(ids, ctx)?; // [b, s, hidden]
    for (layer, lc) in model.layers.iter().zip(cache.layers.iter_mut()) {
        x = layer_step(layer, &x, ctx, lc)?;
    }
    last_logits(model, &x, ctx)
}

/// Cached generation of one batch of prompts (`first` = index of the batch's first prompt).
fn generate_batch(
    model: &Llama,
    prompts: &[Vec<u32>],
    first: usize,
    cfg: &GenerateConfig,
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<Generation>> {
    let mut seqs: Vec<Sequence> = (0..prompts.len())
        .map(|i| Sequence::new(first + i, cfg, tokenizer))
        .collect();
    if prompts.is_empty() || seqs.iter().all(Sequence::done) {
        return Ok(seqs.into_iter().map(Sequence::finish).collect());
    }
    let dev = model.device();
    let len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    // left padding: row r has pads[r] pad tokens (id 0, masked) before its prompt
    let mut pads: Vec<usize> = prompts.iter().map(|p| len - p.len()).collect();
    let mut flat = Vec::with_capacity(prompts.len() * len);
    let mut positions = Vec::with_capacity(prompts.len());
    for (p, &pad) in prompts.iter().zip(&pads) {
        flat.extend(std::iter::repeat_n(0u32, pad));
        flat.extend_from_slice(p);
        positions.push(
            std::iter::repeat_n(0u32, pad)
                .chain(0..p.len() as u32)
                .collect(),
        );
    }
    let ids = Tensor::from_vec(flat, (prompts.len(), len), dev)?; // [b, len]
                                                                  // causal, and no row attends to its padding (a pad query row then sees only masked keys:
                                                                  // uniform weights, finite, and never read by a real position)
    let ctx = step_context(model, &positions, len, |r, q, k| k > q || k < pads[r])?;
    let mut cache = KvCache::new(model.layers.len());
    let mut logits = cached_forward(model, &ids, &ctx, &mut cache)?;
    // rows[i] = index in `seqs` of batch row i
    let mut rows: Vec<usize> = (0..prompts.len()).collect();
    loop {
        for (row, &s) in rows.iter().enumerate() {
            seqs[s].push(&logits[row])?;
        }
        let keep: Vec<usize> = (0..rows.len())
            .filter(|&row| !seqs[rows[row]].done())
            .collect();
        if keep.is_empty() {
            break;
        }
        if keep.len() < rows.len() {
            let sel: Vec<u32> = keep.iter().map(|&r| r as u32).collect();
            cache.select_rows(&sel, dev)?;
            rows = keep.iter().map(|&r| rows[r]).collect();
            pads = keep.iter().map(|&r| pads[r]).collect();
        }
        let t = cache.seq_len(); // positions already cached, padding included
        let next: Vec<u32> = rows
            .iter()
            .map(|&s| seqs[s].tokens.last().copied().unwrap_or(0))
            .collect();
        let ids = Tensor::from_vec(next, (rows.len(), 1), dev)?; // [b, 1]
        let positions: Vec<Vec<u32>> = pads.iter().map(|&p| vec![(t - p) as u32]).collect();
        let ctx = step_context(model, &positions, t + 1, |r, _, k| k < pads[r])?;
        logits = cached_forward(model, &ids, &ctx, &mut cache)?;
    }
    Ok(seqs.into_iter().map(Sequence::finish).collect())
}
