#![no_main]
//! libFuzzer target; the body is `harness/dataset.rs`, shared with the bounded smoke test.

#[path = "../harness/dataset.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
