#!/usr/bin/env bash
# Issue 3 on the device machine: `crosslore-bench --device cuda model-check` (LLaMA forward, loss,
# gradients, bf16 forward and 3 trainer steps of every method, CUDA vs CPU on the committed
# model fixtures). Run from the repository root there with .devbin/crosslore-bench.xz (built here
# by scripts/gpu/build_bench.sh) carried:
#   run(command="bash scripts/gpu/run_model_check.sh", carry=[".devbin"], timeout_s=360)
# Writes $OUT/model_check.log and $OUT/model_check.json. GPU_CHECK=1 also runs gpu-check.
set -uo pipefail
OUT=${OUT:-/tmp/bench_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/model_check.log") 2>&1
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
xz -dc .devbin/crosslore-bench.xz > /tmp/crosslore-bench && chmod +x /tmp/crosslore-bench || exit 1
echo "=== /tmp/crosslore-bench --device cuda --json \$OUT/model_check.json model-check ==="
t0=$SECONDS
/tmp/crosslore-bench --device cuda --json "$OUT/model_check.json" model-check || echo "FAILED: model-check (exit $?)"
echo "=== model-check took $((SECONDS - t0)) s ==="
if [ "${GPU_CHECK:-0}" = 1 ]; then
  /tmp/crosslore-bench --device cuda gpu-check | tail -3 || echo "FAILED: gpu-check"
fi
date -u
