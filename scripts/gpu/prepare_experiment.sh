#!/usr/bin/env bash
# Here (no GPU): packs what scripts/gpu/run_experiment.sh carries to the device: the SmolLM2 GGUF
# in two parts (.devexp-a, .devexp-b; each fits one call's 64 MiB with the working tree) and the
# CUDA crosslore-bench built by scripts/gpu/build_bench.sh (.devexp-bin). The folders are ignored
# through .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.devexp\*/' .git/info/exclude || echo '/.devexp*/' >> .git/info/exclude
model=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || bash scripts/fetch_model.sh
mkdir -p .devexp-a .devexp-b .devexp-bin
# part A larger: part B travels with the ~9 MB binary and the ~9 MB working tree (64 MiB a call)
half=55000000
head -c "$half" "$model" > .devexp-a/model.part00
tail -c +$((half + 1)) "$model" > .devexp-b/model.part01
cp .devbin/crosslore-bench.xz .devexp-bin/
cat .devexp-a/model.part00 .devexp-b/model.part01 | sha256sum
ls -l .devexp-a .devexp-b .devexp-bin
