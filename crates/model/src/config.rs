//! `LlamaConfig`: the Hugging Face `config.json` of a `LlamaForCausalLM`, parsed and validated.

use std::path::Path;

use candle_core::DType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ModelError, Result};

/// RoPE frequency scaling (`rope_scaling` in `config.json`). Types other than these are refused
/// with an error naming the type, rather than silently computing wrong positions.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Position interpolation: every inverse frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama-3.1 band-wise scaling (transformers `_compute_llama3_parameters`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// Token ids such as `eos_token_id` may be one id or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn ids(&self) -> Vec<u32> {
        match self {
            TokenIds::One(i) => vec![*i],
            TokenIds::Many(v) => v.clone(),
        }
    }
}

/// Raw `config.json` as written by transformers (only the fields this crate reads are typed;
/// everything else is kept in `extra` and written back on export).
#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    vocab_size: Option<usize>,
    tie_word_embeddings: Option<bool>,
    max_position_embeddings: Option<usize>,
    bos_token_id: Option<TokenIds>,
    eos_token_id: Option<TokenIds>,
    torch_dtype: Option<String>,
    dtype: Option<String>,
    hidden_act: Option<String>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    model_type: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// A validated LLaMA configuration (field names and defaults as transformers' `LlamaConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads` (no GQA).
    pub num_key_value_heads: usize,
    /// Defaults to `hidden_size / num_attention_heads`.
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub vocab_size: usize,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    pub bos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
    /// `torch_dtype` (or transformers >= 4.56's `dtype`) as written, e.g. "bfloat16".
    pub torch_dtype: Option<String>,
    /// Unread fields of the original file, written back unchanged on export.
    pub extra: Map<String, Value>,
}

fn req(origin: &str, field: &str, v: Option<usize>) -> Result<usize> {
    match v {
        Some(0) => Err(ModelError::config(origin, field, "must be > 0, got 0")),
        Some(x) => Ok(x),
        None => Err(ModelError::config(
            origin,
            field,
            "required positive integer is missing",
        )),
    }
}

fn num(origin: &str, obj: &Map<String, Value>, key: &str) -> Result<f64> {
    let field = format!("rope_scaling.{key}");
    obj.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| ModelError::config(origin, &field, "required number is missing"))
}

fn parse_rope_scaling(origin: &str, v: &Value) -> Result<Option<RopeScaling>> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => {
            return Err(ModelError::config(
                origin,
                "rope_scaling",
                format!("expected an object or null, got {v}"),
            ))
        }
    };
    let ty = obj
        .get("rope_type")
        .or_else(|| obj.get("type"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ModelError::config(origin, "rope_scaling.rope_type", "missing (or `type`)")
        })?;
    let factor = || -> Result<f64> {
        let f = num(origin, obj, "factor")?;
        if f.is_finite() && f > 0.0 {
            Ok(f)
        } else {
            Err(ModelError::config(
                origin,
                "rope_scaling.factor",
                format!("must be a positive number, got {f}"),
            ))
        }
    };
    match ty {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor: factor()? })),
        "llama3" => {
            let low = num(origin, obj, "low_freq_factor")?;
            let high = num(origin, obj, "high_freq_factor")?;
            if !(low > 0.0 && high > low) {
                return Err(ModelError::config(
                    origin,
                    "rope_scaling.high_freq_factor",
                    format!("need 0 < low_freq_factor < high_freq_factor, got {low} and {high}"),
                ));
            }
            let omp = obj
                .get("original_max_position_embeddings")
                .and_then(Value::as_u64)
                .filter(|&x| x > 0)
                .ok_or_else(|| {
                    ModelError::config(
                        origin,
                        "rope_scaling.original_max_position_embeddings",
                        "required positive integer is missing",
                    )
                })?;
            Ok(Some(RopeScaling::Llama3 {
                factor: factor()?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: omp as usize,
            }))
        }
        other => Err(ModelError::config(
            origin,
            "rope_scaling.rope_type",
            format!("unsupported type `{other}` (supported: default, linear, llama3)"),
        )),
    }
}

/// (config keys, the type expected, the check of a value).
type TypeCheck<'a> = (&'a [&'a str], &'a str, &'a dyn Fn(&Value) -> bool);
/// Check the JSON types of the fields this crate reads, so that a wrong type is reported with
/// its field name (serde's `from_value` error does not say which field).
fn check_field_types(origin: &str, value: &Value) -> Result<()> {
    let obj = value.as_object().ok_or_else(|| {
        ModelError::config(origin, "<root>", "expected a JSON object of config fields")
    })?;
    let ids = |v: &Value| {
        v.as_u64().is_some_and(|x| x <= u32::MAX as u64)
            || v.as_array().is_some_and(|a| {
                a.iter()
                    .all(|x| x.as_u64().is_some_and(|x| x <= u32::MAX as u64))
            })
    };
    let checks: [TypeCheck; 5] = [
        (
            &[
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "head_dim",
                "vocab_size",
                "max_position_embeddings",
            ],
            "a non-negative integer",
            &|v: &Value| v.as_u64().is_some_and(|x| usize::try_from(x).is_ok()),
        ),
        (&["rms_norm_eps", "rope_theta"], "a number", &|v: &Value| {
            v.is_number()
        }),
        (
            &["tie_word_embeddings", "attention_bias", "mlp_bias"],
            "true or false",
            &|v: &Value| v.is_boolean(),
        ),
        (
            &["torch_dtype", "dtype", "hidden_act", "model_type"],
            "a string",
            &|v: &Value| v.is_string(),
        ),
        (
            &["bos_token_id", "eos_token_id"],
            "a token id or a list of token ids",
            &ids,
        ),
    ];
    for (fields, what, ok) in checks {
        for f in fields {
            match obj.get(*f) {
                None | Some(Value::Null) => {}
                Some(v) if ok(v) => {}
                Some(v) => {
                    return Err(ModelError::config(
                        origin,
                        f,
                        format!("expected {what}, got {v}"),
                    ))
                }
            }
        }
    }
    Ok(())
}

impl LlamaConfig {
    /// Parse and validate a `config.json` value. `origin` names where it came from (a file path,
    /// or e.g. "GGUF metadata") for error messages.
    pub fn from_json_value(value: Value, origin: &str) -> Result<Self> {
        check_field_types(origin, &value)?;
        let raw: RawConfig = serde_json::from_value(value).map_err(|e| ModelError::Json {
            origin: origin.to_string(),
            source: e,
        })?;
        if let Some(mt) = &raw.model_type {
            if mt != "llama" && mt != "mistral" {
                return Err(ModelError::config(
                    origin,
                    "model_type",
                    format!("expected \"llama\", got \"{mt}\""),
                ));
            }
        }
        if let Some(act) = &raw.hidden_act {
            if act != "silu" {
                return Err(ModelError::config(
                    origin,
                    "hidden_act",
                    format!("only \"silu\" (SwiGLU) is supported, got \"{act}\""),
                ));
            }
        }
        for (field, v) in [
            ("attention_bias", raw.attention_bias),
            ("mlp_bias", raw.mlp_bias),
        ] {
            if v == Some(true) {
                return Err(ModelError::config(
                    origin,
                    field,
                    "biases in linear layers are not supported (expected false)",
                ));
            }
        }
        let hidden_size = req(origin, "hidden_size", raw.hidden_size)?;
        let num_attention_heads = req(origin, "num_attention_heads", raw.num_attention_heads)?;
        let num_key_value_heads = match raw.num_key_value_heads {
            None => num_attention_heads,
            v => req(origin, "num_key_value_heads", v)?,
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(ModelError::config(
                origin,
                "num_key_value_heads",
                format!("must divide num_attention_heads = {num_attention_heads}, got {num_key_value_heads}"),
            ));
        }
        let head_dim = match raw.head_dim {
            Some(d) => req(origin, "head_dim", Some(d))?,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(ModelError::config(
                        origin,
                        "head_dim",
                        format!("absent, and hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}"),
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(ModelError::config(
                origin,
                "head_dim",
                format!("RoPE needs an even head_dim, got {head_dim}"),
            ));
        }
        let rms_norm_eps = raw.rms_norm_eps.unwrap_or(1e-6);
        if !(rms_norm_eps.is_finite() && rms_norm_eps >= 0.0) {
            return Err(ModelError::config(
                origin,
                "rms_norm_eps",
                format!("must be a finite number >= 0, got {rms_norm_eps}"),
            ));
        }
        let rope_theta = raw.rope_theta.unwrap_or(10000.0);
        if !(rope_theta.is_finite() && rope_theta > 1.0) {
            return Err(ModelError::config(
                origin,
                "rope_theta",
                format!("must be a finite number > 1, got {rope_theta}"),
            ));
        }
        let rope_scaling = match &raw.rope_scaling {
            None => None,
            Some(v) => parse_rope_scaling(origin, v)?,
        };
        let cfg = LlamaConfig {
            hidden_size,
            intermediate_size: req(origin, "intermediate_size", raw.intermediate_size)?,
            num_hidden_layers: req(origin, "num_hidden_layers", raw.num_hidden_layers)?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            vocab_size: req(origin, "vocab_size", raw.vocab_size)?,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            bos_token_id: raw.bos_token_id,
            eos_token_id: raw.eos_token_id,
            torch_dtype: raw.torch_dtype.or(raw.dtype),
            extra: raw.extra,
        };
        Ok(cfg)
    }

    /// Read and validate `config.json` from a file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, "read", e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| ModelError::Json {
            origin: path.display().to_string(),
            source: e,
        })?;
        Self::from_json_value(value, &path.display().to_string())
    }

    /// Query heads per KV head (GQA group size).
    pub fn n_rep(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// The checkpoint's declared dtype, if it is one this crate computes in.
    pub fn declared_dtype(&self) -> Option<DType> {
        match self.torch_dtype.as_deref() {
            Some("float32") => Some(DType::F32),
            Some("bfloat16") => Some(DType::BF16),
            Some("float16") => Some(DType::F16),
            _ => None,
        }
    }

    /// The Hugging Face `config.json` for this configuration, with `torch_dtype` set to `dtype`.
    pub fn to_json_value(&self, dtype: DType) -> Value {
        let mut m = self.extra.clone();
        for k in ["torch_dtype", "dtype", "transformers_version"] {
            m.remove(k);
        }
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put("architectures", serde_json::json!(["LlamaForCausalLM"]));
        put("model_type", Value::from("llama"));
        put("hidden_act", Value::from("silu"));
        put("attention_bias", Value::from(false));
        put("mlp_bias", Value::from(false));
        put("hidden_size", self.hidden_size.into());
        put("intermediate_size", self.intermediate_size.into());
        put("num_hidden_layers", self.num_hidden_layers.into());
        put("num_attention_heads", self.num_attention_heads.into());
        put("num_key_value_heads", self.num_key_value_heads.into());
        put("head_dim", self.head_dim.into());
        put("rms_norm_eps", self.rms_norm_eps.into());
        put("rope_theta", self.rope_theta.into());
        let rs = match &self.rope_scaling {
            None => Value::Null,
            Some(RopeScaling::Linear { factor }) => {
                serde_json::json!({"rope_type": "linear", "factor": factor})
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => serde_json::json!({
                "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
        };
        put("rope_scaling", rs);
        put("vocab_size", self.vocab_size.into());
        put("tie_word_embeddings", self.tie_word_embeddings.into());
        put(
            "max_position_embeddings",
            self.max_position_embeddings.into(),
        );
        let ids = |t: &Option<TokenIds>| match t {
            None => Value::Null,
            Some(t) => serde_json::to_value(t).unwrap_or(Value::Null),
        };
        put("bos_token_id", ids(&self.bos_token_id));
        put("eos_token_id", ids(&self.eos_token_id));
        let dt = match dtype {
            DType::BF16 => "bfloat16",
            DType::F16 => "float16",
            _ => "float32",
        };
        put("torch_dtype", Value::from(dt));
        Value::Object(m)
    }

    /// Expected HF tensor names and shapes of the base model (`lm_head.weight` only if untied).
    /// Allocates the whole list: loaders use [`LlamaConfig::expected_tensor_iter`] instead, so
    /// that a file claiming a huge layer count fails at its first missing tensor.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        self.expected_tensor_iter().collect()
    }

    /// Lazy form of [`LlamaConfig::expected_tensors`], in load order.
    pub fn expected_tensor_iter(&self) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
        let (h, v) = (self.hidden_size, self.vocab_size);
        let head = (!self.tie_word_embeddings).then(|| ("lm_head.weight".to_string(), vec![v, h]));
        std::iter::once(("model.embed_tokens.weight".to_string(), vec![v, h]))
            .chain((0..self.num_hidden_layers).flat_map(move |l| self.layer_tensors(l)))
            .chain(std::iter::once(("model.norm.weight".to_string(), vec![h])))
            .chain(head)
    }

    /// The nine tensors of decoder layer `l`, names and shapes.
    pub fn layer_tensors(&self, l: usize) -> Vec<(String, Vec<usize>)> {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let p = format!("model.layers.{l}");
        vec![
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.self_attn.q_proj.weight"), vec![q, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, q]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            (format!("{p}.mlp.gate_proj.weight"), vec![i, h]),
            (format!("{p}.mlp.up_proj.weight"), vec![i, h]),
            (format!("{p}.mlp.down_proj.weight"), vec![h, i]),
        ]
    }

    /// Expected shape of one base tensor by HF name (`None` for a name the model does not have).
    pub fn expected_shape(&self, name: &str) -> Option<Vec<usize>> {
        let (h, v) = (self.hidden_size, self.vocab_size);
        match name {
            "model.embed_tokens.weight" => return Some(vec![v, h]),
            "model.norm.weight" => return Some(vec![h]),
            "lm_head.weight" if !self.tie_word_embeddings => return Some(vec![v, h]),
            _ => {}
        }
        let rest = name.strip_prefix("model.layers.")?;
        let l: usize = rest.split('.').next()?.parse().ok()?;
        if l >= self.num_hidden_layers {
            return None;
        }
        self.layer_tensors(l)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }
}
