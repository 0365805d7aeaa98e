//! crosslore-model: a trainable LLaMA equal to transformers' `LlamaForCausalLM`, built only
//! from candle ops that have a backward, organised as blocks (embedding, decoder layers, final)
//! for segmented (layerwise) backward; LoRA and DoRA adapters; HF folder loading and export.

pub mod adapter_io;
pub mod block;
pub mod config;
pub mod ctx;
pub mod dora;
pub mod error;
pub mod export;
pub mod fetch;
pub mod fused;
pub mod generate;
pub mod gguf;
pub mod kv_cache;
pub mod layer;
pub mod linear;
pub mod loader;
pub mod lora;
pub mod loss;
pub mod model;
pub mod ops;
pub mod rope;
pub mod tokenizer;
pub mod weight;

pub use block::{Block, EmbeddingBlock, FinalBlock};
pub use config::{LlamaConfig, RopeScaling, TokenIds};
pub use ctx::ForwardCtx;
pub use dora::Dora;
pub use error::{ModelError, Result};
pub use layer::DecoderLayer;
pub use linear::{Adapter, Linear};
pub use lora::{AdapterConfig, AdapterKind, Lora, Proj, TargetModules};
pub use loss::{causal_lm_loss, causal_lm_loss_sum, IGNORE_INDEX};
pub use model::{Llama, LoadOptions, Training};
pub use weight::Weight;
