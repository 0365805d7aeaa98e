//! One decoder layer, forward with saved activations and hand-written backward.
//!
//! Forward (rows = b * s, g = n_heads / n_kv_heads):
//! `h1 = rms(x)`, `q, k, v = h1 W^T`, RoPE fused with the head transpose, scores
//! `[b, n_kv, g*s, s] = q_g k^T` (GQA by viewing the g query heads of a key/value head as more
//! rows: no repeated keys), `P = softmax_causal(scores / sqrt(d))`, `o = P v`,
//! `x_mid = x + o W_o^T`, `h2 = rms(x_mid)`, `y = x_mid + W_d (silu(h2 W_g^T) * h2 W_u^T)`.
//! Backward: the same steps in reverse (module docs of `crosslore_fused` for each op).

use candle_core::Tensor;
use crosslore_fused::{
    causal_softmax_bwd, causal_softmax_fwd, rms_norm_bwd, rms_norm_fwd, rope_bwd, rope_fwd,
    swiglu_bwd, swiglu_fwd, AttnMask,
};

use super::linear::{backward as lin_bwd, forward as lin_fwd, push, LinearSaved};
use super::ParamGrad;
use crate::ctx::ForwardCtx;
use crate::error::{ModelError, Result};
use crate::layer::DecoderLayer;
use crate::lora::Proj;
use crate::weight::Weight;

/// Activations one layer's backward needs (the input included), all plain tensors.
#[derive(Debug, Clone)]
pub struct LayerSaved {
    /// `[b, s, hidden]` -> kept as `[rows, hidden]`.
    x: Tensor,
    shape: (usize, usize),
    rstd1: Tensor,
    h1: Tensor,
    /// Rotated queries viewed per key/value head: `[b, n_kv, g*s, d]`.
    q: Tensor,
    /// Rotated keys `[b, n_kv, s, d]`.
    k: Tensor,
    /// Values `[b, n_kv, s, d]`.
    v: Tensor,
    /// Attention probabilities `[b, n_kv, g*s, s]`.
    p: Tensor,
    /// Attention output before `o_proj`, `[rows, n_heads * d]`.
    o: Tensor,
    x_mid: Tensor,
    rstd2: Tensor,
    h2: Tensor,
    gate: Tensor,
    up: Tensor,
    act: Tensor,
    lin: Vec<LinearSaved>,
}

fn dw(w: &Weight) -> Tensor {
    w.tensor().detach()
}

fn mask<'a>(ctx: &'a ForwardCtx) -> AttnMask<'a> {
    match &ctx.key_mask {
        Some(m) => AttnMask::CausalKeys(m),
        None => AttnMask::Causal,
    }
}

impl DecoderLayer {
    fn dims(&self) -> Result<(usize, usize, usize, usize)> {
        let (nh, nkv, d) = (self.n_heads, self.n_kv_heads, self.head_dim);
        if nkv == 0 || nh % nkv != 0 {
            return Err(ModelError::input(
                "num_key_value_heads",
                format!("{nkv} must divide num_attention_heads {nh}"),
            ));
        }
        Ok((nh, nkv, nh / nkv, d))
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// `x: [b, s, hidden]` -> `[b, s, hidden]` and the saved activations.
pub fn layer_forward(
    layer: &DecoderLayer,
    x: &Tensor,
    ctx: &ForwardCtx,
) -> Result<(Tensor, LayerSaved)> {
    let (b, s, hid) = x.dims3()?;
    let (nh, nkv, g, d) = layer.dims()?;
    let rows = b * s;
    let eps = layer.eps as f32;
    let x2 = x.detach().reshape((rows, hid))?.contiguous()?; // [rows, hidden]
    let n1 = rms_norm_fwd(&x2, &dw(&layer.input_layernorm), eps)?;
    let mut lin = Vec::with_capacity(7);
    let mut run = |p: Proj, input: &Tensor| -> Result<Tensor> {
        let (y, sv) = lin_fwd(layer.proj(p), input, ctx)?;
        lin.push(sv);
        Ok(y)
    };
    let q = run(Proj::Q, &n1.y)?; // [rows, nh*d]
    let k = run(Proj::K, &n1.y)?; // [rows, nkv*d]
    let v = run(Proj::V, &n1.y)?;
    let q = rope_fwd(&q.reshape((b, s, nh, d))?, &ctx.cos, &ctx.sin)?; // [b, nh, s, d]
    let q = q.reshape((b, nkv, g * s, d))?; // the g heads of a kv head as rows
    let k = rope_fwd(&k.reshape((b, s, nkv, d))?, &ctx.cos, &ctx.sin)?; // [b, nkv, s, d]
    let v = v.reshape((b, s, nkv, d))?.transpose(1, 2)?.contiguous()?; // [b, nkv, s, d]
    let scores = q.matmul(&k.t()?)?; // [b, nkv, g*s, s]
    let p = causal_softmax_fwd(&scores, mask(ctx), layer.scale())?;
    drop(scores);
    let o = p.matmul(&v)?; // [b, nkv, g*s, d] = [b, nh, s, d]
    let o = o
        .reshape((b, nh, s, d))?
        .transpose(1, 2)?
        .reshape((rows, nh * d))?; // [rows, nh*d]
    let a = run(Proj::O, &o)?;
    let x_mid = (&x2 + a)?;
    let n2 = rms_norm_fwd(&x_mid, &dw(&layer.post_attention_layernorm), eps)?;
    let gate = run(Proj::Gate, &n2.y)?; // [rows, ffn]
    let up = run(Proj::Up, &n2.y)?;
    let act = swiglu_fwd(&gate, &up)?;
    let m = run(Proj::Down, &act)?; // [rows, hidden]
    let y = (&x_mid + m)?.reshape((b, s, hid))?;
    let saved = LayerSaved {
        x: x2,
        shape: (b, s),
        rstd1: n1.rstd,
        h1: n1.y,
        q,
        k,
        v,
        p,
        o,
        x_mid,
        rstd2: n2.rstd,
        h2: n2.y,
        gate,
        up,
        act,
        lin,
    };
    Ok((y, saved))
}

/// `dy: [b, s, hidden]` -> `dx: [b, s, hidden]`; pushes the layer's parameter gradients
/// (linear weights or adapters, then the two norms).
pub fn layer_backward(
    layer: &DecoderLayer,
    dy: &Tensor,
    sv: &LayerSaved,
    ctx: &ForwardCtx,
    grads: &mut Vec<ParamGrad>,
) -> Result<Tensor> {
    let (b, s) = sv.shape;
    let (nh, nkv, g, d) = layer.dims()?;
    let rows = b * s;
    let hid = sv.x.dim(1)?;
    if sv.lin.len() != 7 {
        return Err(ModelError::input(
            "saved activations",
            "expected 7 linear layers",
        ));
    }
    let dy2 = dy.detach().reshape((rows, hid))?.contiguous()?;
    let bwd = |p: Proj, dy: &Tensor, x: &Tensor, grads: &mut Vec<ParamGrad>| {
        lin_bwd(layer.proj(p), dy, x, &sv.lin[p as usize], grads)
    };
    // MLP
    let d_act = bwd(Proj::Down, &dy2, &sv.act, grads)?;
    let (d_gate, d_up) = swiglu_bwd(&d_act, &sv.gate, &sv.up)?;
    drop(d_act);
    let dh2 = (bwd(Proj::Gate, &d_gate, &sv.h2, grads)? + bwd(Proj::Up, &d_up, &sv.h2, grads)?)?;
    let w2 = &layer.post_attention_layernorm;
    let (dxm, dw2) = rms_norm_bwd(&dh2, &sv.x_mid, &dw(w2), &sv.rstd2)?;
    // [rows, hidden]
    let d_mid = (&dy2 + dxm)?;
    // Attention. d_o: [rows, nh*d] -> [b, s, nh, d] -> [b, nh, s, d] -> [b, nkv, g*s, d]
    let d_o = bwd(Proj::O, &d_mid, &sv.o, grads)?;
    let d_o = d_o
        .reshape((b, s, nh, d))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, nkv, g * s, d))?;
    let d_p = d_o.matmul(&sv.v.t()?)?; // [b, nkv, g*s, s]
    let d_v = sv.p.t()?.matmul(&d_o)?; // [b, nkv, s, d]
    drop(d_o);
    let d_s = causal_softmax_bwd(&d_p, &sv.p, layer.scale())?;
    drop(d_p);
    let d_q = d_s.matmul(&sv.k)?; // [b, nkv, g*s, d]
    let d_k = d_s.t()?.matmul(&sv.q)?; // [b, nkv, s, d]
    drop(d_s);
    let d_q =
        rope_bwd(&d_q.reshape((b, nh, s, d))?, &ctx.cos, &ctx.sin)?.reshape((rows, nh * d))?;
    let d_k = rope_bwd(&d_k, &ctx.cos, &ctx.sin)?.reshape((rows, nkv * d))?;
    let d_v = d_v.transpose(1, 2)?.reshape((rows, nkv * d))?; // [b, s, nkv, d] flattened
    let dh1 = bwd(Proj::Q, &d_q, &sv.h1, grads)?;
    let dh1 = (dh1 + bwd(Proj::K, &d_k, &sv.h1, grads)?)?;
    let dh1 = (dh1 + bwd(Proj::V, &d_v, &sv.h1, grads)?)?;
    let w1 = &layer.input_layernorm;
    let (dx1, dw1) = rms_norm_bwd(&dh1, &sv.x, &dw(w1), &sv.rstd1)?;
    let p = layer.prefix();
    for (name, w, gw) in [
        ("input_layernorm", w1, dw1),
        ("post_attention_layernorm", w2, dw2),
    ] {
        push(grads, format!("{p}.{name}.weight"), w, gw)?;
    }
    Ok((d_mid + dx1)?.reshape((b, s, hid))?)
}
