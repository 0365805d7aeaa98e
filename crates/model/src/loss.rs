//! Causal-LM cross-entropy as transformers' `ForCausalLMLoss`: logits at position `t` predict
//! label `t + 1`; labels equal to -100 (and, optionally, positions where `loss_mask` is 0) are
//! ignored; the mean is over the counted tokens. Computed in f32 whatever the logits dtype.

use candle_core::{DType, Tensor, D};

use crate::error::{ModelError, Result};
use crate::ops::logsumexp_keepdim;

/// Label value that is not trained on (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Sum of the token losses and the number of counted tokens (for gradient accumulation over
/// micro-batches: divide the total sum by the total count).
/// `logits: [b, s, vocab]`, `labels: [b, s]` (i64 with -100 ignored, or u32),
/// `loss_mask: [b, s]` (any numeric dtype, 0 = ignore), aligned with `labels`.
pub fn causal_lm_loss_sum(
    logits: &Tensor,
    labels: &Tensor,
    loss_mask: Option<&Tensor>,
) -> Result<(Tensor, usize)> {
    let (b, s, vocab) = logits.dims3()?;
    if labels.dims() != [b, s] {
        return Err(ModelError::input(
            "labels",
            format!(
                "expected shape [{b}, {s}] like the logits, got {:?}",
                labels.dims()
            ),
        ));
    }
    let labels: Vec<Vec<i64>> = labels.to_dtype(DType::I64)?.to_vec2()?;
    let mask: Option<Vec<Vec<f32>>> = match loss_mask {
        None => None,
        Some(m) => {
            if m.dims() != [b, s] {
                return Err(ModelError::input(
                    "loss_mask",
                    format!("expected shape [{b}, {s}], got {:?}", m.dims()),
                ));
            }
            Some(m.to_dtype(DType::F32)?.to_vec2()?)
        }
    };
    let dev = logits.device();
    if s < 2 {
        return Ok((Tensor::zeros((), DType::F32, dev)?, 0));
    }
    let n = s - 1;
    let mut targets = Vec::with_capacity(b * n);
    let mut weights = Vec::with_capacity(b * n);
    let mut count = 0usize;
    for (r, row) in labels.iter().enumerate() {
        for t in 1..s {
            let y = row[t];
            let on = y != IGNORE_INDEX && mask.as_ref().is_none_or(|m| m[r][t] != 0.0);
            if on {
                if y < 0 || y as usize >= vocab {
                    return Err(ModelError::input(
                        "labels",
                        format!("label {y} at [{r}, {t}] outside 0..{vocab} (and not -100)"),
                    ));
                }
                count += 1;
            }
            targets.push(if on { y as u32 } else { 0 });
            weights.push(if on { 1f32 } else { 0.0 });
        }
    }
    let targets = Tensor::from_vec(targets, (b, n, 1), dev)?;
    let weights = Tensor::from_vec(weights, (b, n), dev)?;
    let lg = logits.narrow(1, 0, n)?.to_dtype(DType::F32)?; // [b, s-1, vocab]
    let lse = logsumexp_keepdim(&lg)?; // [b, s-1, 1]
    let picked = lg.contiguous()?.gather(&targets, D::Minus1)?; // [b, s-1, 1]
    let nll = (lse - picked)?.squeeze(D::Minus1)?; // [b, s-1]
    Ok(((nll * weights)?.sum_all()?, count))
}

/// Mean causal-LM loss over counted tokens (a scalar f32 tensor). Errors when no token counts.
pub fn causal_lm_loss(
    logits: &Tensor,
    labels: &Tensor,
    loss_mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (sum, count) = causal_lm_loss_sum(logits, labels, loss_mask)?;
    if count == 0 {
        return Err(ModelError::input(
            "labels",
            "no position to train on (every label is -100 or masked)",
        ));
    }
    Ok((sum / count as f64)?)
}
