#!/usr/bin/env bash
# Issue 5 benchmarks on the device machine (one call): gpu-check, P1, P2 with crosslore-bench and
# the PyTorch + galore-torch references, side by side. Run from the repository root there, with
#   .devbin/crosslore-bench.xz  (built here by scripts/gpu/build_bench.sh)
#   .whl/                       (galore-torch 1.0, bitsandbytes 0.50.2, tensorly 0.10.0 wheels)
# carried, e.g. run(command="bash scripts/gpu/run_bench.sh", carry=[".devbin", ".whl"]).
# Writes $OUT/bench_log.txt (everything printed) and one JSON per step (the default steps: 7 files).
# Each step may fail on its own; the others still run. Steps: $STEPS (default: check htod p1 p1torch
# p2 p2tf32 p2torch; also p3 p3torch layer layertorch smoltorch). $BIN_XZ: the
# packed binary (default .devbin/crosslore-bench.xz); $WHL_DIR: the wheels (default .whl; galore-torch
# alone works: bench/reference/common.py then loads its modules without bitsandbytes);
# $STEP_TIMEOUT: seconds per step (default 600).
# P3/P4 (ours and the PyTorch reference, same call):
#   run(command="STEPS=\"p3 p3torch\" bash scripts/gpu/run_bench.sh", carry=[".devbin", ".whl"])
set -uo pipefail
OUT=${OUT:-/tmp/bench_out}
mkdir -p "$OUT"
LOG="$OUT/bench_log.txt"
STEPS=${STEPS:-"check htod p1 p1torch p2 p2tf32 p2torch"}
export PYTHONUNBUFFERED=1

exec > >(tee -a "$LOG") 2>&1
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'
xz -dc ${BIN_XZ:-.devbin/crosslore-bench.xz} > /tmp/crosslore-bench && chmod +x /tmp/crosslore-bench || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ${WHL_DIR:-.whl}/*.whl \
  && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} || echo "FAILED: wheel install"
B=/tmp/crosslore-bench
run() { # name, command...
  local name=$1; shift
  echo; echo "=== $name: $* ==="
  local t0=$SECONDS
  timeout ${STEP_TIMEOUT:-600} "$@" || echo "FAILED: $name (exit $?)"
  echo "=== $name took $((SECONDS - t0)) s ==="
}
for s in $STEPS; do
  case $s in
    check) run gpu-check $B --device cuda gpu-check --json "$OUT/gpu_check.json" ;;
    htod) run htod $B --device cuda htod ;;
    p1) run p1 $B --device cuda p1 --reps ${P1_REPS:-3} --json "$OUT/p1.json" ;;
    p1torch) run p1-torch python3 bench/reference/galore_p1.py --out "$OUT/p1_torch.json" ;;
    p2) run p2 $B --device cuda p2 --json "$OUT/p2.json" ;;
    p3) run p3 $B --device cuda p3 ${P3_ARGS:-} --json "$OUT/p3.json" ;;
    p3torch) run p3-torch python3 bench/reference/p3_torch.py ${P3_TORCH_ARGS:-} --out "$OUT/p3_torch.json" ;;
    p2tf32) run p2-tf32 $B --device cuda p2 --tf32 --json "$OUT/p2_tf32.json" ;;
    p2torch) run p2-torch python3 bench/reference/galore_p2.py --out "$OUT/p2_torch.json" ;;
    layer) run layer $B --device cuda layer --json "$OUT/layer.json" ;;
    smoltorch) run smol-torch python3 bench/reference/smol_torch.py --out "$OUT/smol_torch.json" ;;
    layertorch) run layer-torch python3 bench/reference/layer_torch.py --out "$OUT/layer_torch.json" ;;
    *) echo "unknown step $s" ;;
  esac
done
date -u
