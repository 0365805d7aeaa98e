//! Evaluation hooks of a run. Generation-based evaluation (greedy decoding + task metrics) is
//! written by the generation code's owner: it plugs in by implementing [`Evaluator`], which
//! [`crate::run::run_finetune_with`] calls before and after training. This module also gives the
//! one evaluation the training crate owns: held-out token loss (teacher forcing).

use candle_core::{Device, Tensor};
use crosslore_data::{pad, Batch, Encoded, Example};
use crosslore_model::{causal_lm_loss_sum, Llama};
use tokenizers::Tokenizer;

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};

/// When an evaluation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvalPhase {
    Before,
    After,
}

/// A run's evaluation (e.g. generation on the test split + metrics). Returns a JSON table that
/// the run stores in `summary.json` (`eval_before` / `eval_after`).
pub trait Evaluator {
    fn evaluate(
        &mut self,
        phase: EvalPhase,
        model: &Llama,
        tokenizer: &Tokenizer,
        test: &[Example],
        cfg: &TrainConfig,
    ) -> Result<serde_json::Value>;
}

/// A collated batch on `dev`: `(ids u32, attention mask u8, labels i64)`, each `[batch, seq]`.
pub fn batch_tensors(b: &Batch, dev: &Device) -> Result<(Tensor, Tensor, Tensor)> {
    let shape = (b.batch_size, b.seq_len);
    let ids = Tensor::from_slice(&b.input_ids, shape, dev)?; // [b, s]
    let mask = Tensor::from_slice(&b.attention_mask, shape, dev)?;
    let labels = Tensor::from_slice(&b.labels, shape, dev)?;
    Ok((ids, mask, labels))
}

/// Mean token loss of `examples` (prompt masked), in batches of `batch_size`, evaluation mode.
pub fn heldout_loss(
    model: &Llama,
    examples: &[Encoded],
    batch_size: usize,
    pad_id: u32,
) -> Result<f64> {
    if examples.is_empty() {
        return Err(TrainError::Invalid {
            what: "held-out loss",
            msg: "no example to evaluate".into(),
        });
    }
    let dev = model.device().clone();
    let model = &model.inference_view(); // no graph: evaluation only
    let (mut sum, mut count) = (0f64, 0usize);
    for chunk in examples.chunks(batch_size.max(1)) {
        let refs: Vec<&Encoded> = chunk.iter().collect();
        let (ids, mask, labels) = batch_tensors(&pad(&refs, pad_id), &dev)?;
        let logits = model.forward(&ids, Some(&mask))?;
        let (s, n) = causal_lm_loss_sum(&logits, &labels, None)?;
        sum += s.to_scalar::<f32>()? as f64;
        count += n;
    }
    if count == 0 {
        return Err(TrainError::Invalid {
            what: "held-out loss",
            msg: "no target token in the evaluated examples".into(),
        });
    }
    Ok(sum / count as f64)
}
