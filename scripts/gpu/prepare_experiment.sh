#!/usr/bin/env bash
# Here (no GPU): packs what scripts/gpu/run_experiment.sh carries to the device: the SmolLM2 GGUF
# in three parts (.devexp-a, .devexp-b, .devexp-c; each fits one call's 64 MiB with the working tree) and the
# CUDA crosslore-bench built by scripts/gpu/build_bench.sh (.devexp-bin). The folders are ignored
# through .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.devexp\*/' .git/info/exclude || echo '/.devexp*/' >> .git/info/exclude
model=.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || bash scripts/fetch_model.sh
rm -rf .devexp-a .devexp-b .devexp-c
mkdir -p .devexp-a .devexp-b .devexp-c .devexp-bin
# three parts of <= 40 MB: the working tree (~12 MB) travels with every call, the ~9 MB binary and the
# earlier results (.devexp-state) with the last; each call's carry must stay under 64 MiB
part=40000000
cut_part() { # index, folder
  dd if="$model" of="$2/model.part0$1" bs=1M iflag=skip_bytes,count_bytes skip=$(($1 * part)) \
    count="$part" status=none
}
cut_part 0 .devexp-a
cut_part 1 .devexp-b
cut_part 2 .devexp-c
cp .devbin/crosslore-bench.xz .devexp-bin/
cat .devexp-a/model.part00 .devexp-b/model.part01 .devexp-c/model.part02 | sha256sum
ls -l .devexp-a .devexp-b .devexp-c .devexp-bin
