//! The run configuration: one flat TOML table with keys in LLaMA-Factory's spirit.
//!
//! Every key has a documented default ([`TrainConfig::default`]); an unknown key is an error with a
//! "did you mean" suggestion; out-of-range values are errors naming the key and the allowed range.

use crate::schedule::SchedulerKind;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which fine-tuning method a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// GaLore + randomized subspace iteration + cross-head Q/K projection + sparse residual.
    #[default]
    Crosslore,
    /// GaLore with exact SVD (galore-torch 1.0 semantics).
    Galore,
    /// LoRA adapters (peft semantics); base weights frozen.
    Lora,
    /// DoRA adapters (peft semantics); base weights frozen.
    Dora,
    /// Full fine-tuning with AdamW (torch.optim.AdamW semantics).
    Adamw,
}

/// Where the run computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    #[default]
    Cpu,
    Cuda,
}

/// Floating-point type of the model weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    #[default]
    F32,
    Bf16,
}

/// How each block's backward is computed (DESIGN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BlockBackward {
    /// candle autograd inside each block: the reference path (tests compare the fused blocks
    /// with it).
    Autograd,
    /// Hand-written backward (`crosslore_model::fused`): fused CUDA kernels on the GPU, their
    /// f32 reference elsewhere; no autograd graph, activations saved per block. The default:
    /// same results (within float rounding), 6.5x faster per 7B layer on the H200, and on the
    /// CPU 1.7x faster with 2.4x less peak memory for the main job (docs/BENCHMARKS.md).
    #[default]
    Fused,
}

/// GaLore projection side rule (galore-torch's `proj_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProjTypeKey {
    #[default]
    Std,
    ReverseStd,
    Left,
    Right,
    Full,
}

/// A fine-tuning run. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Model: a Hugging Face folder, a `.gguf` file, or `smollm2` (the shipped SmolLM2-135M-Instruct,
    /// fetched and cached on first use). Default `smollm2`.
    pub model: String,
    /// Task: a shipped task name (`e2e_nlg`, `mathqa`, `xsum`, `cnn_dm`) or a data file. Default `e2e_nlg`.
    pub task: String,
    /// Format of `task` when it is a file (`gsm8k`, `mawps`, `e2e`, `alpaca`, `prompt_response`,
    /// `messages`, ...). Empty: inferred from the shipped task name.
    pub data_format: String,
    /// Prompt template: `chatml`, `llama2`, `plain`. Default `chatml` (SmolLM2-Instruct's).
    pub template: String,
    /// Fine-tuning method. Default `crosslore`.
    pub method: Method,
    /// Rank of the projection (GaLore/CrossLore) or of the adapters (LoRA/DoRA). Default 16.
    pub rank: usize,
    /// Steps between projection refreshes (`update_proj_gap`). Default 200.
    pub update_interval: usize,
    /// Scale of the projected update (galore-torch `scale`). Default 0.25.
    pub scale: f64,
    /// GaLore projection side rule. Default `std`.
    pub proj_type: ProjTypeKey,
    /// CrossLore residual ratio, a fraction of the matrix entries in [0, 1]. Default 0.012 (1.2 %).
    pub residual_ratio: f64,
    /// Steps before the residual index is chosen; 0 means `update_interval`. Default 0.
    pub residual_warmup: usize,
    /// Oversampling of randomized subspace iteration. Default 8.
    pub oversample: usize,
    /// Power iterations of randomized subspace iteration. Default 2.
    pub power_iters: usize,
    /// Warm-start RSI from the previous projector (beyond the paper). Default false.
    pub warm_start: bool,
    /// LoRA/DoRA scaling numerator (`lora_alpha`; scale = alpha / rank). Default 32.
    pub lora_alpha: f64,
    /// LoRA/DoRA dropout probability. Default 0.0.
    pub lora_dropout: f64,
    /// Target modules: `all-linear` or a comma-separated list (`q_proj,k_proj,...`). Default `all-linear`.
    pub target_modules: String,
    /// Peak learning rate. Default 1e-4.
    pub learning_rate: f64,
    /// Decoupled weight decay. Default 0.0.
    pub weight_decay: f64,
    /// Learning-rate schedule after warm-up. Default `cosine`.
    pub lr_scheduler: SchedulerKind,
    /// Linear warm-up steps. Default 0.
    pub warmup_steps: usize,
    /// Examples per micro-batch. Default 4.
    pub batch_size: usize,
    /// Micro-batches accumulated per optimizer step. Default 1.
    pub grad_accum: usize,
    /// Optimizer steps; 0 means derive from `epochs`. Default 30.
    pub max_steps: usize,
    /// Epochs over the training split, used when `max_steps` is 0. Default 1.
    pub epochs: usize,
    /// Maximum tokens per example (longer ones are truncated and counted). Default 128.
    pub max_len: usize,
    /// Clip the global gradient norm to this value; 0 disables. Default 1.0.
    pub max_grad_norm: f64,
    /// A step whose loss or gradient is NaN/Inf is skipped (weights and optimizer state
    /// untouched, counted in `metrics.jsonl` and the summary); this many consecutive skipped
    /// steps stop the run with an error, leaving the last checkpoint as it was. 1 stops at the
    /// first bad step. Default 5.
    pub max_bad_steps: usize,
    /// Seed for data order, initialisation, dropout and projections. Default 42.
    pub seed: u64,
    /// `cpu` or `cuda`. Default `cpu`.
    pub device: DeviceKind,
    /// `f32` or `bf16`. Default `f32`.
    pub dtype: DType,
    /// Update each layer's weights as soon as its gradients exist (segmented backward): gradient
    /// memory of one block instead of the whole model. With clipping on it sweeps the last
    /// micro-batch twice (exact global norm first), ~2x the backward time. Default false.
    pub layerwise: bool,
    /// Recompute each block's forward during the backward (less memory, more time). Default false.
    pub recompute: bool,
    /// `fused` (hand-written block backward with fused kernels) or `autograd` (candle autograd,
    /// the reference). Default `fused`.
    pub block_backward: BlockBackward,
    /// Write a checkpoint every N optimizer steps; 0 only at the end. Default 0.
    pub save_every: usize,
    /// Checkpoints kept in the run folder (older ones are deleted); 0 keeps all. Default 2.
    pub keep_checkpoints: usize,
    /// Continue from the newest checkpoint in the run folder, if there is one. Default false.
    pub resume: bool,
    /// Log a metrics line every N optimizer steps. Default 1.
    pub log_every: usize,
    /// Test examples evaluated before and after training; 0 skips evaluation. Default 16.
    pub eval_samples: usize,
    /// Maximum new tokens generated per evaluation example. Default 48.
    pub eval_max_new_tokens: usize,
    /// Run folder. Default `runs/<method>-<task>-<seed>`.
    pub output_dir: Option<PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: "smollm2".into(),
            task: "e2e_nlg".into(),
            data_format: String::new(),
            template: "chatml".into(),
            method: Method::Crosslore,
            rank: 16,
            update_interval: 200,
            scale: 0.25,
            proj_type: ProjTypeKey::Std,
            residual_ratio: 0.012,
            residual_warmup: 0,
            oversample: 8,
            power_iters: 2,
            warm_start: false,
            lora_alpha: 32.0,
            lora_dropout: 0.0,
            target_modules: "all-linear".into(),
            learning_rate: 1e-4,
            weight_decay: 0.0,
            lr_scheduler: SchedulerKind::Cosine,
            warmup_steps: 0,
            batch_size: 4,
            grad_accum: 1,
            max_steps: 30,
            epochs: 1,
            max_len: 128,
            max_grad_norm: 1.0,
            max_bad_steps: 5,
            seed: 42,
            device: DeviceKind::Cpu,
            dtype: DType::F32,
            layerwise: false,
            recompute: false,
            block_backward: BlockBackward::Fused,
            save_every: 0,
            keep_checkpoints: 2,
            resume: false,
            log_every: 1,
            eval_samples: 16,
            eval_max_new_tokens: 48,
            output_dir: None,
        }
    }
}

/// A configuration problem, naming the key (and file) and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: not valid TOML: {msg}")]
    Syntax { file: String, msg: String },
    #[error("{file}: unknown key `{key}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey {
        file: String,
        key: String,
        suggestion: Option<String>,
    },
    #[error("{file}: key `{key}`: {msg}")]
    BadValue {
        file: String,
        key: String,
        msg: String,
    },
    #[error("invalid override `{arg}`: expected key=value")]
    BadOverride { arg: String },
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl TrainConfig {
    /// The known keys, in declaration order.
    pub fn keys() -> Vec<String> {
        let mut table = toml::Table::try_from(Self::default()).unwrap_or_default();
        table.insert("output_dir".into(), toml::Value::String(String::new()));
        table.keys().cloned().collect()
    }

    /// Parses a TOML document (`file` names it in errors), then applies `overrides`
    /// (`key=value`, value in TOML syntax or a bare string), then validates.
    pub fn from_toml_str(
        text: &str,
        file: &str,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    file: file.into(),
                    msg: e.to_string(),
                })?;
        for arg in overrides {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| ConfigError::BadOverride { arg: arg.clone() })?;
            let (k, v) = (k.trim().replace('-', "_"), v.trim());
            let value = format!("x = {v}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("x"))
                .unwrap_or_else(|| toml::Value::String(v.to_string()));
            table.insert(k, value);
        }
        let known = Self::keys();
        for key in table.keys() {
            if !known.iter().any(|k| k == key) {
                let suggestion = known
                    .iter()
                    .map(|k| (edit_distance(key, k), k))
                    .filter(|(d, _)| *d <= 3)
                    .min()
                    .map(|(_, k)| k.clone());
                return Err(ConfigError::UnknownKey {
                    file: file.into(),
                    key: key.clone(),
                    suggestion,
                });
            }
        }
        // Deserialise key by key so a type error names its key.
        let mut merged = toml::Table::try_from(Self::default()).unwrap_or_default();
        for (k, v) in table {
            merged.insert(k, v);
        }
        let cfg: Self = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::BadValue {
                file: file.into(),
                key: "?".into(),
                msg: e.to_string(),
            })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Reads and validates a config file with command-line overrides.
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Checks ranges; the error names the key and the allowed range.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, msg: String| {
            Err(ConfigError::BadValue {
                file: file.into(),
                key: key.into(),
                msg,
            })
        };
        if self.rank == 0 {
            return bad("rank", "must be at least 1".into());
        }
        if self.update_interval == 0 {
            return bad("update_interval", "must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(
                "learning_rate",
                format!("must be a positive number, got {}", self.learning_rate),
            );
        }
        if !(0.0..=1.0).contains(&self.residual_ratio) {
            return bad(
                "residual_ratio",
                format!(
                    "must be in [0, 1] (a fraction: 0.012 = 1.2 %), got {}",
                    self.residual_ratio
                ),
            );
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad(
                "lora_dropout",
                format!("must be in [0, 1), got {}", self.lora_dropout),
            );
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return bad("scale", format!("must be positive, got {}", self.scale));
        }
        if self.weight_decay < 0.0 || !self.weight_decay.is_finite() {
            return bad(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            );
        }
        if self.max_grad_norm < 0.0 || !self.max_grad_norm.is_finite() {
            return bad(
                "max_grad_norm",
                format!(
                    "must be >= 0 (0 disables clipping), got {}",
                    self.max_grad_norm
                ),
            );
        }
        for (key, v) in [
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
            ("max_len", self.max_len),
            ("log_every", self.log_every),
            ("max_bad_steps", self.max_bad_steps),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.max_steps == 0 && self.epochs == 0 {
            return bad(
                "max_steps",
                "max_steps and epochs are both 0: nothing to train".into(),
            );
        }
        if !["chatml", "llama2", "plain"].contains(&self.template.as_str()) {
            return bad(
                "template",
                format!(
                    "expected one of chatml, llama2, plain; got `{}`",
                    self.template
                ),
            );
        }
        Ok(())
    }

    /// The run folder: `output_dir` or `runs/<method>-<task>-s<seed>`.
    pub fn run_dir(&self) -> PathBuf {
        self.output_dir.clone().unwrap_or_else(|| {
            let task = Path::new(&self.task)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let method = toml::Value::try_from(self.method)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            PathBuf::from("runs").join(format!("{method}-{task}-s{}", self.seed))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_from_empty_file() {
        let c = TrainConfig::from_toml_str("", "empty.toml", &[]).unwrap();
        assert_eq!(c, TrainConfig::default());
    }

    #[test]
    fn keys_and_overrides() {
        let c = TrainConfig::from_toml_str(
            "method = \"galore\"\nrank = 64\n",
            "a.toml",
            &[
                "learning_rate=3e-4".into(),
                "lr-scheduler=linear".into(),
                "layerwise=true".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.method, Method::Galore);
        assert_eq!(c.rank, 64);
        assert_eq!(c.learning_rate, 3e-4);
        assert_eq!(c.lr_scheduler, SchedulerKind::Linear);
        assert!(c.layerwise);
    }

    #[test]
    fn unknown_key_suggests() {
        let e = TrainConfig::from_toml_str("learnig_rate = 1e-3", "a.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.toml")
                && e.contains("learnig_rate")
                && e.contains("did you mean `learning_rate`"),
            "{e}"
        );
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        for (text, key) in [
            ("rank = 0", "rank"),
            ("learning_rate = -1.0", "learning_rate"),
            ("residual_ratio = 1.5", "residual_ratio"),
            ("batch_size = 0", "batch_size"),
            ("template = \"alpaca\"", "template"),
        ] {
            let e = TrainConfig::from_toml_str(text, "b.toml", &[])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("key `{key}`")) && e.contains("b.toml"),
                "{text}: {e}"
            );
        }
        let e = TrainConfig::from_toml_str("method = \"sgd\"", "c.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("sgd"), "{e}");
    }

    #[test]
    fn run_dir_default() {
        let c = TrainConfig::default();
        assert_eq!(c.run_dir(), PathBuf::from("runs/crosslore-e2e_nlg-s42"));
    }
}
