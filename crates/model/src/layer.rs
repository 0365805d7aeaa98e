//! One LLaMA decoder layer: pre-norm attention with RoPE and GQA, then a pre-norm SwiGLU MLP,
//! each with a residual connection (transformers `LlamaDecoderLayer`).

use candle_core::{DType, Tensor, Var};

use crate::block::{weight_param, Block};
use crate::ctx::ForwardCtx;
use crate::error::Result;
use crate::linear::Linear;
use crate::lora::Proj;
use crate::ops::{repeat_kv, rms_norm, softmax_last_dim};
use crate::rope::apply_rope;
use crate::weight::Weight;

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub index: usize,
    pub input_layernorm: Weight,
    pub post_attention_layernorm: Weight,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
}

impl DecoderLayer {
    pub fn prefix(&self) -> String {
        format!("model.layers.{}", self.index)
    }

    pub fn proj(&self, p: Proj) -> &Linear {
        match p {
            Proj::Q => &self.q_proj,
            Proj::K => &self.k_proj,
            Proj::V => &self.v_proj,
            Proj::O => &self.o_proj,
            Proj::Gate => &self.gate_proj,
            Proj::Up => &self.up_proj,
            Proj::Down => &self.down_proj,
        }
    }

    pub fn proj_mut(&mut self, p: Proj) -> &mut Linear {
        match p {
            Proj::Q => &mut self.q_proj,
            Proj::K => &mut self.k_proj,
            Proj::V => &mut self.v_proj,
            Proj::O => &mut self.o_proj,
            Proj::Gate => &mut self.gate_proj,
            Proj::Up => &mut self.up_proj,
            Proj::Down => &mut self.down_proj,
        }
    }

    /// Self-attention on normalised input `h: [b, s, hidden]`.
    fn attention(&self, h: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let (b, s, _) = h.dims3()?;
        let (nh, nkv, d) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let dtype = h.dtype();
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            // [b, s, n*d] -> [b, s, n, d] -> [b, n, s, d]
            Ok(t.reshape((b, s, n, d))?.transpose(1, 2)?.contiguous()?)
        };
        let q = heads(self.q_proj.forward(h, ctx)?, nh)?;
        let k = heads(self.k_proj.forward(h, ctx)?, nkv)?;
        let v = heads(self.v_proj.forward(h, ctx)?, nkv)?;
        let q = apply_rope(&q, &ctx.cos, &ctx.sin)?;
        let k = apply_rope(&k, &ctx.cos, &ctx.sin)?;
        let k = repeat_kv(&k, nh / nkv)?; // [b, nh, s, d]
        let v = repeat_kv(&v, nh / nkv)?; // [b, nh, s, d]
        let scores = (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (d as f64).sqrt()))?; // [b, nh, s, s]
                                                                                      // transformers (eager): add the mask, softmax in f32, cast back.
        let scores = scores.to_dtype(DType::F32)?.broadcast_add(&ctx.mask)?;
        let p = softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let o = p.matmul(&v)?; // [b, nh, s, d]
        let o = o.transpose(1, 2)?.reshape((b, s, nh * d))?; // [b, s, nh*d]
        self.o_proj.forward(&o, ctx)
    }

    /// SwiGLU: `down(silu(gate(h)) * up(h))`.
    fn mlp(&self, h: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let g = self.gate_proj.forward(h, ctx)?.silu()?;
        let u = self.up_proj.forward(h, ctx)?;
        self.down_proj.forward(&(g * u)?, ctx)
    }

    fn linears(&self) -> [&Linear; 7] {
        Proj::ALL.map(|p| self.proj(p))
    }
}

impl Block for DecoderLayer {
    fn name(&self) -> String {
        format!("layer.{}", self.index)
    }

    fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let h = rms_norm(x, self.input_layernorm.tensor(), self.eps)?;
        let x = (x + self.attention(&h, ctx)?)?;
        let h = rms_norm(&x, self.post_attention_layernorm.tensor(), self.eps)?;
        Ok((&x + self.mlp(&h, ctx)?)?)
    }

    fn params(&self) -> Vec<(String, Var)> {
        let p = self.prefix();
        // transformers' named_parameters order.
        let mut out: Vec<(String, Var)> = Vec::new();
        for l in self.linears() {
            out.extend(l.params());
        }
        out.extend(weight_param(
            &format!("{p}.input_layernorm.weight"),
            &self.input_layernorm,
        ));
        out.extend(weight_param(
            &format!("{p}.post_attention_layernorm.weight"),
            &self.post_attention_layernorm,
        ));
        out
    }
}
