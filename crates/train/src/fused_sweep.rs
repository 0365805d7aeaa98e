//! The block sweep of `block_backward = "fused"`: the same schedule as the autograd sweep in
//! [`crate::layerwise`] (sinks, tied-weight routing, clipping by two sweeps, recomputation,
//! accumulation), with the hand-differentiated blocks of `crosslore_model::fused`: each layer's
//! forward saves its activations (or only its input, with `recompute`), the head runs its
//! forward and backward together over chunks of the logits, and no autograd graph exists.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::Tensor;
use crosslore_model::fused::{
    embedding_forward, head_forward_backward, layer_backward, layer_forward, LayerSaved,
};
use crosslore_model::{ForwardCtx, Llama};

use crate::error::{Result, TrainError};
use crate::grads::GradBuffers;
use crate::layerwise::{last_use, route, Sink};
use crate::trainer::{Micro, StepAcc, Trainer};

/// The forward of one micro-batch through the fused blocks.
pub(crate) struct FusedSegments {
    ctx: ForwardCtx,
    /// Inputs of layers `0..L` and of the head (index `L`), `[b, s, hidden]`.
    inputs: Vec<Tensor>,
    /// Saved activations per layer (`None` everywhere with `recompute`; taken by the last
    /// sweep of the micro-batch, so each layer's activations are freed after its backward).
    saved: Vec<Option<LayerSaved>>,
}

impl Trainer {
    pub(crate) fn fused_forward(&self, model: &Llama, m: &Micro) -> Result<FusedSegments> {
        let ctx = model.context(m.batch, m.seq, Some(&m.mask), true, m.dropout_seed)?;
        model.check_ids(&m.ids)?;
        let keep = !self.cfg.recompute;
        let mut inputs = Vec::with_capacity(model.layers.len() + 1);
        let mut saved = Vec::with_capacity(model.layers.len());
        let mut x = embedding_forward(&model.embed, &m.ids)?; // [b, s, hidden]
        self.prof.lap("forward: context + embedding")?;
        for layer in &model.layers {
            let (y, sv) = layer_forward(layer, &x, &ctx)?;
            self.prof.lap("forward: layer")?;
            inputs.push(x);
            saved.push(keep.then_some(sv));
            x = y;
        }
        inputs.push(x);
        Ok(FusedSegments { ctx, inputs, saved })
    }

    /// One backward sweep over the fused blocks; returns the micro-batch's scaled loss.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fused_sweep(
        &mut self,
        model: &Llama,
        seg: &mut FusedSegments,
        m: &Micro,
        n_total: usize,
        sink: Sink,
        bufs: &mut GradBuffers,
        acc: &mut StepAcc,
    ) -> Result<f64> {
        let uses = last_use(&model.blocks());
        let n_layers = model.layers.len();
        let mut pending: HashMap<String, Tensor> = HashMap::new();
        let targets = m.targets.as_ref().ok_or_else(|| TrainError::Invalid {
            what: "fused backward",
            msg: "the micro-batch has no shifted targets".into(),
        })?;
        // Head and loss, forward and backward together.
        let t = Instant::now();
        let mut grads = Vec::new();
        let scale = 1.0 / n_total as f32;
        let out = head_forward_backward(
            &model.final_block,
            &seg.inputs[n_layers],
            targets,
            scale,
            &mut grads,
        )?;
        self.prof.lap("head fwd+bwd")?;
        let loss_v = out.loss_sum.to_scalar::<f32>()? as f64 / n_total as f64;
        self.count_loss(sink, loss_v, acc)?;
        self.prof.lap("loss host read")?;
        sink.record_time(acc, 0.0, t.elapsed().as_secs_f64());
        let ready = route(grads, n_layers + 1, &uses, &mut pending)?;
        self.deliver(ready, &pending, sink, bufs, acc)?;
        let mut g = out.dx;
        let release = sink != Sink::Norm;
        for li in (0..n_layers).rev() {
            let layer = &model.layers[li];
            let t = Instant::now();
            let kept = if release {
                seg.saved[li].take()
            } else {
                seg.saved[li].clone()
            };
            let sv = match kept {
                Some(sv) => sv,
                None if !self.cfg.recompute => {
                    return Err(TrainError::Invalid {
                        what: "fused backward",
                        msg: format!("activations of layer {li} already released"),
                    })
                }
                None => {
                    let sv = layer_forward(layer, &seg.inputs[li], &seg.ctx)?.1;
                    self.prof.lap("forward: recompute layer")?;
                    sv
                }
            };
            let fwd = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut grads = Vec::new();
            g = layer_backward(layer, &g, &sv, &seg.ctx, &mut grads)?;
            drop(sv);
            self.prof.lap("backward: layer")?;
            sink.record_time(acc, fwd, t.elapsed().as_secs_f64());
            let ready = route(grads, li + 1, &uses, &mut pending)?;
            self.deliver(ready, &pending, sink, bufs, acc)?;
        }
        let t = Instant::now();
        let ready = self.embedding_grads(model, m, Some(g), &mut pending)?;
        self.prof.lap("backward: embedding")?;
        sink.record_time(acc, 0.0, t.elapsed().as_secs_f64());
        self.deliver(ready, &pending, sink, bufs, acc)?;
        Ok(loss_v)
    }
}
