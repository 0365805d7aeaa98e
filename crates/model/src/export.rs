//! Export as a Hugging Face folder: `config.json` and `model.safetensors` (adapters merged),
//! each written to a temporary file in the folder and renamed into place (atomic on POSIX).
//! `tokenizer.json` is written by the tokenizer code, not here.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor};

use crate::error::{ModelError, Result};
use crate::model::Llama;

/// Write `bytes` to `path` atomically (temp file in the same folder, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let fname = path
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{fname}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| ModelError::io(&tmp, "create", e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| ModelError::io(&tmp, "write", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, "rename into place", e))
}

/// Save named tensors as one safetensors file, atomically (temp file + rename).
pub fn save_safetensors_atomic(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let map: HashMap<String, Tensor> = tensors.iter().cloned().collect();
    let dir = path.parent().unwrap_or(Path::new("."));
    let fname = path
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{fname}.tmp{}", std::process::id()));
    candle_core::safetensors::save(&map, &tmp)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| ModelError::io(&tmp, "sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, "rename into place", e))
}

impl Llama {
    /// Write `config.json` and `model.safetensors` (merged adapters, `dtype` F32 or BF16) into
    /// `dir` (created if needed). Tied models omit `lm_head.weight`, as `save_pretrained` does.
    pub fn save_hf_folder(&self, dir: &Path, dtype: DType) -> Result<()> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(ModelError::input(
                "export dtype",
                format!("expected F32, BF16 or F16, got {dtype:?}"),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, "create folder", e))?;
        let mut tensors = Vec::new();
        for (name, t) in self.merged_weights()? {
            let t = t
                .detach()
                .to_dtype(dtype)?
                .to_device(&candle_core::Device::Cpu)?
                .contiguous()?;
            tensors.push((name, t));
        }
        save_safetensors_atomic(&dir.join("model.safetensors"), &tensors)?;
        let cfg = self.config.to_json_value(dtype);
        let text = serde_json::to_string_pretty(&cfg).map_err(|e| ModelError::Json {
            origin: dir.join("config.json").display().to_string(),
            source: e,
        })?;
        write_atomic(&dir.join("config.json"), text.as_bytes())
    }
}
