#![no_main]
//! libFuzzer target; the body is `harness/model_config.rs`, shared with the bounded smoke test.

#[path = "../harness/model_config.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
