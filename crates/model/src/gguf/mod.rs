//! GGUF (llama.cpp) model files: a strict memory-mapped reader ([`reader`]), dequantization of
//! F32/F16/BF16/Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K ([`dequant`]), the tokenizer stored in the metadata
//! ([`tokenizer`]), llama.cpp -> Hugging Face naming, Q/K row order and config ([`mapping`]), and
//! [`load_llama`] putting it together (DESIGN.md §5: SmolLM2-135M-Instruct ships as a Q4_1 GGUF).

pub mod dequant;
pub mod dtype;
pub mod error;
pub mod llama;
pub mod mapping;
pub mod reader;
pub mod tokenizer;

pub use dtype::GgmlDType;
pub use error::{GgufError, Result};
pub use llama::{load_llama, GgufLlama};
pub use mapping::{hf_name, unpermute_rows, LlamaParams};
pub use reader::{GgufFile, MetadataValue, TensorInfo, TensorType};
