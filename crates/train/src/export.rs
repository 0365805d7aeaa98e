//! Export at the end of a run (issue 3 item 5): the fine-tuned model as a Hugging Face folder
//! (`config.json`, `model.safetensors` with LoRA/DoRA merged, `tokenizer.json`), and for adapter
//! methods the adapters alone in peft's layout (`adapter_model.safetensors` with keys
//! `base_model.model.<module>.lora_A.weight` / `lora_B.weight` / `lora_magnitude_vector`, and
//! `adapter_config.json`).

use std::path::Path;

use candle_core::DType;
use crosslore_model::Llama;
use tokenizers::Tokenizer;

use crate::atomic::write_dir_atomic;
use crate::error::{Result, TrainError};

/// Writes the merged model and its tokenizer as a Hugging Face folder, atomically
/// ([`write_dir_atomic`]).
pub fn export_hf(
    model: &Llama,
    tokenizer: Option<&Tokenizer>,
    dir: &Path,
    dtype: DType,
) -> Result<()> {
    write_dir_atomic(dir, |tmp| {
        model.save_hf_folder(tmp, dtype)?;
        if let Some(tok) = tokenizer {
            crosslore_model::tokenizer::save(tok, tmp.join("tokenizer.json"))?;
        }
        Ok(())
    })
}

/// peft key prefix of a `PeftModelForCausalLM`.
pub use crosslore_model::adapter_io::PEFT_PREFIX;

/// Writes the adapters alone, peft-style ([`Llama::save_adapter`]), atomically
/// ([`write_dir_atomic`]). Errors if the model has no adapters.
pub fn export_adapters(model: &Llama, dir: &Path, base_model: &str) -> Result<()> {
    if model.adapter_config().is_none() {
        return Err(TrainError::Invalid {
            what: "adapter export",
            msg: "the model has no adapters (method is not lora/dora)".into(),
        });
    }
    write_dir_atomic(dir, |tmp| Ok(model.save_adapter(tmp, Some(base_model))?))
}
