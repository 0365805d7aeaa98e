//! Bad-input classes of issue 7 for model files that the older tests do not check through the
//! error *message*: GGUF tensor shape vs its `llama.*` metadata, safetensors header garbage,
//! missing / misshaped tensors vs `config.json` naming the folder, `config.json` wrong type and
//! syntax. (Truncated GGUF, wrong magic and offsets past the end: `gguf_synthetic.rs`; missing
//! `config.json` fields: `loading.rs::config_errors_name_field_and_expectation`.)

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use crosslore_model::gguf::load_llama;
use crosslore_model::{Llama, LlamaConfig, LoadOptions};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Byte position just after the (length-prefixed) name of tensor `name` in the GGUF tensor infos.
fn after_tensor_name(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("tensor name in header");
    at + needle.len()
}

#[test]
fn gguf_tensor_shape_mismatch_with_metadata_names_file_and_tensor() {
    // swap the two dims of blk.0.ffn_up.weight (same byte size, so the header stays valid)
    let mut b = std::fs::read(fixture("gguf/tiny_llama.gguf")).unwrap();
    let name = "blk.0.ffn_up.weight";
    let at = after_tensor_name(&b, name);
    assert_eq!(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()), 2);
    let (d0, d1) = (at + 4, at + 12);
    let (x, y) = (b[d0..d0 + 8].to_vec(), b[d1..d1 + 8].to_vec());
    assert_ne!(x, y, "a square tensor would not change shape");
    b[d0..d0 + 8].copy_from_slice(&y);
    b[d1..d1 + 8].copy_from_slice(&x);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swapped.gguf");
    std::fs::write(&path, &b).unwrap();
    let msg = load_llama(&path, &Device::Cpu, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("tensor '{name}' has shape [32, 64]"))
            && msg.contains("expected Some([64, 32]) (from the llama.* metadata)"),
        "{msg}"
    );
}

fn folder(config: &[u8], weights: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), weights).unwrap();
    dir
}

fn tied_config() -> Vec<u8> {
    std::fs::read(fixture("tied_gqa/config.json")).unwrap()
}

fn load_err(dir: &Path) -> String {
    Llama::from_hf_folder(dir, &LoadOptions::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn safetensors_header_garbage_names_the_file() {
    let mut huge_len = u64::MAX.to_le_bytes().to_vec();
    huge_len.extend_from_slice(b"{}");
    let mut not_json = 16u64.to_le_bytes().to_vec();
    not_json.extend_from_slice(b"this is no json!");
    let mut past_end = 64u64.to_le_bytes().to_vec();
    past_end
        .extend_from_slice(b"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}");
    for (case, bytes) in [
        ("empty", Vec::new()),
        ("short", b"abc".to_vec()),
        ("huge header length", huge_len),
        ("header not JSON", not_json),
        ("header length past the end", past_end),
    ] {
        let dir = folder(&tied_config(), &bytes);
        let msg = load_err(dir.path());
        let file = dir.path().join("model.safetensors");
        assert!(
            msg.contains(&file.display().to_string()),
            "{case}: the message must name {}: {msg}",
            file.display()
        );
    }
}

fn tied_weights() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("tied_gqa/model.safetensors"), &Device::Cpu).unwrap()
}

fn save(dir: &Path, w: &HashMap<String, Tensor>) {
    candle_core::safetensors::save(w, dir.join("model.safetensors")).unwrap();
}

#[test]
fn safetensors_missing_tensor_message_names_folder_tensor_and_shape() {
    let dir = folder(&tied_config(), b"");
    let mut w = tied_weights();
    w.remove("model.layers.1.self_attn.o_proj.weight");
    save(dir.path(), &w);
    let msg = load_err(dir.path());
    assert!(
        msg.contains(&dir.path().display().to_string())
            && msg.contains("missing tensor `model.layers.1.self_attn.o_proj.weight`")
            && msg.contains("[64, 64]"),
        "{msg}"
    );
}

#[test]
fn safetensors_wrong_shape_vs_config_names_folder_tensor_and_both_shapes() {
    let dir = folder(&tied_config(), b"");
    let mut w = tied_weights();
    w.insert(
        "model.norm.weight".into(),
        Tensor::zeros(65, DType::F32, &Device::Cpu).unwrap(),
    );
    save(dir.path(), &w);
    let msg = load_err(dir.path());
    assert!(
        msg.contains(&dir.path().display().to_string())
            && msg.contains(
                "tensor `model.norm.weight` has shape [65], expected [64] from the config"
            ),
        "{msg}"
    );
}

#[test]
fn config_json_wrong_type_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&tied_config()).unwrap();
    v["hidden_size"] = serde_json::json!("64");
    std::fs::write(&path, v.to_string()).unwrap();
    let msg = LlamaConfig::from_file(&path).unwrap_err().to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("hidden_size"),
        "the message must name the field: {msg}"
    );
}

#[test]
fn config_json_syntax_error_names_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, "{\n  \"hidden_size\": 64,\n  oops\n}").unwrap();
    let msg = LlamaConfig::from_file(&path).unwrap_err().to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("line 3"),
        "{msg}"
    );
    let missing = dir.path().join("absent/config.json");
    let msg = LlamaConfig::from_file(&missing).unwrap_err().to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
}

// ---------------------------------------------------------------- layer counts from the file
//
// Found by reading the fuzz targets' paths: a huge layer count makes the loaders build the list
// of required tensor names for every layer (`required_names` in gguf/llama.rs,
// `LlamaConfig::expected_tensors` in loader.rs) before noticing that layer 1 is missing: memory
// and time grow with the claimed count (u32::MAX layers = tens of GB) instead of an error.

/// Runs `f` on a thread; a hang (the bug) ends the test process after `secs` instead of
/// allocating until the machine runs out of memory.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(_) => {
            // not eprintln!: the harness captures that, and exit() would drop it
            let _ = writeln!(
                std::io::stderr(),
                "{what}: no answer after {secs} s (still allocating): aborting the test process"
            );
            std::process::exit(101)
        }
    }
}

fn micro_seed(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(name),
    )
    .unwrap()
}

/// Regression: found by the time-based fuzz smoke (`fuzz/oom-candidates/gguf-last-input`, OOM at
/// 24 GB); `load_llama` built 4e9 x 9 required names before reporting the missing `blk.1`.
#[test]
fn gguf_huge_block_count_is_an_error_not_an_allocation() {
    let mut b = micro_seed("gguf/seed-micro-f32.gguf");
    let key = b"llama.block_count";
    let mut needle = (key.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(key);
    needle.extend_from_slice(&4u32.to_le_bytes()); // GGUF type UINT32
    let at = b
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("llama.block_count: u32 in the seed")
        + needle.len();
    b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layers.gguf");
    std::fs::write(&path, &b).unwrap();
    let p = path.clone();
    let r = within(3, "load_llama", move || {
        load_llama(&p, &Device::Cpu, DType::F32).map(|_| ())
    });
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("blk.1"),
        "{msg}"
    );
}

#[test]
fn config_json_huge_layer_count_is_an_error_not_an_allocation() {
    let seed = micro_seed("hf_folder/seed-micro");
    let nul = seed.iter().position(|&b| b == 0).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_slice(&seed[..nul]).unwrap();
    cfg["num_hidden_layers"] = serde_json::json!(1u64 << 40);
    let dir = folder(cfg.to_string().as_bytes(), &seed[nul + 1..]);
    let d = dir.path().to_path_buf();
    let r = within(3, "from_hf_folder", move || {
        Llama::from_hf_folder(&d, &LoadOptions::default()).map(|_| ())
    });
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains(&dir.path().display().to_string())
            && msg.contains("model.layers.1.input_layernorm.weight"),
        "{msg}"
    );
}

#[test]
fn moderate_layer_count_mismatch_is_named() {
    // the same inputs with 3 layers instead of 1: the error the two tests above expect
    let seed = micro_seed("hf_folder/seed-micro");
    let nul = seed.iter().position(|&b| b == 0).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_slice(&seed[..nul]).unwrap();
    cfg["num_hidden_layers"] = serde_json::json!(3);
    let dir = folder(cfg.to_string().as_bytes(), &seed[nul + 1..]);
    let msg = load_err(dir.path());
    assert!(
        msg.contains(&dir.path().display().to_string())
            && msg.contains("missing tensor `model.layers.1.input_layernorm.weight`"),
        "{msg}"
    );
}
