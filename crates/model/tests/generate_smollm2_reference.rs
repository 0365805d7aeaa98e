//! SmolLM2-135M-Instruct (the shipped model, fetched into the cache by `fetch::ensure_smollm2`):
//! KV-cached greedy generation reproduces transformers' greedy continuation of
//! "The capital of France is" token for token (fixture `gguf/smollm2_reference.json`, written by
//! scripts/fixtures/gguf_reference.py with transformers 4.57.1 from the same GGUF).

mod gguf_common;

use std::time::Instant;

use candle_core::{DType, Device};
use crosslore_model::fetch;
use crosslore_model::generate::{generate, generate_text, GenerateConfig};
use crosslore_model::gguf::load_llama;
use crosslore_model::{Llama, LlamaConfig, LoadOptions, Training};
use gguf_common::{json, u32s};

#[test]
fn smollm2_cached_greedy_reference() {
    let want = json("smollm2_reference.json");
    let path = fetch::ensure_smollm2(fetch::default_cache_dir()).expect("fetch SmolLM2");
    let g = load_llama(&path, &Device::Cpu, DType::F32).unwrap();
    let config = LlamaConfig::from_json_value(g.config.clone(), "SmolLM2 GGUF").unwrap();
    let opts = LoadOptions {
        training: Training::Frozen,
        ..LoadOptions::default()
    };
    let m = Llama::from_tensors(config, g.tensors, &opts).unwrap();
    let prompt_ids = u32s(&want["greedy"]["prompt_ids"]);
    let new_ids = u32s(&want["greedy"]["new_ids"]);
    let prompt = want["greedy"]["prompt"].as_str().unwrap();

    let cfg = GenerateConfig {
        max_new_tokens: new_ids.len(),
        ..GenerateConfig::default()
    };
    let t0 = Instant::now();
    let out = generate_text(&m, &g.tokenizer, &[prompt], &cfg).unwrap();
    let cached_s = t0.elapsed().as_secs_f64();
    assert_eq!(out[0].tokens, new_ids, "token ids vs transformers");
    let text = out[0].text.as_deref().unwrap();
    assert_eq!(text, want["greedy"]["new_text"].as_str().unwrap());
    assert!(text.starts_with(" Paris"), "{text:?}");

    // the same prompt in a left-padded batch with a longer one gives the same tokens
    let long = "Here is a longer prompt, so that the first one is padded on the left:";
    let batch = generate_text(&m, &g.tokenizer, &[long, prompt], &cfg).unwrap();
    assert_eq!(batch[1].tokens, new_ids, "left-padded row");

    let t0 = Instant::now();
    let slow = generate(
        &m,
        &[prompt_ids],
        &GenerateConfig {
            use_cache: false,
            ..cfg
        },
        None,
    )
    .unwrap();
    let full_s = t0.elapsed().as_secs_f64();
    assert_eq!(slow[0].tokens, new_ids);
    eprintln!(
        "SmolLM2 greedy {} tokens: KV cache {cached_s:.2} s, full recompute {full_s:.2} s",
        new_ids.len()
    );
}
