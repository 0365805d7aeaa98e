#![no_main]
//! libFuzzer target; the body is `harness/gguf.rs`, shared with the bounded smoke test.

#[path = "../harness/gguf.rs"]
mod harness;

use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("crosslore-fuzz-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create scratch dir");
        d
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data, scratch()));
