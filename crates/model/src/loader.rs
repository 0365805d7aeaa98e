//! Loading a Hugging Face folder: `config.json` plus `model.safetensors` or a sharded
//! `model.safetensors.index.json`, memory-mapped (candle's `MmapedSafetensors`).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::Tensor;

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::model::{Llama, LoadOptions};

/// The safetensors files of a folder: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json` (`weight_map` values).
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(ModelError::io(
            dir,
            "find weights",
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "neither model.safetensors nor model.safetensors.index.json exists",
            ),
        ));
    }
    let origin = index.display().to_string();
    let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, "read", e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
        origin: origin.clone(),
        source: e,
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::config(&origin, "weight_map", "missing object"))?;
    let mut files = BTreeSet::new();
    for (k, f) in map {
        let f = f.as_str().ok_or_else(|| {
            ModelError::config(&origin, &format!("weight_map.{k}"), "expected a file name")
        })?;
        if f.contains('/') || f.contains('\\') || f.contains("..") {
            return Err(ModelError::config(
                &origin,
                &format!("weight_map.{k}"),
                format!("expected a plain file name in the folder, got {f}"),
            ));
        }
        files.insert(f.to_string());
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Memory-map the folder's safetensors and load the tensors the config needs (on
/// `opts.device`, converted to `opts.dtype`).
pub fn load_hf_tensors(
    dir: &Path,
    config: &LlamaConfig,
    opts: &LoadOptions,
) -> Result<HashMap<String, Tensor>> {
    let files = safetensors_files(dir)?;
    for f in &files {
        if !f.is_file() {
            return Err(ModelError::io(
                f,
                "open shard",
                std::io::Error::new(std::io::ErrorKind::NotFound, "listed in the index"),
            ));
        }
    }
    let origin = dir.display().to_string();
    // SAFETY: the files are mapped read-only; as with every mmap, modifying them while the
    // model loads is undefined behaviour (documented for users of from_hf_folder).
    let st = unsafe { MmapedSafetensors::multi(&files) }.map_err(ModelError::Candle)?;
    let mut out = HashMap::new();
    for (name, shape) in config.expected_tensor_iter() {
        let view = match st.get(&name) {
            Ok(v) => v,
            Err(_) => {
                return Err(ModelError::MissingTensor {
                    origin,
                    name,
                    expected: shape,
                })
            }
        };
        if view.shape() != shape.as_slice() {
            return Err(ModelError::TensorShape {
                origin,
                name,
                expected: shape,
                got: view.shape().to_vec(),
            });
        }
        let t = st.load(&name, &opts.device)?.to_dtype(opts.dtype)?;
        out.insert(name, t);
    }
    Ok(out)
}

impl Llama {
    /// Load a Hugging Face folder (`config.json` + safetensors, single or sharded).
    pub fn from_hf_folder(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let config = LlamaConfig::from_file(&dir.join("config.json"))?;
        let tensors = load_hf_tensors(dir, &config, opts)?;
        Self::from_tensors_named(config, tensors, opts, &dir.display().to_string())
    }
}
