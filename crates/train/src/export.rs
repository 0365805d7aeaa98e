//! Export at the end of a run (issue 3 item 5): the fine-tuned model as a Hugging Face folder
//! (`config.json`, `model.safetensors` with LoRA/DoRA merged, `tokenizer.json`), and for adapter
//! methods the adapters alone in peft's layout (`adapter_model.safetensors` with keys
//! `base_model.model.<module>.lora_A.weight` / `lora_B.weight` / `lora_magnitude_vector`, and
//! `adapter_config.json`).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use crosslore_model::export::{save_safetensors_atomic, write_atomic};
use crosslore_model::{AdapterKind, Llama, TargetModules};
use serde_json::json;
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
pub const PEFT_PREFIX: &str = "base_model.model.";

/// Writes the adapters alone, peft-style. Errors if the model has no adapters.
pub fn export_adapters(model: &Llama, dir: &Path, base_model: &str) -> Result<()> {
    let cfg = model.adapter_config().ok_or(TrainError::Invalid {
        what: "adapter export",
        msg: "the model has no adapters (method is not lora/dora)".into(),
    })?;
    write_dir_atomic(dir, |tmp| {
        let tensors = model
            .params()
            .into_iter()
            .map(|(name, v)| {
                let t: Tensor = v
                    .as_tensor()
                    .detach()
                    .to_device(&Device::Cpu)?
                    .contiguous()?;
                Ok((format!("{PEFT_PREFIX}{name}"), t))
            })
            .collect::<Result<Vec<_>>>()?;
        save_safetensors_atomic(&tmp.join("adapter_model.safetensors"), &tensors)?;
        let targets: Vec<&str> = match &cfg.targets {
            TargetModules::AllLinear => crosslore_model::lora::Proj::ALL
                .iter()
                .map(|p| p.hf_name())
                .collect(),
            TargetModules::Only(v) => v.iter().map(|p| p.hf_name()).collect(),
        };
        let value = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": cfg.rank,
            "lora_alpha": cfg.alpha,
            "lora_dropout": cfg.dropout,
            "target_modules": targets,
            "use_dora": cfg.kind == AdapterKind::Dora,
            "use_rslora": false,
            "bias": "none",
            "fan_in_fan_out": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "modules_to_save": null,
        });
        let text = serde_json::to_string_pretty(&value).map_err(|e| TrainError::Invalid {
            what: "adapter_config.json",
            msg: e.to_string(),
        })?;
        write_atomic(&tmp.join("adapter_config.json"), text.as_bytes())?;
        Ok(())
    })
}
