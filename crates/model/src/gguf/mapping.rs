//! llama.cpp -> Hugging Face conventions for LLaMA: tensor names, the Q/K row order, and an
//! HF-style `config.json` built from the `llama.*` metadata.

use serde_json::{json, Value};

use super::error::{GgufError, Result};
use super::reader::GgufFile;

/// Which projection a tensor is, when its rows must be un-permuted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeRows {
    /// `attn_q`: permuted with `n_head` heads.
    Query,
    /// `attn_k`: permuted with `n_kv_head` heads.
    Key,
}

/// A GGUF tensor's Hugging Face name and whether its rows need un-permuting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfTensor {
    pub name: String,
    pub rope_rows: Option<RopeRows>,
}

/// The Hugging Face `LlamaForCausalLM` name of a llama.cpp tensor name; `None` for names with no
/// HF counterpart.
pub fn hf_name(gguf_name: &str) -> Option<HfTensor> {
    let plain = |n: &str| {
        Some(HfTensor {
            name: n.to_string(),
            rope_rows: None,
        })
    };
    match gguf_name {
        "token_embd.weight" => return plain("model.embed_tokens.weight"),
        "output_norm.weight" => return plain("model.norm.weight"),
        "output.weight" => return plain("lm_head.weight"),
        _ => {}
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (hf, rope_rows) = match suffix {
        "attn_q.weight" => ("self_attn.q_proj.weight", Some(RopeRows::Query)),
        "attn_k.weight" => ("self_attn.k_proj.weight", Some(RopeRows::Key)),
        "attn_v.weight" => ("self_attn.v_proj.weight", None),
        "attn_output.weight" => ("self_attn.o_proj.weight", None),
        "attn_q.bias" => ("self_attn.q_proj.bias", Some(RopeRows::Query)),
        "attn_k.bias" => ("self_attn.k_proj.bias", Some(RopeRows::Key)),
        "attn_v.bias" => ("self_attn.v_proj.bias", None),
        "attn_output.bias" => ("self_attn.o_proj.bias", None),
        "ffn_gate.weight" => ("mlp.gate_proj.weight", None),
        "ffn_up.weight" => ("mlp.up_proj.weight", None),
        "ffn_down.weight" => ("mlp.down_proj.weight", None),
        "attn_norm.weight" => ("input_layernorm.weight", None),
        "ffn_norm.weight" => ("post_attention_layernorm.weight", None),
        _ => return None,
    };
    Some(HfTensor {
        name: format!("model.layers.{layer}.{hf}"),
        rope_rows,
    })
}

/// Undo llama.cpp's Q/K row permutation (the inverse of `permute` in `convert_hf_to_gguf.py`):
/// llama.cpp stores, within each head of `2*half` rows, the rows interleaved
/// (`gguf[h, 2j + k] = hf[h, k*half + j]`, k in {0, 1}) so that its RoPE rotates adjacent pairs;
/// Hugging Face rotates the two halves of each head. `data` is row-major `[rows, cols]` (cols = 1
/// for a bias); returns the Hugging Face order.
pub fn unpermute_rows(
    data: &[f32],
    rows: usize,
    n_head: usize,
) -> std::result::Result<Vec<f32>, String> {
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) || !data.len().is_multiple_of(rows.max(1)) {
        return Err(format!(
            "cannot un-permute {rows} rows with {n_head} heads: rows must be a multiple of 2 x heads"
        ));
    }
    let cols = data.len() / rows;
    let head_rows = rows / n_head;
    let half = head_rows / 2;
    let mut out = vec![0f32; data.len()];
    // gguf view: [n_head, half, 2, cols]; hf view: [n_head, 2, half, cols]
    for h in 0..n_head {
        for j in 0..half {
            for k in 0..2 {
                let src = (h * head_rows + 2 * j + k) * cols;
                let dst = (h * head_rows + k * half + j) * cols;
                out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
            }
        }
    }
    Ok(out)
}

/// The model hyper-parameters read from `llama.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaParams {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
    /// HF `rope_scaling` (`null` when the model has none).
    pub rope_scaling: Value,
}

/// The shortest decimal that rounds to the stored f32 (GGUF stores `1e-5` as the f32
/// 9.99999974e-6; HF configs hold `1e-05`).
fn f32_decimal(v: f64) -> f64 {
    let s = format!("{}", v as f32);
    s.parse().unwrap_or(v)
}

impl LlamaParams {
    /// Read from a GGUF with `general.architecture = "llama"`.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.architecture()?;
        if arch != "llama" {
            return Err(GgufError::UnsupportedModel {
                path: file.path().to_path_buf(),
                detail: format!("general.architecture = \"{arch}\", expected \"llama\""),
            });
        }
        let uint = |key: &str, expected: &'static str| -> Result<usize> {
            let k = format!("llama.{key}");
            let v = file.require(&k, expected, file.get_u64(&k))?;
            usize::try_from(v).map_err(|_| GgufError::Malformed {
                path: file.path().to_path_buf(),
                what: format!("metadata '{k}'"),
                detail: format!("{v} does not fit usize"),
            })
        };
        let opt_uint = |key: &str| -> Result<Option<usize>> {
            Ok(file.get_u64(&format!("llama.{key}"))?.map(|v| v as usize))
        };
        let hidden = uint("embedding_length", "the hidden size")?;
        let n_head = uint("attention.head_count", "the number of attention heads")?;
        let n_kv = opt_uint("attention.head_count_kv")?.unwrap_or(n_head);
        if n_head == 0 || n_kv == 0 || n_head % n_kv != 0 {
            return Err(GgufError::Malformed {
                path: file.path().to_path_buf(),
                what: "metadata 'llama.attention.head_count(_kv)'".into(),
                detail: format!(
                    "{n_head} heads / {n_kv} KV heads: expected KV heads > 0 dividing the heads"
                ),
            });
        }
        let head_dim = match opt_uint("attention.key_length")?.or(opt_uint("rope.dimension_count")?)
        {
            Some(d) => d,
            None => hidden / n_head,
        };
        let eps_key = "llama.attention.layer_norm_rms_epsilon";
        let eps = file.require(eps_key, "the RMSNorm epsilon", file.get_f64(eps_key))?;
        let theta = file.get_f64("llama.rope.freq_base")?.unwrap_or(10000.0);
        let vocab_size = match opt_uint("vocab_size")? {
            Some(v) => v,
            None => match file.get_array("tokenizer.ggml.tokens")? {
                Some(t) => t.len(),
                None => file
                    .tensor_info("token_embd.weight")
                    .map(|t| t.dims.get(1).copied().unwrap_or(0) as usize)
                    .ok_or_else(|| GgufError::MissingKey {
                        path: file.path().to_path_buf(),
                        key: "llama.vocab_size".into(),
                        expected:
                            "the vocabulary size (or tokenizer.ggml.tokens / token_embd.weight)",
                    })?,
            },
        };
        let rope_scaling = match file.get_str("llama.rope.scaling.type")? {
            None | Some("none") => Value::Null,
            Some(kind @ ("linear" | "yarn")) => {
                let factor = file.require(
                    "llama.rope.scaling.factor",
                    "the RoPE scaling factor",
                    file.get_f64("llama.rope.scaling.factor"),
                )?;
                let mut v = json!({"rope_type": kind, "factor": f32_decimal(factor)});
                if let Some(orig) = opt_uint("rope.scaling.original_context_length")? {
                    v["original_max_position_embeddings"] = json!(orig);
                }
                v
            }
            Some(other) => {
                return Err(GgufError::UnsupportedModel {
                    path: file.path().to_path_buf(),
                    detail: format!(
                        "llama.rope.scaling.type = \"{other}\": supported are none, linear, yarn"
                    ),
                })
            }
        };
        if file.tensor_info("rope_freqs.weight").is_some() {
            return Err(GgufError::UnsupportedModel {
                path: file.path().to_path_buf(),
                detail: "tensor 'rope_freqs.weight' (llama3-style RoPE frequency scaling) is not supported".into(),
            });
        }
        let token_id =
            |key: &str| -> Result<Option<u32>> { Ok(file.get_u64(key)?.map(|v| v as u32)) };
        Ok(Self {
            hidden_size: hidden,
            intermediate_size: uint("feed_forward_length", "the MLP size")?,
            num_hidden_layers: uint("block_count", "the number of layers")?,
            num_attention_heads: n_head,
            num_key_value_heads: n_kv,
            head_dim,
            rms_norm_eps: f32_decimal(eps),
            rope_theta: f32_decimal(theta),
            vocab_size,
            max_position_embeddings: opt_uint("context_length")?.unwrap_or(2048),
            tie_word_embeddings: file.tensor_info("output.weight").is_none(),
            bos_token_id: token_id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: token_id("tokenizer.ggml.eos_token_id")?,
            pad_token_id: token_id("tokenizer.ggml.padding_token_id")?,
            rope_scaling,
        })
    }

    /// A Hugging Face `LlamaForCausalLM` `config.json`. `torch_dtype` is e.g. "float32".
    pub fn to_hf_config(&self, torch_dtype: &str) -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "initializer_range": 0.02,
            "pretraining_tp": 1,
            "use_cache": true,
            "torch_dtype": torch_dtype,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let q = hf_name("blk.12.attn_q.weight").unwrap();
        assert_eq!(q.name, "model.layers.12.self_attn.q_proj.weight");
        assert_eq!(q.rope_rows, Some(RopeRows::Query));
        assert_eq!(
            hf_name("blk.0.ffn_norm.weight").unwrap().name,
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(hf_name("output.weight").unwrap().name, "lm_head.weight");
        assert!(hf_name("blk.x.attn_q.weight").is_none());
        assert!(hf_name("rope_freqs.weight").is_none());
    }

    /// The forward permutation of convert_hf_to_gguf.py, written independently as index maps:
    /// `reshape(n_head, 2, half, cols).swapaxes(1, 2)`.
    fn permute(data: &[f32], rows: usize, n_head: usize) -> Vec<f32> {
        let cols = data.len() / rows;
        let half = rows / n_head / 2;
        let mut out = Vec::with_capacity(data.len());
        for h in 0..n_head {
            for j in 0..half {
                for k in 0..2 {
                    let r = h * 2 * half + k * half + j;
                    out.extend_from_slice(&data[r * cols..(r + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_permute() {
        for (rows, cols, heads) in [(8, 3, 2), (12, 1, 3), (16, 5, 1), (4, 2, 1)] {
            let x: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let p = permute(&x, rows, heads);
            assert_ne!(p, x, "permutation must move rows for ({rows}, {heads})");
            assert_eq!(unpermute_rows(&p, rows, heads).unwrap(), x);
        }
        assert!(unpermute_rows(&[0.0; 6], 6, 2).is_err());
    }
}
