//! Fuzz body for loading a Hugging Face folder (`Llama::from_hf_folder`: `config.json` +
//! `model.safetensors`). An input starting with `{` is `config.json` bytes, one NUL byte, then the
//! safetensors bytes; any other input is the safetensors file next to a fixed valid config. Shared by
//! `fuzz_targets/hf_folder.rs` and `crates/model/tests/bad_input_fuzz_smoke.rs`.
//!
//! Oracle: no panic, and errors name the folder or a file in it.

use std::path::Path;

use crosslore_model::{Llama, LoadOptions};

/// Used when the input does not start with `{`: a tiny valid config (hidden 8, 1 layer, vocab 16, tied).
pub const DEFAULT_CONFIG: &str = r#"{"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"vocab_size":16,"tie_word_embeddings":true,"max_position_embeddings":32}"#;

/// Splits an input into (`config.json`, `model.safetensors`) bytes.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) if data.first() == Some(&b'{') => (&data[..i], &data[i + 1..]),
        _ => (DEFAULT_CONFIG.as_bytes(), data),
    }
}

pub fn run(data: &[u8], scratch: &Path) {
    let (config, weights) = split(data);
    let dir = scratch.join("hf");
    std::fs::create_dir_all(&dir).expect("scratch dir must be writable");
    std::fs::write(dir.join("config.json"), config).expect("write config.json");
    std::fs::write(dir.join("model.safetensors"), weights).expect("write model.safetensors");
    if let Err(e) = Llama::from_hf_folder(&dir, &LoadOptions::default()) {
        let msg = e.to_string();
        assert!(
            msg.contains(&dir.display().to_string()),
            "HF folder error does not name the folder or file: {msg}"
        );
    }
}
