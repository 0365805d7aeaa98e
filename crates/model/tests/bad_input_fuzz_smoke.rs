//! Bounded fuzz smoke of the GGUF reader, `config.json` validation and HF-folder loading: the
//! harness bodies of the libFuzzer targets in `fuzz/` run under a seeded mutation loop
//! (`fuzz/harness/smoke.rs`). Also checks that the committed seeds are valid inputs, so the
//! fuzzers start deep inside the parsers. `scripts/fuzz_smoke.sh` runs these for a time budget.

#[path = "../../../fuzz/harness/gguf.rs"]
mod gguf_body;
#[path = "../../../fuzz/harness/hf_folder.rs"]
mod hf_folder_body;
#[path = "../../../fuzz/harness/model_config.rs"]
mod model_config_body;
#[path = "../../../fuzz/harness/smoke.rs"]
mod smoke;

use candle_core::{DType, Device};
use crosslore_model::gguf::{load_llama, GgufFile};
use crosslore_model::{Llama, LlamaConfig, LoadOptions};

const GGUF_DICT: &[&[u8]] = &[
    b"GGUF",
    b"general.architecture",
    b"general.alignment",
    b"llama",
    b"llama.block_count",
    b"llama.embedding_length",
    b"llama.attention.head_count",
    b"llama.attention.head_count_kv",
    b"llama.rope.dimension_count",
    b"tokenizer.ggml.tokens",
    b"tokenizer.ggml.merges",
    b"tokenizer.ggml.model",
    b"token_embd.weight",
    b"blk.0.attn_q.weight",
    b"output.weight",
    &[8, 0, 0, 0],  // type string
    &[9, 0, 0, 0],  // type array
    &[4, 0, 0, 0],  // type u32
    &[30, 0, 0, 0], // bf16 id
];

const JSON_DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e400",
    b"18446744073709551616",
    b"0.5",
    b"\"hidden_size\":",
    b"\"head_dim\":",
    b"\"num_key_value_heads\":",
    b"\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":16}",
    b"\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}",
    b"\"max_position_embeddings\":",
    b"\"eos_token_id\":[1,2]",
    b"\"tie_word_embeddings\":false",
    b"\"dtype\":\"bfloat16\"",
];

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn fuzz_smoke_gguf() {
    let dir = scratch();
    smoke::run("gguf", 300, GGUF_DICT, |d| gguf_body::run(d, dir.path()));
}

#[test]
fn fuzz_smoke_model_config() {
    smoke::run("model_config", 3000, JSON_DICT, model_config_body::run);
}

#[test]
fn fuzz_smoke_hf_folder() {
    let dir = scratch();
    let mut dict = JSON_DICT.to_vec();
    dict.extend_from_slice(&[
        b"\"dtype\":\"F16\"" as &[u8],
        b"\"shape\":[16,8]",
        b"\"data_offsets\":[0,512]",
        b"\"__metadata__\":{}",
        b"model.layers.0.mlp.up_proj.weight",
        b"\0",
    ]);
    smoke::run("hf_folder", 200, &dict, |d| {
        hf_folder_body::run(d, dir.path())
    });
}

/// The seeds are valid: the micro GGUFs load as LLaMA models, the HF seeds load as folders, the
/// config seeds validate (a fuzzer that starts from rejected inputs explores little).
#[test]
fn fuzz_seeds_are_valid_inputs() {
    let dir = scratch();
    for (path, bytes) in smoke::corpus("gguf") {
        let p = dir.path().join("seed.gguf");
        std::fs::write(&p, &bytes).unwrap();
        let f = GgufFile::open(&p).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if path.to_string_lossy().contains("micro") {
            let m = load_llama(&p, &Device::Cpu, DType::F32)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(m.config["hidden_size"], 8);
            assert!(f.tensors().len() >= 11);
        }
    }
    for (path, bytes) in smoke::corpus("hf_folder") {
        let (config, weights) = hf_folder_body::split(&bytes);
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        std::fs::write(dir.path().join("model.safetensors"), weights).unwrap();
        Llama::from_hf_folder(dir.path(), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for (path, bytes) in smoke::corpus("model_config") {
        let v = serde_json::from_slice(&bytes).unwrap();
        LlamaConfig::from_json_value(v, "seed")
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
