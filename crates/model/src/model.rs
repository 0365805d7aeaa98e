//! `Llama`: the whole `LlamaForCausalLM` as a chain of blocks, built from HF-named tensors.

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Device, Tensor, Var};

use crate::block::{Block, EmbeddingBlock, FinalBlock};
use crate::config::LlamaConfig;
use crate::ctx::ForwardCtx;
use crate::error::{ModelError, Result};
use crate::layer::DecoderLayer;
use crate::linear::Linear;
use crate::lora::{AdapterConfig, Proj};
use crate::rope::Rope;
use crate::weight::Weight;

/// What is trainable.
#[derive(Debug, Clone, PartialEq)]
pub enum Training {
    /// Nothing (inference): no `Var` at all.
    Frozen,
    /// Every weight is a `Var` (full fine-tuning, GaLore, CrossLore).
    Full,
    /// Base weights frozen, adapters on the targeted projections trainable (LoRA / DoRA).
    Adapter(AdapterConfig),
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute dtype of the base weights: F32 or BF16 (F16 accepted, untested).
    pub dtype: DType,
    pub device: Device,
    pub training: Training,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: DType::F32,
            device: Device::Cpu,
            training: Training::Full,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Llama {
    pub config: LlamaConfig,
    pub embed: EmbeddingBlock,
    pub layers: Vec<DecoderLayer>,
    pub final_block: FinalBlock,
    rope: Rope,
    dtype: DType,
    device: Device,
    adapter: Option<AdapterConfig>,
}

fn take(
    tensors: &mut HashMap<String, Tensor>,
    name: &str,
    shape: &[usize],
    origin: &str,
    opts: &LoadOptions,
) -> Result<Tensor> {
    let t = tensors
        .remove(name)
        .ok_or_else(|| ModelError::MissingTensor {
            origin: origin.into(),
            name: name.into(),
            expected: shape.to_vec(),
        })?;
    if t.dims() != shape {
        return Err(ModelError::TensorShape {
            origin: origin.into(),
            name: name.into(),
            expected: shape.to_vec(),
            got: t.dims().to_vec(),
        });
    }
    if !matches!(t.dtype(), DType::F32 | DType::BF16 | DType::F16) {
        return Err(ModelError::TensorDType {
            origin: origin.into(),
            name: name.into(),
            expected: "F32, BF16, F16",
            got: format!("{:?}", t.dtype()),
        });
    }
    Ok(t.to_device(&opts.device)?.to_dtype(opts.dtype)?)
}

impl Llama {
    /// Build from a validated config and HF-named, HF-layout tensors (any of F32/BF16/F16;
    /// converted to `opts.dtype` on `opts.device`). Extra tensors are ignored (e.g. a tied
    /// checkpoint's redundant `lm_head.weight`); a missing or mis-shaped one is an error.
    pub fn from_tensors(
        config: LlamaConfig,
        tensors: HashMap<String, Tensor>,
        opts: &LoadOptions,
    ) -> Result<Self> {
        Self::from_tensors_named(config, tensors, opts, "tensors")
    }

    /// As [`Llama::from_tensors`], with `origin` (a file or folder) named in errors.
    pub fn from_tensors_named(
        config: LlamaConfig,
        mut tensors: HashMap<String, Tensor>,
        opts: &LoadOptions,
        origin: &str,
    ) -> Result<Self> {
        if !matches!(opts.dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(ModelError::input(
                "LoadOptions.dtype",
                format!("expected F32, BF16 or F16, got {:?}", opts.dtype),
            ));
        }
        let trainable = matches!(opts.training, Training::Full);
        let mut get = |name: &str| -> Result<Weight> {
            let shape = config.expected_shape(name).unwrap_or_default();
            Weight::new(take(&mut tensors, name, &shape, origin, opts)?, trainable)
        };
        let embed_w = get("model.embed_tokens.weight")?;
        // no with_capacity: the count comes from a file and may be absurd (then layer 1 is missing)
        let mut layers = Vec::new();
        for l in 0..config.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut lin = |proj: Proj| -> Result<Linear> {
                let name = format!("{p}.{}.{}", proj.parent(), proj.hf_name());
                let w = get(&format!("{name}.weight"))?;
                Ok(Linear::new(name, w, (l as u64) * 8 + proj.index()))
            };
            let (q, k, v, o) = (lin(Proj::Q)?, lin(Proj::K)?, lin(Proj::V)?, lin(Proj::O)?);
            let (g, u, d) = (lin(Proj::Gate)?, lin(Proj::Up)?, lin(Proj::Down)?);
            layers.push(DecoderLayer {
                index: l,
                input_layernorm: get(&format!("{p}.input_layernorm.weight"))?,
                post_attention_layernorm: get(&format!("{p}.post_attention_layernorm.weight"))?,
                q_proj: q,
                k_proj: k,
                v_proj: v,
                o_proj: o,
                gate_proj: g,
                up_proj: u,
                down_proj: d,
                n_heads: config.num_attention_heads,
                n_kv_heads: config.num_key_value_heads,
                head_dim: config.head_dim,
                eps: config.rms_norm_eps,
            });
        }
        let norm = get("model.norm.weight")?;
        let lm_head = if config.tie_word_embeddings {
            embed_w.clone() // the same Var: one parameter, two uses
        } else {
            get("lm_head.weight")?
        };
        let mut model = Llama {
            rope: Rope::new(&config),
            embed: EmbeddingBlock { weight: embed_w },
            final_block: FinalBlock {
                norm,
                lm_head,
                tied: config.tie_word_embeddings,
                eps: config.rms_norm_eps,
            },
            layers,
            config,
            dtype: opts.dtype,
            device: opts.device.clone(),
            adapter: None,
        };
        if let Training::Adapter(cfg) = &opts.training {
            model.attach_adapters(cfg)?;
        }
        Ok(model)
    }

    fn attach_adapters(&mut self, cfg: &AdapterConfig) -> Result<()> {
        cfg.validate()?;
        for layer in &mut self.layers {
            for p in Proj::ALL {
                if cfg.targets.contains(p) {
                    layer.proj_mut(p).attach_adapter(cfg)?;
                }
            }
        }
        self.adapter = Some(cfg.clone());
        Ok(())
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn adapter_config(&self) -> Option<&AdapterConfig> {
        self.adapter.as_ref()
    }

    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// The forward context for a batch of `batch` rows of `seq` tokens at positions `0..seq`.
    /// `attention_mask`: optional `[batch, seq]` of 0/1 (1 = real token), any numeric dtype.
    pub fn context(
        &self,
        batch: usize,
        seq: usize,
        attention_mask: Option<&Tensor>,
        train: bool,
        dropout_seed: u64,
    ) -> Result<ForwardCtx> {
        let positions: Vec<u32> = (0..seq as u32).collect();
        let (cos, sin) = self.rope.cos_sin(&positions, &self.device, self.dtype)?;
        let mut causal = vec![0f32; seq * seq];
        for i in 0..seq {
            for j in (i + 1)..seq {
                causal[i * seq + j] = f32::MIN;
            }
        }
        let causal = Tensor::from_vec(causal, (1, 1, seq, seq), &self.device)?;
        let mut key_mask = None;
        let mask = match attention_mask {
            None => causal,
            Some(m) => {
                if m.dims() != [batch, seq] {
                    return Err(ModelError::input(
                        "attention_mask",
                        format!("expected shape [{batch}, {seq}], got {:?}", m.dims()),
                    ));
                }
                let m = m.to_dtype(DType::F32)?;
                let bad = m
                    .flatten_all()?
                    .to_vec1::<f32>()?
                    .into_iter()
                    .any(|v| v != 0.0 && v != 1.0);
                if bad {
                    return Err(ModelError::input("attention_mask", "values must be 0 or 1"));
                }
                // 0 -> f32::MIN, 1 -> 0; [b, 1, 1, s]
                let pad = ((1.0 - &m)? * f32::MIN as f64)?.reshape((batch, 1, 1, seq))?;
                key_mask = Some(m.contiguous()?);
                // MIN + MIN = -inf: clamp back so that fully masked rows stay finite.
                causal.broadcast_add(&pad)?.maximum(f32::MIN)?
            }
        };
        Ok(ForwardCtx {
            cos,
            sin,
            mask,
            key_mask,
            train,
            dropout_seed,
        })
    }

    /// Logits `[b, s, vocab]` (model dtype) of `u32` ids `[b, s]`, evaluation mode.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        let ctx = self.context(b, s, attention_mask, false, 0)?;
        self.forward_with(input_ids, &ctx)
    }

    /// Logits through every block with the given context (one autograd graph).
    pub fn forward_with(&self, input_ids: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        self.check_ids(input_ids)?;
        let mut x = self.embed.forward(input_ids, ctx)?;
        for layer in &self.layers {
            x = layer.forward(&x, ctx)?;
        }
        self.final_block.forward(&x, ctx)
    }

    /// Ids must be `u32 [b, s]` below `vocab_size`.
    pub fn check_ids(&self, ids: &Tensor) -> Result<()> {
        if ids.dtype() != DType::U32 || ids.rank() != 2 {
            return Err(ModelError::input(
                "input_ids",
                format!(
                    "expected u32 [batch, seq], got {:?} {:?}",
                    ids.dtype(),
                    ids.dims()
                ),
            ));
        }
        if ids.elem_count() > 0 {
            let mx = ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
            if mx as usize >= self.config.vocab_size {
                return Err(ModelError::input(
                    "input_ids",
                    format!("id {mx} >= vocab_size {}", self.config.vocab_size),
                ));
            }
        }
        Ok(())
    }

    /// The blocks in forward order: embedding, layers, final.
    pub fn blocks(&self) -> Vec<&dyn Block> {
        let mut v: Vec<&dyn Block> = vec![&self.embed];
        v.extend(self.layers.iter().map(|l| l as &dyn Block));
        v.push(&self.final_block);
        v
    }

    /// The same model with every weight frozen, sharing storage (no copy). For inference through
    /// a model being trained (evaluation, generation): ops on `Var`s record a graph, and a whole
    /// forward's activations would stay alive until its output is dropped (a 50 x 190-token
    /// generation prefill on SmolLM2 went past 24 GB). Numerically identical to `self`.
    pub fn inference_view(&self) -> Llama {
        let mut m = self.clone();
        m.embed.weight = self.embed.weight.frozen_view();
        m.final_block.norm = self.final_block.norm.frozen_view();
        m.final_block.lm_head = self.final_block.lm_head.frozen_view();
        for l in &mut m.layers {
            l.input_layernorm = l.input_layernorm.frozen_view();
            l.post_attention_layernorm = l.post_attention_layernorm.frozen_view();
            for p in [
                &mut l.q_proj,
                &mut l.k_proj,
                &mut l.v_proj,
                &mut l.o_proj,
                &mut l.gate_proj,
                &mut l.up_proj,
                &mut l.down_proj,
            ] {
                *p = p.frozen_view();
            }
        }
        m
    }

    /// Every trainable `Var` once, by HF name, in transformers' `named_parameters` order.
    pub fn params(&self) -> Vec<(String, Var)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for b in self.blocks() {
            for (n, v) in b.params() {
                if seen.insert(n.clone()) {
                    out.push((n, v));
                }
            }
        }
        out
    }

    /// Name -> `Var` map of [`Llama::params`].
    pub fn var_map(&self) -> HashMap<String, Var> {
        self.params().into_iter().collect()
    }

    /// Set adapter weights by their names (`model.layers.0.self_attn.q_proj.lora_A.weight`, ...,
    /// as [`Llama::params`] lists them). Unknown names are an error. Returns how many were set.
    pub fn set_adapter_tensors(&self, tensors: &HashMap<String, Tensor>) -> Result<usize> {
        let mut n = 0;
        for (name, t) in tensors {
            let mut found = false;
            for layer in &self.layers {
                for p in Proj::ALL {
                    if layer.proj(p).set_adapter_tensor(name, t)? {
                        found = true;
                    }
                }
            }
            if !found {
                return Err(ModelError::Adapter(format!(
                    "no adapter tensor named `{name}` in this model"
                )));
            }
            n += 1;
        }
        Ok(n)
    }

    /// The model's dense weights by HF name (adapters merged), for export. `lm_head.weight` only
    /// when untied.
    pub fn merged_weights(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            self.embed.weight.tensor().clone(),
        )];
        for layer in &self.layers {
            let p = layer.prefix();
            for proj in Proj::ALL {
                let lin = layer.proj(proj);
                out.push((format!("{}.weight", lin.name), lin.merged_weight()?));
            }
            out.push((
                format!("{p}.input_layernorm.weight"),
                layer.input_layernorm.tensor().clone(),
            ));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_attention_layernorm.tensor().clone(),
            ));
        }
        out.push((
            "model.norm.weight".to_string(),
            self.final_block.norm.tensor().clone(),
        ));
        if !self.config.tie_word_embeddings {
            out.push((
                "lm_head.weight".to_string(),
                self.final_block.lm_head.tensor().clone(),
            ));
        }
        Ok(out)
    }
}
