//! Fuzz body for `config.json` validation (`LlamaConfig::from_json_value`): the input is the
//! file's bytes. Shared by `fuzz_targets/model_config.rs` and
//! `crates/model/tests/bad_input_fuzz_smoke.rs`.
//!
//! Oracle: no panic; errors name the origin; an accepted config lists consistent tensor shapes.

use crosslore_model::LlamaConfig;

pub const ORIGIN: &str = "fuzz/config.json";

pub fn run(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match LlamaConfig::from_json_value(value, ORIGIN) {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(ORIGIN),
                "config error does not name the file: {msg}"
            );
        }
        Ok(cfg) => {
            assert!(cfg.num_key_value_heads > 0 && cfg.num_attention_heads > 0);
            assert_eq!(cfg.num_attention_heads % cfg.num_key_value_heads, 0);
            let _ = cfg.n_rep();
            let _ = cfg.declared_dtype();
            let _ = cfg.expected_tensors();
            let round = cfg.to_json_value(candle_core::DType::F32);
            let again = LlamaConfig::from_json_value(round, ORIGIN)
                .expect("an accepted config must survive its own to_json_value");
            assert_eq!(again.expected_tensors(), cfg.expected_tensors());
        }
    }
}
