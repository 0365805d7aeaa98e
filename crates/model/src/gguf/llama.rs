//! Load a LLaMA-architecture GGUF as Hugging Face-layout tensors + config + tokenizer.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use tokenizers::Tokenizer;

use super::error::{GgufError, Result};
use super::mapping::{hf_name, unpermute_rows, LlamaParams, RopeRows};
use super::reader::GgufFile;
use super::tokenizer::{chat_template, tokenizer_from_gguf};

/// A LLaMA model read from a GGUF file, converted to Hugging Face conventions.
#[derive(Debug)]
pub struct GgufLlama {
    /// Hugging Face `config.json` of `LlamaForCausalLM`.
    pub config: Value,
    /// The same values, typed.
    pub params: LlamaParams,
    /// Hugging Face names -> dequantized tensors (Q/K rows in Hugging Face order). No
    /// `lm_head.weight` when `tie_word_embeddings`.
    pub tensors: HashMap<String, Tensor>,
    pub tokenizer: Tokenizer,
    /// `tokenizer.chat_template` (Jinja), when present.
    pub chat_template: Option<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        DType::F64 => "float64",
        _ => "float32",
    }
}

/// The Hugging Face shape each tensor must have.
fn expected_shape(p: &LlamaParams, hf: &str) -> Option<Vec<usize>> {
    let (h, v, f) = (p.hidden_size, p.vocab_size, p.intermediate_size);
    let q = p.num_attention_heads * p.head_dim;
    let kv = p.num_key_value_heads * p.head_dim;
    let suffix = hf
        .rsplit_once("layers.")
        .map_or(hf, |(_, s)| s.split_once('.').map_or(s, |(_, s)| s));
    Some(match suffix {
        "model.embed_tokens.weight" | "lm_head.weight" => vec![v, h],
        "model.norm.weight" | "input_layernorm.weight" | "post_attention_layernorm.weight" => {
            vec![h]
        }
        "self_attn.q_proj.weight" => vec![q, h],
        "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => vec![kv, h],
        "self_attn.o_proj.weight" => vec![h, q],
        "self_attn.q_proj.bias" => vec![q],
        "self_attn.k_proj.bias" | "self_attn.v_proj.bias" => vec![kv],
        "self_attn.o_proj.bias" => vec![h],
        "mlp.gate_proj.weight" | "mlp.up_proj.weight" => vec![f, h],
        "mlp.down_proj.weight" => vec![h, f],
        _ => return None,
    })
}

/// Names every LLaMA checkpoint must contain.
/// The tensors a LLaMA with `p`'s layout needs, as (Hugging Face name, GGUF name), lazily: a
/// file whose `llama.block_count` is absurd (`u32::MAX`) fails at its first missing layer
/// instead of allocating billions of names first (fuzz finding,
/// `fuzz/oom-candidates/gguf-last-input`).
fn required_names(p: &LlamaParams) -> impl Iterator<Item = (String, String)> + '_ {
    const PER_LAYER: [(&str, &str); 9] = [
        ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"),
        ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
        ("input_layernorm.weight", "attn_norm.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ];
    let head = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
    ]
    .into_iter()
    .chain((!p.tie_word_embeddings).then_some(("lm_head.weight", "output.weight")))
    .map(|(h, g)| (h.to_string(), g.to_string()));
    let layers = (0..p.num_hidden_layers).flat_map(|i| {
        PER_LAYER
            .iter()
            .map(move |(h, g)| (format!("model.layers.{i}.{h}"), format!("blk.{i}.{g}")))
    });
    head.chain(layers)
}

/// Open a LLaMA GGUF, dequantize every tensor to f32, un-permute Q/K rows to Hugging Face order,
/// cast to `dtype` and place on `device`; rebuild the tokenizer and an HF `config.json`.
pub fn load_llama(path: impl AsRef<Path>, device: &Device, dtype: DType) -> Result<GgufLlama> {
    let file = GgufFile::open(path)?;
    let params = LlamaParams::from_gguf(&file)?;
    let path = file.path().to_path_buf();
    let mut tensors = HashMap::with_capacity(file.tensors().len());
    for info in file.tensors() {
        let hf = hf_name(&info.name).ok_or_else(|| GgufError::UnexpectedTensor {
            path: path.clone(),
            name: info.name.clone(),
            detail: "no Hugging Face LLaMA counterpart".into(),
        })?;
        if hf.name.contains("layers.") {
            let layer: Option<usize> = hf.name.split('.').nth(2).and_then(|s| s.parse().ok());
            if layer.is_none_or(|l| l >= params.num_hidden_layers) {
                return Err(GgufError::UnexpectedTensor {
                    path: path.clone(),
                    name: info.name.clone(),
                    detail: format!(
                        "layer index beyond llama.block_count = {}",
                        params.num_hidden_layers
                    ),
                });
            }
        }
        let shape = info.shape();
        let expected = expected_shape(&params, &hf.name);
        if expected.as_ref() != Some(&shape) {
            return Err(GgufError::Shape {
                path: path.clone(),
                tensor: info.name.clone(),
                found: shape,
                expected: format!("{expected:?} (from the llama.* metadata)"),
            });
        }
        let (_, mut data) = file.tensor_f32(&info.name)?;
        if let Some(rows) = hf.rope_rows {
            let heads = match rows {
                RopeRows::Query => params.num_attention_heads,
                RopeRows::Key => params.num_key_value_heads,
            };
            data = unpermute_rows(&data, shape[0], heads).map_err(|detail| GgufError::Shape {
                path: path.clone(),
                tensor: info.name.clone(),
                found: shape.clone(),
                expected: detail,
            })?;
        }
        let candle = |source| GgufError::Candle {
            path: path.clone(),
            tensor: info.name.clone(),
            source: Box::new(source),
        };
        let t = Tensor::from_vec(data, shape.as_slice(), &Device::Cpu).map_err(candle)?;
        let t = t
            .to_dtype(dtype)
            .and_then(|t| t.to_device(device))
            .map_err(candle)?;
        tensors.insert(hf.name, t);
    }
    for (hf, gguf) in required_names(&params) {
        if !tensors.contains_key(&hf) {
            let name = format!(
                "{gguf} (= {hf}; llama.block_count = {})",
                params.num_hidden_layers
            );
            return Err(GgufError::MissingTensor { path, name });
        }
    }
    let tokenizer = tokenizer_from_gguf(&file)?;
    let chat_template = chat_template(&file)?;
    Ok(GgufLlama {
        config: params.to_hf_config(dtype_name(dtype)),
        bos_id: params.bos_token_id,
        eos_id: params.eos_token_id,
        params,
        tensors,
        tokenizer,
        chat_template,
    })
}
