#!/usr/bin/env bash
# Bounded fuzz run over all five targets (gguf, hf_folder, model_config, train_config, dataset).
#
#   scripts/fuzz_smoke.sh [SECS]            CI smoke (default 12 s per target, ~1 min in all once the
#                                           release test binaries exist, i.e. after `cargo test
#                                           --release --workspace`): the cargo-test mutation fuzzer
#                                           (fuzz/harness/smoke.rs) running the same harness bodies as
#                                           the libFuzzer targets, from the committed corpus.
#   scripts/fuzz_smoke.sh --libfuzzer SECS  Coverage-guided libFuzzer run of each target (cargo-fuzz;
#                                           stable toolchain via RUSTC_BOOTSTRAP=1, AddressSanitizer
#                                           unless FUZZ_SANITIZER=none).
#                                           Not for CI: `cargo install cargo-fuzz` plus the
#                                           instrumented build of candle/faer/tokenizers take far
#                                           longer than 2 minutes on a fresh machine.
#
# A panic (or an error message that does not name its file) fails the run; the input is kept:
#   smoke:     target/tmp/fuzz-smoke/<target>/crash-*  (and last-input, should the process abort)
#   libFuzzer: fuzz/artifacts/<target>/crash-*
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--libfuzzer" ]]; then
    secs="${2:-60}"
    command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz not found: cargo install cargo-fuzz --locked"; exit 1; }
    for t in gguf hf_folder model_config train_config dataset; do
        mkdir -p "fuzz/work/$t"
        RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer "${FUZZ_SANITIZER:-address}" -O "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
            -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 -timeout=10 -print_final_stats=1
    done
    exit 0
fi

secs="${1:-12}"
export CROSSLORE_FUZZ_SECS="$secs"
start=$(date +%s)
# one test binary per crate; the model one runs its three targets on the test threads
cargo test --release -q -p crosslore-model --test bad_input_fuzz_smoke -- --nocapture
cargo test --release -q -p crosslore-train --test bad_input_fuzz_smoke -- --nocapture
cargo test --release -q -p crosslore-data --test bad_input_fuzz_smoke -- --nocapture
echo "fuzz smoke: all targets, ${secs} s each, $(( $(date +%s) - start )) s in all"
