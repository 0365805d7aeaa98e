#!/usr/bin/env bash
# Issue 8 on the device machine, one call: the fused kernels' check (fused-ops), the model check
# (fused blocks vs CPU autograd), one 7B layer fused vs candle autograd vs PyTorch, P3 with the
# fused blocks (7B shape) and the SmolLM2-shaped steps vs PyTorch. Carry .devbin (built here by
# scripts/gpu/build_bench.sh):
#   run(command="bash scripts/gpu/run_fused_bench.sh", carry=[".devbin"])
# Each step has its own time limit; a failed step does not stop the others. Output: $OUT/*.json,
# $OUT/fused_bench_log.txt. Steps: $STEPS (default: ops check layer layertorch p3 smol smoltorch).
# Issue 5, P3/P4 ours and PyTorch in one call (carry .devbin and a wheel folder: .whl5 holds
# galore-torch alone, enough: bench/reference/common.py then loads its modules without
# bitsandbytes; $WHL_DIR overrides, default .whl5, else .whl):
#   p3torch     bench/reference/p3_torch.py at batch 4 (AdamW, peft LoRA/DoRA, galore-torch and its
#               layerwise form)
#   p3max       = p3, then each arm at the largest batch that fits (crosslore-bench p3 --max-batch;
#               a second table; limit $P3MAX_LIMIT s, default 300)
#   p3maxtorch  = p3torch, then the same search for the PyTorch arms (limit $P3MAXTORCH_LIMIT s,
#               default 200)
#   p3prof      the CrossLore layerwise step's per-phase profile (crosslore-bench p3 --profile:
#               a device sync at every phase boundary; its own run, not timed with the others)
#   run(command="STEPS='check p3max p3maxtorch' bash scripts/gpu/run_fused_bench.sh", carry=[".devbin", ".whl5"])
# (p3max/p3maxtorch include p3/p3torch: list one of each pair.)
set -uo pipefail
OUT=${OUT:-/tmp/fused_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/fused_bench_log.txt") 2>&1
export PYTHONUNBUFFERED=1
STEPS=${STEPS:-"ops check layer layertorch p3 smol smoltorch"}
P3_ARMS=${P3_ARMS:-"crosslore-layerwise-fused,lora-fused,galore-steady-fused,adamw-fused,dora-fused"}
SMOL_ARMS=${SMOL_ARMS:-"adamw-fused,adamw,lora-fused,lora,crosslore-layerwise-fused"}
P3_TORCH_ARMS=${P3_TORCH_ARMS:-"adamw,lora,dora,galore,galore-layerwise"}
PROF_ARMS=${PROF_ARMS:-"crosslore-layerwise-fused"}
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
xz -dc .devbin/crosslore-bench.xz > /tmp/crosslore-bench && chmod +x /tmp/crosslore-bench || exit 1
B=/tmp/crosslore-bench
case " $STEPS " in
  *" p3torch "*|*" p3maxtorch "*)
    # galore-torch from the carried wheel (no index, no dependencies), as scripts/gpu/run_bench.sh
    WHL=${WHL_DIR:-.whl5}; [ -d "$WHL" ] || WHL=.whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHL"/*.whl \
      && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} || echo "FAILED: wheel install from $WHL"
    ;;
esac
step() { # name, limit seconds, command...
  local name=$1 lim=$2; shift 2
  echo; echo "=== $name: $* ==="
  local t0=$SECONDS
  timeout "$lim" "$@" || echo "FAILED: $name (exit $?)"
  echo "=== $name took $((SECONDS - t0)) s ==="
}
for s in $STEPS; do
  case $s in
    ops) step fused-ops 70 $B --device cuda fused-ops --reps 10 --json "$OUT/fused_ops.json" ;;
    check) step model-check 90 $B --device cuda model-check --json "$OUT/model_check.json" ;;
    layer) step layer 60 $B --device cuda layer --json "$OUT/layer.json" ;;
    layertorch) step layer-torch 60 python3 bench/reference/layer_torch.py --out "$OUT/layer_torch.json" ;;
    p3) step p3-fused 200 $B --device cuda p3 --reps 3 --warmup 2 --arms "$P3_ARMS" --json "$OUT/p3_fused.json" ;;
    smol) step p3-smol 80 $B --device cuda p3 --model smollm2 --reps 5 --warmup 2 --arms "$SMOL_ARMS" --json "$OUT/p3_smol.json" ;;
    smoltorch) step smol-torch 60 python3 bench/reference/smol_torch.py --out "$OUT/smol_torch.json" ;;
    p3torch) step p3-torch 120 python3 bench/reference/p3_torch.py --arms "$P3_TORCH_ARMS" --out "$OUT/p3_torch.json" ;;
    p3max) step p3-max ${P3MAX_LIMIT:-300} $B --device cuda p3 --reps 3 --warmup 2 --arms "$P3_ARMS" --max-batch --json "$OUT/p3_max.json" ;;
    p3maxtorch) step p3-max-torch ${P3MAXTORCH_LIMIT:-200} python3 bench/reference/p3_torch.py --arms "$P3_TORCH_ARMS" --max-batch --out "$OUT/p3_max_torch.json" ;;
    p3prof) step p3-profile 90 $B --device cuda p3 --reps 3 --warmup 2 --arms "$PROF_ARMS" --profile --json "$OUT/p3_profile.json" ;;
    *) echo "unknown step $s" ;;
  esac
done
date -u
