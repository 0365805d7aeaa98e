//! The whole model through the fused blocks at once: loss and every parameter's gradient, as a
//! layerwise trainer sweeps them (the trainer itself interleaves optimizer updates; this is the
//! plain gradient, used by tests and device checks).

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::{
    embedding_backward, embedding_forward, head_forward_backward, layer_backward, layer_forward,
    shifted_targets,
};
use crate::error::{ModelError, Result};
use crate::model::Llama;

/// Mean causal-LM loss of the batch and `(name, gradient)` of every trainable parameter in
/// [`Llama::params`] order (a tied embedding's two contributions summed).
/// `ids`, `mask`, `labels`: `[b, s]` (u32 ids; mask 0/1; labels i64 or u32, -100 ignored);
/// `seed`: the forward's dropout seed.
pub fn model_loss_and_grads(
    model: &Llama,
    ids: &Tensor,
    mask: &Tensor,
    labels: &Tensor,
    seed: u64,
) -> Result<(f32, Vec<(String, Tensor)>)> {
    let (b, s) = ids.dims2()?;
    model.check_ids(ids)?;
    let ctx = model.context(b, s, Some(mask), true, seed)?;
    let lab: Vec<i64> = labels.to_dtype(DType::I64)?.flatten_all()?.to_vec1()?;
    let (targets, count) = shifted_targets(&lab, b, s, model.config.vocab_size, ids.device())?;
    if count == 0 {
        return Err(ModelError::input("labels", "no target token in the batch"));
    }
    let mut x = embedding_forward(&model.embed, ids)?; // [b, s, hidden]
    let mut saved = Vec::with_capacity(model.layers.len());
    for layer in &model.layers {
        let (y, sv) = layer_forward(layer, &x, &ctx)?;
        saved.push(sv);
        x = y;
    }
    let mut grads = Vec::new();
    let scale = 1.0 / count as f32;
    let out = head_forward_backward(&model.final_block, &x, &targets, scale, &mut grads)?;
    let loss = out.loss_sum.to_scalar::<f32>()? / count as f32;
    let mut g = out.dx;
    for (layer, sv) in model.layers.iter().zip(&saved).rev() {
        g = layer_backward(layer, &g, sv, &ctx, &mut grads)?;
    }
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for (name, _, t) in grads {
        let t = match map.remove(&name) {
            Some(p) => (p + t)?,
            None => t,
        };
        map.insert(name, t);
    }
    if let Some(v) = model.embed.weight.var() {
        let name = "model.embed_tokens.weight";
        let base = match map.remove(name) {
            Some(t) => t,
            None => v.as_tensor().zeros_like()?,
        };
        map.insert(name.into(), embedding_backward(&base, ids, &g)?);
    }
    let mut out = Vec::new();
    for (name, _) in model.params() {
        let g = map.remove(&name).ok_or_else(|| {
            ModelError::input("fused backward", format!("no gradient reached {name}"))
        })?;
        out.push((name, g));
    }
    Ok((loss, out))
}
