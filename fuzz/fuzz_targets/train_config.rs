#![no_main]
//! libFuzzer target; the body is `harness/train_config.rs`, shared with the bounded smoke test.

#[path = "../harness/train_config.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
