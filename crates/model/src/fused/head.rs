//! The embedding's forward and the final block (norm, `lm_head`) fused with the loss: its
//! forward and backward run together, over row chunks of the logits, so the full
//! `[b * s, vocab]` logits are never held (and never in f32).

use candle_core::{DType, Device, Tensor};
use crosslore_fused::{cross_entropy_fwd_bwd, rms_norm_bwd, rms_norm_fwd, IGNORE};

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
    for r0 in (0..rows).step_by(chunk) {
        let len = chunk.min(rows - r0);
        let h = n.y.narrow(0, r0, len)?; // [len, hidden]
        let t = targets.narrow(0, r0, len)?;
        let logits = h.matmul(&w.t()?)?; // [len, vocab]
        let out = cross_entropy_fwd_bwd(&logits, &t, grad_scale)?;
        drop(logits);
        dh.push(out.dlogits.matmul(&w)?); // [len, hidden]
        let part = out.dlogits.t()?.matmul(&h)?; // [vocab, hidden]
                                                 // Several chunks: the head gradient is summed in f32.
        dw = Some(match dw {
            None if single => part,
            None => part.to_dtype(DType::F32)?,
            Some(acc) => (acc + part.to_dtype(DType::F32)?)?,
        });
        loss_sum = Some(match loss_sum {
            None => out.loss_sum,
            Some(acc) => (acc + out.loss_sum)?,
        });
    }
    let dh = Tensor::cat(&dh, 0)?; // [rows, hidden]
    let (dx, dnw) = rms_norm_bwd(&dh, &x2, &nw, &n.rstd)?;
    if let Some(v) = head.norm.var() {
        grads.push((
            "model.norm.weight".into(),
            v.clone(),
            dnw.to_dtype(v.dtype())?,
        ));
    }
    if let (Some(v), Some(g)) = (head.lm_head.var(), dw) {
        let name = if head.tied {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        };
        grads.push((name.into(), v.clone(), g.to_dtype(v.dtype())?));
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
