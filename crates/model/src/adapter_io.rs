//! Adapters alone as peft files: `adapter_model.safetensors` (keys
//! `base_model.model.<hf module>.lora_A.weight`, `.lora_B.weight`, `.lora_magnitude_vector`,
//! as peft's `get_peft_model_state_dict` writes them) and `adapter_config.json`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::export::{save_safetensors_atomic, write_atomic};
use crate::lora::{AdapterKind, Proj, TargetModules};
use crate::model::Llama;

/// Prefix peft puts before the base model's parameter names.
pub const PEFT_PREFIX: &str = "base_model.model.";

impl Llama {
    /// The adapter tensors under peft's saved names (empty without adapters).
    pub fn peft_adapter_tensors(&self) -> Vec<(String, Tensor)> {
        match self.adapter_config() {
            None => Vec::new(),
            Some(_) => self
                .params()
                .into_iter()
                .filter(|(n, _)| n.contains(".lora_"))
                .map(|(n, v)| (format!("{PEFT_PREFIX}{n}"), v.as_tensor().detach()))
                .collect(),
        }
    }

    /// Write `adapter_model.safetensors` (f32) and `adapter_config.json` into `dir`;
    /// `base_model` fills the config's `base_model_name_or_path` (`null` when `None`).
    pub fn save_adapter(&self, dir: &Path, base_model: Option<&str>) -> Result<()> {
        let cfg = self
            .adapter_config()
            .ok_or_else(|| ModelError::Adapter("this model has no adapters to save".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, "create folder", e))?;
        let mut tensors = Vec::new();
        for (n, t) in self.peft_adapter_tensors() {
            tensors.push((
                n,
                t.to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?
                    .contiguous()?,
            ));
        }
        save_safetensors_atomic(&dir.join("adapter_model.safetensors"), &tensors)?;
        let targets: serde_json::Value = match &cfg.targets {
            TargetModules::AllLinear => Proj::ALL.iter().map(|p| p.hf_name()).collect(),
            TargetModules::Only(v) => v.iter().map(|p| p.hf_name()).collect(),
        };
        let json = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
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
            "base_model_name_or_path": base_model,
        });
        let text = serde_json::to_string_pretty(&json).map_err(|e| ModelError::Json {
            origin: dir.join("adapter_config.json").display().to_string(),
            source: e,
        })?;
        write_atomic(&dir.join("adapter_config.json"), text.as_bytes())
    }

    /// Load adapter weights saved by [`Llama::save_adapter`] or peft into this model, which must
    /// carry adapters of the same kind, rank and targets. Every adapter tensor must be present.
    pub fn load_adapter_weights(&self, dir: &Path) -> Result<()> {
        let path = dir.join("adapter_model.safetensors");
        let origin = path.display().to_string();
        let file = candle_core::safetensors::load(&path, self.device())?;
        let mut by_name: HashMap<String, Tensor> = HashMap::new();
        for (k, t) in file {
            let n = k.strip_prefix(PEFT_PREFIX).unwrap_or(&k);
            // peft files may carry the adapter name: `lora_A.default.weight`.
            let n = n.replace(".default.", ".");
            by_name.insert(n, t);
        }
        for (name, var) in self.params() {
            if !name.contains(".lora_") {
                continue;
            }
            if !by_name.contains_key(&name) {
                return Err(ModelError::MissingTensor {
                    origin: origin.clone(),
                    name: format!("{PEFT_PREFIX}{name}"),
                    expected: var.dims().to_vec(),
                });
            }
        }
        self.set_adapter_tensors(&by_name)?;
        Ok(())
    }
}
