//! A tiny random LLaMA (GQA, tied embeddings) and a synthetic encoded dataset, built in code.
#![allow(dead_code)]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use crosslore_data::Encoded;
use crosslore_linalg::Rng;
use crosslore_model::{Llama, LlamaConfig, LoadOptions};
use crosslore_train::config::Method;
use crosslore_train::run::load_options;
use crosslore_train::TrainConfig;

pub const VOCAB: usize = 64;

pub fn tiny_config() -> LlamaConfig {
    let v = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 4,
        "vocab_size": VOCAB,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": true,
        "max_position_embeddings": 128,
    });
    LlamaConfig::from_json_value(v, "tiny").unwrap()
}

/// Seeded random weights: N(0, 0.2^2) for matrices, 1 + N(0, 0.05^2) for norms.
pub fn tiny_tensors(cfg: &LlamaConfig, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = Rng::new(seed);
    let mut out = HashMap::new();
    for (name, shape) in cfg.expected_tensors() {
        let n: usize = shape.iter().product();
        let vals: Vec<f32> = rng
            .normal_vec(n)
            .into_iter()
            .map(|x| {
                if shape.len() == 1 {
                    1.0 + 0.05 * x
                } else {
                    0.2 * x
                }
            })
            .collect();
        out.insert(name, Tensor::from_vec(vals, shape, &Device::Cpu).unwrap());
    }
    out
}

/// The tiny model loaded as `cfg`'s method needs it (full or adapters).
pub fn tiny_model(cfg: &TrainConfig) -> Llama {
    let c = tiny_config();
    let opts: LoadOptions = load_options(cfg).unwrap();
    Llama::from_tensors(c.clone(), tiny_tensors(&c, 7), &opts).unwrap()
}

/// `n` examples of 6..=13 tokens, the first 3 positions masked as prompt. The targets follow a
/// learnable rule (next = previous + 1 mod vocab) so that the loss can go down.
pub fn dataset(n: usize, seed: u64) -> Vec<Encoded> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let len = 6 + rng.below(8) as usize;
            let start = rng.below(VOCAB as u64) as u32;
            let ids: Vec<u32> = (0..len)
                .map(|i| (start + i as u32) % VOCAB as u32)
                .collect();
            Encoded::from_ids(ids, 3)
        })
        .collect()
}

/// Small settings for the tiny model: rank 4 (<= every matrix's min dim 8; one head of 4 rows
/// for cross-head), projection refresh every 2 steps, residual after 2 steps, lr 1e-2.
pub fn tiny_train_config(method: Method) -> TrainConfig {
    TrainConfig {
        method,
        rank: 4,
        update_interval: 2,
        scale: 1.0,
        learning_rate: 1e-2,
        lora_alpha: 8.0,
        warmup_steps: 1,
        batch_size: 4,
        grad_accum: 1,
        max_steps: 4,
        max_len: 32,
        max_grad_norm: 0.0,
        oversample: 2,
        power_iters: 1,
        residual_ratio: 0.05,
        seed: 3,
        ..TrainConfig::default()
    }
}

/// All trainable tensors by name, as f32 host tensors.
pub fn weights(params: &[(String, candle_core::Var)]) -> Vec<(String, Tensor)> {
    params
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                v.as_tensor().to_dtype(DType::F32).unwrap().copy().unwrap(),
            )
        })
        .collect()
}

/// `max |a - b| / max |b|` over one tensor.
pub fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    let s = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let (d, s) = (d.to_scalar::<f32>().unwrap(), s.to_scalar::<f32>().unwrap());
    if s == 0.0 {
        d
    } else {
        d / s
    }
}

/// Largest relative difference over all named tensors (same names in the same order).
pub fn max_rel_diff(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> (f32, String) {
    assert_eq!(a.len(), b.len());
    let mut worst = (0f32, String::new());
    for ((na, ta), (nb, tb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        let r = rel_diff(ta, tb);
        if r > worst.0 {
            worst = (r, na.clone());
        }
    }
    worst
}

pub fn bitwise_equal(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((na, ta), (nb, tb))| {
            let bits = |t: &Tensor| -> Vec<u32> {
                let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                v.into_iter().map(f32::to_bits).collect()
            };
            na == nb && bits(ta) == bits(tb)
        })
}

/// Words of the E2E meaning representations (the rest maps to [UNK]).
pub const WORDS: &str = "name eatType food priceRange customer rating area familyFriendly near \
    restaurant pub coffee shop the a is of in and with it The yes no city centre riverside \
    French Italian English Chinese Indian Japanese cheap moderate high average low 5 1 3 out";

/// The tiny model (adamw load) saved as a Hugging Face folder with a word-level tokenizer.
pub fn write_tiny_folder(dir: &std::path::Path) {
    let cfg = tiny_train_config(Method::Adamw);
    let model = tiny_model(&cfg);
    model.save_hf_folder(dir, DType::F32).unwrap();
    let mut vocab = serde_json::Map::new();
    for (i, w) in ["[UNK]", "<|im_end|>", "<|im_start|>"]
        .into_iter()
        .chain(WORDS.split_whitespace())
        .enumerate()
    {
        vocab.insert(w.to_string(), serde_json::json!(i));
    }
    assert!(vocab.len() <= VOCAB);
    let special = |id: usize, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(1, "<|im_end|>"), special(2, "<|im_start|>")],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
}
