//! Fuzz body for the GGUF reader (`crosslore_model::gguf`): the input is a whole GGUF file.
//! Shared by the libFuzzer target `fuzz_targets/gguf.rs` and the bounded smoke run
//! `crates/model/tests/bad_input_fuzz_smoke.rs` (included with `#[path]`).
//!
//! Oracle: no panic, and every error message names the file it came from.

use std::path::Path;

use crosslore_model::gguf::{self, GgufFile, LlamaParams};

/// Writes `data` to `scratch/fuzz.gguf` and runs the reader, the LLaMA mapping, the tokenizer
/// rebuild and the full `load_llama` on it.
pub fn run(data: &[u8], scratch: &Path) {
    let path = scratch.join("fuzz.gguf");
    std::fs::write(&path, data).expect("scratch dir must be writable");
    let name = path.display().to_string();
    let check = |e: &dyn std::fmt::Display| {
        let msg = e.to_string();
        assert!(
            msg.contains(&name),
            "GGUF error does not name the file: {msg}"
        );
    };
    match GgufFile::open(&path) {
        Err(e) => check(&e),
        Ok(file) => {
            for (key, _) in file.metadata() {
                let _ = file.get_u64(key);
                let _ = file.get_str_array(key);
                let _ = file.get_i64_array(key);
            }
            for info in file.tensors() {
                let _ = info.shape();
                if let Err(e) = file.tensor_f32(&info.name) {
                    check(&e);
                }
            }
            if let Err(e) = LlamaParams::from_gguf(&file) {
                check(&e);
            }
            if let Err(e) = gguf::tokenizer::tokenizer_from_gguf(&file) {
                check(&e);
            }
            let _ = gguf::tokenizer::chat_template(&file);
        }
    }
    let device = candle_core::Device::Cpu;
    if let Err(e) = gguf::load_llama(&path, &device, candle_core::DType::F32) {
        check(&e);
    }
}
