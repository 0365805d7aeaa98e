//! The embedding's forward and the final block (norm, `lm_head`) fused with the loss: its
//! forward and backward run together, over row chunks of the logits, so the full
//! `[b * s, vocab]` logits are never held (and never in f32).

use candle_core::{DType, Device, Tensor};
use crosslore_fused::{cross_entropy_fwd_bwd, rms_norm_bwd, rms_norm_fwd, IGNORE};

use super::linear::push;
use super::ParamGrad;
use crate::block::{EmbeddingBlock, FinalBlock};
use crate::error::{ModelError, Result};
use crate::loss::IGNORE_INDEX;

/// Logit bytes (in the model dtype) computed at a time by [`head_forward_backward`].
pub const LOGITS_CHUNK_BYTES: usize = 256 << 20;

/// `ids: [b, s]` u32 -> `[b, s, hidden]`, no graph.
pub fn embedding_forward(embed: &EmbeddingBlock, ids: &Tensor) -> Result<Tensor> {
    let (b, s) = ids.dims2()?;
    let w = embed.weight.tensor().detach();
    let h = w.index_select(&ids.flatten_all()?, 0)?; // [b*s, hidden]
    Ok(h.reshape((b, s, w.dim(1)?))?)
}

/// The embedding's weight gradient: `base` (zeros, or the head's gradient of a tied
/// embedding) plus `g_out: [b, s, hidden]` scattered into the rows of `ids: [b, s]` — what
/// candle's backward of `index_select` computes, in the same order.
pub fn embedding_backward(base: &Tensor, ids: &Tensor, g_out: &Tensor) -> Result<Tensor> {
    let (b, s, h) = g_out.dims3()?;
    let g = g_out.reshape((b * s, h))?; // [b*s, hidden]
    let ids = ids.flatten_all()?.contiguous()?; // [b*s]
    Ok(base.index_add(&ids, &g, 0)?)
}

/// The causal-LM targets of a batch as [`crate::causal_lm_loss_sum`] counts them: row
/// `(i, t)` predicts `labels[i][t + 1]`; the last position of each row and labels equal to
/// [`IGNORE_INDEX`] become [`IGNORE`]. `labels`: `b * s` values, row-major. Returns `[b * s]`
/// u32 on `device` and the number of counted targets.
pub fn shifted_targets(
    labels: &[i64],
    b: usize,
    s: usize,
    vocab: usize,
    device: &Device,
) -> Result<(Tensor, usize)> {
    if labels.len() != b * s {
        return Err(ModelError::input(
            "labels",
            format!(
                "expected {b} x {s} = {} values, got {}",
                b * s,
                labels.len()
            ),
        ));
    }
    let mut out = vec![IGNORE; b * s];
    let mut count = 0;
    for i in 0..b {
        for t in 0..s.saturating_sub(1) {
            let y = labels[i * s + t + 1];
            if y == IGNORE_INDEX {
                continue;
            }
            if y < 0 || y as usize >= vocab {
                return Err(ModelError::input(
                    "labels",
                    format!("label {y} at row {i}, position {} is outside the vocabulary (0..{vocab}) and not {IGNORE_INDEX}", t + 1),
                ));
            }
            out[i * s + t] = y as u32;
            count += 1;
        }
    }
    Ok((Tensor::from_vec(out, b * s, device)?, count))
}

/// Result of [`head_forward_backward`].
#[derive(Debug)]
pub struct HeadOut {
    /// Sum of the token losses (unscaled), f32 `[]`, on the device (no host sync).
    pub loss_sum: Tensor,
    /// Gradient of `grad_scale * loss_sum` with respect to the block input, `[b, s, hidden]`.
    pub dx: Tensor,
}

/// Final norm, `lm_head` and cross-entropy on `x: [b, s, hidden]` with `targets: [b * s]`
/// ([`shifted_targets`]), forward and backward at once; the gradient is that of
/// `grad_scale * loss_sum`. Pushes the gradients of `model.norm.weight` and of the head
/// (`lm_head.weight`, or `model.embed_tokens.weight` when tied).
pub fn head_forward_backward(
    head: &FinalBlock,
    x: &Tensor,
    targets: &Tensor,
    grad_scale: f32,
    grads: &mut Vec<ParamGrad>,
) -> Result<HeadOut> {
    let (b, s, hid) = x.dims3()?;
    let rows = b * s;
    let w = head.lm_head.tensor().detach(); // [vocab, hidden]
    let vocab = w.dim(0)?;
    let nw = head.norm.tensor().detach();
    let x2 = x.detach().reshape((rows, hid))?.contiguous()?;
    let n = rms_norm_fwd(&x2, &nw, head.eps as f32)?;
    let elem = x.dtype().size_in_bytes();
    let chunk = (LOGITS_CHUNK_BYTES / (vocab * elem).max(1)).clamp(1, rows.max(1));
    let mut loss_sum: Option<Tensor> = None;
    let mut dh = Vec::with_capacity(rows.div_ceil(chunk));
    let mut dw: Option<Tensor> = None;
    let single = chunk >= rows;
    // A frozen head (adapters) needs no weight gradient: skip its [vocab, hidden] product.
    let head_trainable = head.lm_head.var().is_some();
    for r0 in (0..rows).step_by(chunk) {
        let len = chunk.min(rows - r0);
        let h = n.y.narrow(0, r0, len)?; // [len, hidden]
        let t = targets.narrow(0, r0, len)?;
        let logits = h.matmul(&w.t()?)?; // [len, vocab]
        let out = cross_entropy_fwd_bwd(&logits, &t, grad_scale)?;
        drop(logits);
        dh.push(out.dlogits.matmul(&w)?); // [len, hidden]
        if head_trainable {
            let part = out.dlogits.t()?.matmul(&h)?; // [vocab, hidden]
                                                     // Several chunks: the head gradient is summed in f32.
            dw = Some(match dw {
                None if single => part,
                None => part.to_dtype(DType::F32)?,
                Some(acc) => (acc + part.to_dtype(DType::F32)?)?,
            });
        }
        loss_sum = Some(match loss_sum {
            None => out.loss_sum,
            Some(acc) => (acc + out.loss_sum)?,
        });
    }
    // [rows, hidden]; one chunk is used as is
    let dh = if dh.len() == 1 {
        dh.swap_remove(0)
    } else {
        Tensor::cat(&dh, 0)?
    };
    let (dx, dnw) = rms_norm_bwd(&dh, &x2, &nw, &n.rstd)?;
    push(grads, "model.norm.weight".into(), &head.norm, dnw)?;
    if let Some(g) = dw {
        push(grads, head.head_name().into(), &head.lm_head, g)?;
    }
    let loss_sum = match loss_sum {
        Some(l) => l,
        None => Tensor::zeros((), DType::F32, x.device())?,
    };
    Ok(HeadOut {
        loss_sum,
        dx: dx.reshape((b, s, hid))?,
    })
}
