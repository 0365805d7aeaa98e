//! Bounded fuzz smoke of the run-config parser (`TrainConfig::from_toml_str`): the harness body
//! of the libFuzzer target `fuzz/fuzz_targets/train_config.rs` under a seeded mutation loop
//! (`fuzz/harness/smoke.rs`). `scripts/fuzz_smoke.sh` runs it for a time budget.

#[path = "../../../fuzz/harness/smoke.rs"]
mod smoke;
#[path = "../../../fuzz/harness/train_config.rs"]
mod train_config_body;

use crosslore_train::TrainConfig;

const DICT: &[&[u8]] = &[
    b"=",
    b"\n",
    b"\"",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\0",
    b"-1",
    b"0",
    b"nan",
    b"inf",
    b"1.5",
    b"1e999",
    b"9223372036854775808",
    b"true",
    b"method = \"galore\"\n",
    b"rank = ",
    b"learning_rate = ",
    b"residual_ratio = ",
    b"lora_dropout = ",
    b"output_dir = \"o\"\n",
    b"[table]\n",
    b"max_steps = 0\nepochs = 0\n",
];

#[test]
fn fuzz_smoke_train_config() {
    smoke::run("train_config", 3000, DICT, train_config_body::run);
}

/// Every run-config seed is accepted (documents + overrides after the NUL).
#[test]
fn fuzz_seeds_are_valid_inputs() {
    for (path, bytes) in smoke::corpus("train_config") {
        let text = std::str::from_utf8(&bytes).unwrap();
        let (doc, overrides) = match text.split_once('\0') {
            Some((d, o)) => (d, o.lines().map(String::from).collect::<Vec<_>>()),
            None => (text, Vec::new()),
        };
        TrainConfig::from_toml_str(doc, "seed.toml", &overrides)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
