#!/usr/bin/env bash
# crosslore-fused CUDA kernels on the device machine (one call): `crosslore-bench fused-ops`, i.e.
# every fused op vs its CPU reference (f32 and bf16, PASS/FAIL lines) and per-op timings at the
# LLaMA-2-7B layer shape vs the device-copy floor. Run from the repository root there with the
# CUDA binary packed here (scripts/gpu/build_bench.sh, or BIN=<name> for .devbin/<name>.xz):
#   run(command="bash scripts/gpu/run_fused_ops.sh", carry=[".devbin/crosslore-bench.xz"])
# Writes $OUT/fused_ops_log.txt (everything printed) and $OUT/fused_ops.json.
set -uo pipefail
OUT=${OUT:-/tmp/fused_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/fused_ops_log.txt") 2>&1
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
xz -dc ".devbin/${BIN:-crosslore-bench}.xz" > /tmp/crosslore-bench && chmod +x /tmp/crosslore-bench || exit 1
t0=$SECONDS
RUST_BACKTRACE=0 /tmp/crosslore-bench --device cuda fused-ops --reps "${REPS:-20}" --json "$OUT/fused_ops.json"
echo "rc=$? fused-ops took $((SECONDS - t0)) s"
date -u
