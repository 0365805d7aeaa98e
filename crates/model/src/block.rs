//! The block interface of the training loop (DESIGN.md §3, "per-block forward/backward"):
//! embedding -> decoder layer x N -> final (norm + lm_head). The loss is applied to the final
//! block's logits by [`crate::loss::causal_lm_loss`].
//!
//! Segmented backward with candle autograd: forward each block on a detached input `Var`,
//! then from the last block backwards call `(out * g_out).sum_all().backward()`, read this
//! block's parameter gradients and its input gradient, and pass the latter to the block before.
//! With tied embeddings the same `Var` (`model.embed_tokens.weight`) is read by the embedding
//! and the final block, and both report it in `params()`: sum its two gradients before stepping.

use candle_core::{Tensor, Var};

use crate::ctx::ForwardCtx;
use crate::error::Result;
use crate::ops::rms_norm;
use crate::weight::Weight;

/// One segment of the model.
pub trait Block {
    /// A short name: `embed`, `layer.3`, `final`.
    fn name(&self) -> String;
    /// Embedding: `u32 ids [b, s]` -> `[b, s, hidden]`; layer: `[b, s, hidden]` ->
    /// `[b, s, hidden]`; final: `[b, s, hidden]` -> logits `[b, s, vocab]` (model dtype).
    fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor>;
    /// Every trainable `Var` this block reads, by HF name (peft names for adapters).
    fn params(&self) -> Vec<(String, Var)>;
}

pub(crate) fn weight_param(name: &str, w: &Weight) -> Option<(String, Var)> {
    w.var().map(|v| (name.to_string(), v.clone()))
}

/// Token embedding (`model.embed_tokens.weight`, `[vocab, hidden]`).
#[derive(Debug, Clone)]
pub struct EmbeddingBlock {
    pub weight: Weight,
}

impl Block for EmbeddingBlock {
    fn name(&self) -> String {
        "embed".into()
    }

    fn forward(&self, ids: &Tensor, _ctx: &ForwardCtx) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let w = self.weight.tensor();
        let flat = ids.flatten_all()?; // [b*s]
        let h = w.index_select(&flat, 0)?; // [b*s, hidden]
        Ok(h.reshape((b, s, w.dim(1)?))?) // [b, s, hidden]
    }

    fn params(&self) -> Vec<(String, Var)> {
        weight_param("model.embed_tokens.weight", &self.weight)
            .into_iter()
            .collect()
    }
}

/// Final RMSNorm and `lm_head` (the embedding matrix itself when tied).
#[derive(Debug, Clone)]
pub struct FinalBlock {
    pub norm: Weight,
    pub lm_head: Weight,
    pub tied: bool,
    pub eps: f64,
}

impl FinalBlock {
    /// The HF name of the head's trainable weight: `lm_head.weight`, or the embedding's name
    /// when tied.
    pub fn head_name(&self) -> &'static str {
        if self.tied {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        }
    }
}

impl Block for FinalBlock {
    fn name(&self) -> String {
        "final".into()
    }

    fn forward(&self, x: &Tensor, _ctx: &ForwardCtx) -> Result<Tensor> {
        let h = rms_norm(x, self.norm.tensor(), self.eps)?;
        crate::ops::linear(&h, self.lm_head.tensor()) // [b, s, vocab]
    }

    fn params(&self) -> Vec<(String, Var)> {
        let head = self.head_name();
        weight_param("model.norm.weight", &self.norm)
            .into_iter()
            .chain(weight_param(head, &self.lm_head))
            .collect()
    }
}
