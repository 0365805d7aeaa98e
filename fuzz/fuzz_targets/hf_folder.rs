#![no_main]
//! libFuzzer target; the body is `harness/hf_folder.rs`, shared with the bounded smoke test.

#[path = "../harness/hf_folder.rs"]
mod harness;

use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d =
            std::env::temp_dir().join(format!("crosslore-fuzz-hf_folder-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create scratch dir");
        d
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data, scratch()));
