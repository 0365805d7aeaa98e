//! The tiny random LLaMA of crosslore-train's tests, saved as a Hugging Face folder with a
//! word-level tokenizer over the E2E words, so that whole runs take well under a second.
#![allow(dead_code)]

#[path = "../../../train/tests/common/mod.rs"]
mod train_common;

use std::path::Path;

use candle_core::DType;
use crosslore_train::config::Method;
pub use train_common::VOCAB;

const WORDS: &str = "name eatType food priceRange customer rating area familyFriendly near \
    restaurant pub coffee shop the a is of in and with it The yes no city centre riverside \
    French Italian English Chinese Indian Japanese cheap moderate high average low 5 1 3 out";

/// Writes the tiny model + tokenizer into `dir`.
pub fn write_tiny_folder(dir: &Path) {
    let cfg = train_common::tiny_train_config(Method::Adamw);
    let model = train_common::tiny_model(&cfg);
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

/// `[base]` settings for the tiny model (TOML lines).
pub fn tiny_base(model: &Path) -> String {
    format!(
        "model = \"{}\"\nmax_steps = 2\nbatch_size = 2\nmax_len = 48\nupdate_interval = 2\n\
         scale = 1.0\nlora_alpha = 8.0\noversample = 2\npower_iters = 1\nmax_grad_norm = 0.0\n\
         warmup_steps = 1\n",
        model.display()
    )
}
