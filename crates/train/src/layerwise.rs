//! Layerwise updates by segmented backward (DESIGN.md §3; issue 3 item 3).
//!
//! **Forward.** Each block (embedding, decoder layer, final norm + head) runs on a detached copy
//! of its input held as a `Var`; only these block inputs are kept, plus each block's graph
//! unless `recompute` is on (then the block's forward is recomputed from its input during the
//! backward: activation checkpointing per block).
//!
//! **Backward sweep.** From the last block: the final block back-propagates the scaled loss, every
//! other block `(out * g_out).sum_all()`, which gives exactly `g_out` at its output. The block's
//! weight gradients are read, the gradient of its input `Var` becomes the next `g_out`, and the
//! block's graph and gradients are dropped. A parameter read by several blocks (the tied
//! embedding: embedding and head) is summed over its blocks and delivered at the earliest block
//! that reads it (the last one the sweep reaches).
//!
//! **Accumulation.** Micro-batches before the last add their block gradients into per-parameter
//! buffers ([`GradBuffers`]); in the last micro-batch each delivered gradient is added to its
//! buffer and stepped at once, and the buffer is freed. The memory of the buffers is that of one
//! full gradient (as in any accumulation); what layerwise saves is the second full gradient that
//! whole-graph mode holds while adding a micro-batch's gradient store into the buffers, and, with
//! `grad_accum = 1`, all but one block's gradients.
//!
//! **Clipping needs the global norm before any update.** With `max_grad_norm > 0` the last
//! micro-batch is swept twice: a first sweep computes each parameter's squared norm of
//! `buffer + g` and drops it (no update), giving the exact global norm and the clip coefficient;
//! the second sweep recomputes the same gradients (bit-identical: same inputs, same ops) and
//! steps each block with `coef * (buffer + g)`. Cost: one extra backward of the last micro-batch
//! per step (plus one extra block forward each with `recompute`); the memory stays that of
//! one block. The kept graphs (no `recompute`) serve both sweeps. Without clipping there is a
//! single sweep and the logged norm is computed in it (gradient norms do not depend on the
//! updates). The time of the extra sweep is reported as `clip_pass_s`.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Tensor, Var};
use crosslore_model::fused::embedding_backward;
use crosslore_model::{Block, ForwardCtx, Llama};

use crate::config::BlockBackward;
use crate::error::{Result, TrainError};
use crate::fused_sweep::FusedSegments;
use crate::grads::{clip_coef, global_norm, scale, sq_norms, tensor_bytes, GradBuffers};
use crate::trainer::{Micro, StepAcc, Trainer};

/// What a sweep does with each parameter's micro-batch gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sink {
    /// Add to the accumulation buffer (micro-batches before the last).
    Accumulate,
    /// Record `||buffer + g||^2` (first sweep of the last micro-batch when clipping).
    Norm,
    /// Step with `coef * (buffer + g)`; `record` also records the squared norm.
    Step { coef: f64, record: bool },
}

impl Sink {
    /// Books a block's forward (recomputation) and backward seconds: to the clipping pass for
    /// the norm sweep, else to forward/backward.
    pub(crate) fn record_time(self, acc: &mut StepAcc, fwd: f64, bwd: f64) {
        if self == Sink::Norm {
            acc.timings.clip_pass_s += fwd + bwd;
        } else {
            acc.timings.forward_s += fwd;
            acc.timings.backward_s += bwd;
        }
    }
}

/// The forward of one micro-batch, block by block.
struct Segments {
    ctx: ForwardCtx,
    /// Detached inputs of layers `0..L` and of the final block (index `L`).
    inputs: Vec<Var>,
    /// Kept block outputs with their graphs (embedding, each layer, logits); `None` with
    /// `recompute`. The last sweep of a micro-batch takes them out one by one, so each block's
    /// activations are freed right after its backward.
    outputs: Option<Vec<Option<Tensor>>>,
}

/// Index of the earliest block (forward order: 0 embedding, 1..=L layers, L+1 final) that reads
/// each parameter: where its summed gradient is complete in a backward sweep.
pub(crate) fn last_use(blocks: &[&dyn Block]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for (i, b) in blocks.iter().enumerate().rev() {
        for (name, _) in b.params() {
            out.insert(name, i);
        }
    }
    out
}

/// Adds each of block `bi`'s gradients to what is pending for its parameter (a tied weight
/// read by several blocks) and returns those complete at this block, in the given order.
pub(crate) fn route(
    grads: impl IntoIterator<Item = (String, Var, Tensor)>,
    bi: usize,
    uses: &HashMap<String, usize>,
    pending: &mut HashMap<String, Tensor>,
) -> Result<Vec<(String, Var, Tensor)>> {
    let mut ready = Vec::new();
    for (name, var, g) in grads {
        let g = match pending.remove(&name) {
            Some(p) => (p + g)?,
            None => g,
        };
        if uses.get(&name) == Some(&bi) {
            ready.push((name, var, g));
        } else {
            pending.insert(name, g);
        }
    }
    Ok(ready)
}

/// One micro-batch's forward, in the form its backward needs.
enum Pass {
    Autograd(Segments),
    Fused(FusedSegments),
}

impl Trainer {
    fn forward_pass(&self, model: &Llama, m: &Micro) -> Result<Pass> {
        Ok(match self.cfg.block_backward {
            BlockBackward::Autograd => Pass::Autograd(self.forward_segments(model, m)?),
            BlockBackward::Fused => Pass::Fused(self.fused_forward(model, m)?),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn sweep_pass(
        &mut self,
        model: &Llama,
        pass: &mut Pass,
        m: &Micro,
        n_total: usize,
        sink: Sink,
        bufs: &mut GradBuffers,
        acc: &mut StepAcc,
    ) -> Result<f64> {
        match pass {
            Pass::Autograd(seg) => self.sweep(model, seg, m, n_total, sink, bufs, acc),
            Pass::Fused(seg) => self.fused_sweep(model, seg, m, n_total, sink, bufs, acc),
        }
    }

    fn forward_segments(&self, model: &Llama, m: &Micro) -> Result<Segments> {
        let ctx = model.context(m.batch, m.seq, Some(&m.mask), true, m.dropout_seed)?;
        model.check_ids(&m.ids)?;
        let keep = !self.cfg.recompute;
        let mut outputs = Vec::new();
        let mut inputs = Vec::with_capacity(model.layers.len() + 1);
        let h = model.embed.forward(&m.ids, &ctx)?; // [b, s, hidden]
        let mut x = Var::from_tensor(&h.detach())?;
        if keep {
            outputs.push(None); // the embedding's backward needs no graph (embedding_grads)
        }
        for layer in &model.layers {
            let out = layer.forward(x.as_tensor(), &ctx)?; // [b, s, hidden]
            inputs.push(x);
            x = Var::from_tensor(&out.detach())?;
            if keep {
                outputs.push(Some(out));
            }
        }
        if keep {
            outputs.push(Some(model.final_block.forward(x.as_tensor(), &ctx)?));
            // [b, s, vocab]
        }
        inputs.push(x);
        Ok(Segments {
            ctx,
            inputs,
            outputs: keep.then_some(outputs),
        })
    }

    /// Adds a micro-batch's scaled loss to the step's loss (once: not again in the second
    /// sweep of clipping) and checks it before any update of the step (trainer docs).
    pub(crate) fn count_loss(&self, sink: Sink, loss_v: f64, acc: &mut StepAcc) -> Result<()> {
        if !matches!(sink, Sink::Step { record: false, .. }) {
            acc.loss += loss_v;
        }
        self.check_finite("loss", acc.loss)
    }

    /// One backward sweep over all blocks; returns the micro-batch's scaled loss.
    #[allow(clippy::too_many_arguments)]
    fn sweep(
        &mut self,
        model: &Llama,
        seg: &mut Segments,
        m: &Micro,
        n_total: usize,
        sink: Sink,
        bufs: &mut GradBuffers,
        acc: &mut StepAcc,
    ) -> Result<f64> {
        let blocks = model.blocks();
        let uses = last_use(&blocks);
        let n_layers = model.layers.len();
        let mut pending: HashMap<String, Tensor> = HashMap::new();
        let mut g_out: Option<Tensor> = None;
        let mut loss_v = 0.0;
        for bi in (0..blocks.len()).rev() {
            let block = blocks[bi];
            if bi == 0 {
                let t = Instant::now();
                let ready = self.embedding_grads(model, m, g_out.take(), &mut pending)?;
                sink.record_time(acc, 0.0, t.elapsed().as_secs_f64());
                self.deliver(ready, &pending, sink, bufs, acc)?;
                continue;
            }
            // The last sweep of the micro-batch releases the kept graph.
            let release = sink != Sink::Norm;
            let kept = match seg.outputs.as_mut() {
                Some(o) if release => o[bi].take(),
                Some(o) => o[bi].clone(),
                None => None,
            };
            // Recompute the block's forward if its graph was not kept.
            let t = Instant::now();
            let out = match kept {
                Some(o) => o,
                None if seg.outputs.is_some() => {
                    return Err(TrainError::Invalid {
                        what: "layerwise backward",
                        msg: format!("graph of block {} already released", block.name()),
                    })
                }
                None => block.forward(seg.inputs[bi - 1].as_tensor(), &seg.ctx)?,
            };
            let fwd = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let grads = if bi == n_layers + 1 {
                let loss = Self::scaled_loss(&out, m, n_total)?;
                loss_v = loss.to_scalar::<f32>()? as f64;
                self.count_loss(sink, loss_v, acc)?;
                loss.backward()?
            } else {
                let g = g_out.take().ok_or_else(|| TrainError::Invalid {
                    what: "layerwise backward",
                    msg: format!("no gradient reached the output of block {}", block.name()),
                })?;
                (&out * g)?.sum_all()?.backward()?
            };
            drop(out);
            self.prof.lap("backward: block (autograd)")?;
            if bi > 0 {
                g_out = grads
                    .get(seg.inputs[bi - 1].as_tensor())
                    .map(Tensor::detach);
            }
            sink.record_time(acc, fwd, t.elapsed().as_secs_f64());
            // Detached: candle leaves the gradients of leaf `Var`s attached to the graph
            // (they are computed from forward tensors and never processed as nodes), so a
            // kept gradient would keep the whole forward graph alive, and optimizer moments
            // computed from it would chain every step's graph (a leak of ~10x the weights
            // per step, measured on SmolLM2).
            let block_grads = block.params().into_iter().filter_map(|(name, var)| {
                let g = grads.get(var.as_tensor()).map(Tensor::detach)?;
                Some((name, var, g))
            });
            let ready = route(block_grads, bi, &uses, &mut pending)?;
            drop(grads);
            self.deliver(ready, &pending, sink, bufs, acc)?;
        }
        Ok(loss_v)
    }

    /// The embedding's weight gradient: a scatter-add of `g_out` into the rows of the ids, done
    /// directly (no autograd) on top of the pending gradient of a tied embedding. This is what
    /// candle's whole-graph backward computes for `index_select` (`sum.index_add(ids, g)`, with
    /// the head's contribution already in `sum`), so both modes add in the same order.
    pub(crate) fn embedding_grads(
        &self,
        model: &Llama,
        m: &Micro,
        g_out: Option<Tensor>,
        pending: &mut HashMap<String, Tensor>,
    ) -> Result<Vec<(String, Var, Tensor)>> {
        let params = model.embed.params();
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let g = g_out.ok_or_else(|| TrainError::Invalid {
            what: "layerwise backward",
            msg: "no gradient reached the output of the embedding".into(),
        })?;
        let mut ready = Vec::new();
        for (name, var) in params {
            let base = match pending.remove(&name) {
                Some(p) => p,
                None => var.as_tensor().zeros_like()?,
            };
            let grad = embedding_backward(&base, &m.ids, &g)?;
            ready.push((name, var, grad));
        }
        Ok(ready)
    }

    /// Hands each complete gradient of a block to the sink.
    pub(crate) fn deliver(
        &mut self,
        ready: Vec<(String, Var, Tensor)>,
        pending: &HashMap<String, Tensor>,
        sink: Sink,
        bufs: &mut GradBuffers,
        acc: &mut StepAcc,
    ) -> Result<()> {
        self.prof.lap("route")?;
        let alive: usize = ready.iter().map(|(_, _, g)| tensor_bytes(g)).sum::<usize>()
            + pending.values().map(tensor_bytes).sum::<usize>()
            + bufs.bytes();
        acc.peak.observe(alive);
        match sink {
            Sink::Accumulate => {
                for (name, _, g) in ready {
                    bufs.add(&name, &g)?;
                }
                self.prof.lap("grad accumulate")?;
            }
            Sink::Norm => {
                let totals = ready
                    .iter()
                    .map(|(name, _, g)| bufs.total_with(name, g))
                    .collect::<Result<Vec<_>>>()?;
                let sq = sq_norms(&totals.iter().collect::<Vec<_>>())?;
                for ((name, _, _), v) in ready.into_iter().zip(sq) {
                    acc.sq.insert(name, v);
                }
                self.prof.lap("clip: norm pass sq_norms")?;
            }
            Sink::Step { coef, record } => {
                let mut items = Vec::with_capacity(ready.len());
                for (name, var, g) in ready {
                    let total = bufs.total_with(&name, &g)?;
                    bufs.remove(&name);
                    items.push((name, var, total));
                }
                self.prof.lap("grad totals")?;
                if record {
                    // No clipping pass: check the block's gradients (one host read) before any
                    // of them is applied.
                    let sq = sq_norms(&items.iter().map(|(_, _, t)| t).collect::<Vec<_>>())?;
                    for ((name, _, _), v) in items.iter().zip(sq) {
                        self.check_finite(&format!("gradient of {name}"), v)?;
                        acc.sq.insert(name.clone(), v);
                    }
                    self.prof.lap("grad sq_norms + host read")?;
                }
                let items = items
                    .into_iter()
                    .map(|(name, var, t)| Ok((name, var, scale(&t, coef)?)))
                    .collect::<Result<Vec<_>>>()?;
                self.prof.lap("clip scale")?;
                self.apply_many(&items, acc)?;
                self.prof.lap("optimizer step_params")?;
            }
        }
        Ok(())
    }

    /// Layerwise mode (and whole-model mode of the fused blocks, where every micro-batch only
    /// accumulates and the model is stepped at the end): returns (loss, grad norm, clip
    /// coefficient).
    pub(crate) fn step_layerwise(
        &mut self,
        micros: &[Micro],
        n_total: usize,
        acc: &mut StepAcc,
    ) -> Result<(f64, f64, f64)> {
        // Cloning a Llama clones `Var` handles (shared storage), not weights.
        let model = self.model.clone();
        let mut bufs = GradBuffers::default();
        let clipping = self.cfg.max_grad_norm > 0.0;
        let mut loss_v = 0.0;
        let (mut norm, mut coef) = (0.0, 1.0);
        let layerwise = self.cfg.layerwise;
        for (j, m) in micros.iter().enumerate() {
            let t = Instant::now();
            let mut pass = self.forward_pass(&model, m)?;
            self.prof.lap("forward: other")?;
            acc.timings.forward_s += t.elapsed().as_secs_f64();
            if j + 1 < micros.len() || !layerwise {
                let sink = Sink::Accumulate;
                loss_v += self.sweep_pass(&model, &mut pass, m, n_total, sink, &mut bufs, acc)?;
                continue;
            }
            if clipping {
                let sink = Sink::Norm;
                loss_v += self.sweep_pass(&model, &mut pass, m, n_total, sink, &mut bufs, acc)?;
                norm = global_norm(&acc.sq);
                self.check_finite("gradient norm", norm)?;
                coef = clip_coef(norm, self.cfg.max_grad_norm);
                let sink = Sink::Step {
                    coef,
                    record: false,
                };
                self.sweep_pass(&model, &mut pass, m, n_total, sink, &mut bufs, acc)?;
            } else {
                let sink = Sink::Step {
                    coef: 1.0,
                    record: true,
                };
                loss_v += self.sweep_pass(&model, &mut pass, m, n_total, sink, &mut bufs, acc)?;
                norm = global_norm(&acc.sq);
            }
        }
        if !layerwise {
            (norm, coef) = self.apply_buffers(bufs, acc)?;
        }
        Ok((loss_v, norm, coef))
    }
}
