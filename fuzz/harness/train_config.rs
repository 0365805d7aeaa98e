//! Fuzz body for the run-config parser (`TrainConfig::from_toml_str`). The input is the TOML
//! text; lines after a NUL byte are `key=value` overrides. Shared by
//! `fuzz_targets/train_config.rs` and `crates/train/tests/bad_input_fuzz_smoke.rs`.
//!
//! Oracle: no panic; errors name the file (override syntax errors name the override); an
//! accepted config passes `validate` again and survives a TOML round trip.

use crosslore_train::config::ConfigError;
use crosslore_train::TrainConfig;

pub const FILE: &str = "fuzz/run.toml";

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (doc, overrides) = match text.split_once('\0') {
        Some((d, o)) => (d, o.lines().map(String::from).collect::<Vec<_>>()),
        None => (text, Vec::new()),
    };
    match TrainConfig::from_toml_str(doc, FILE, &overrides) {
        Err(ConfigError::BadOverride { arg }) => {
            assert!(
                !arg.contains('='),
                "override `{arg}` has a `=` but was refused"
            )
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(FILE),
                "config error does not name the file: {msg}"
            );
        }
        Ok(cfg) => {
            cfg.validate(FILE)
                .expect("an accepted config must validate again");
            let _ = cfg.run_dir();
            let text = toml::to_string(&cfg).expect("an accepted config must serialise");
            TrainConfig::from_toml_str(&text, FILE, &[])
                .expect("an accepted config must re-parse from its own TOML");
        }
    }
}
