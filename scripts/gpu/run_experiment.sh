#!/usr/bin/env bash
# Issue 6 on the device machine: experiment specs through `crosslore-bench experiment` (the CUDA
# binary; the root `crosslore` package's CUDA build would rebuild candle-kernels, see
# docs/DEVELOPING.md). The 98 MB SmolLM2 GGUF travels in three calls made back to back while the
# machine is warm (../shared/gpu/README.md); `scripts/gpu/prepare_experiment.sh` makes the parts
# and packs the binary here. Then, from the repository root on the device:
#   run(command="bash scripts/gpu/run_experiment.sh stage", carry=[".devexp-a"])            # part A
#   run(command="bash scripts/gpu/run_experiment.sh stage", carry=[".devexp-b"])            # part B
#   run(command="PRECHECK=1 bash scripts/gpu/run_experiment.sh run 500 SPEC...",
#       carry=[".devexp-c", ".devexp-bin", ".devexp-state"])                                  # part C
#   run(command="bash scripts/gpu/run_experiment.sh run 500 SPEC...")                       # later calls
# PRECHECK=1 runs gpu-check and model-check with the carried binary first and stops on a FAIL.
#   run(command="bash scripts/gpu/run_experiment.sh par 8 300 SPEC...")   # 8 processes, 300 s
# `run BUDGET SPEC...` runs the specs in order, starting no new grid cell after BUDGET seconds in
# all (finished cells stay on the machine in /dev/shm/exp, in memory, where each run's final
# checkpoint is written and deleted fast; the next call skips them), then
# packs the results (summaries, plots, run folders without checkpoints) into $OUT/results.tgz.
# MIN_LEFT=S (default 40): a spec is not started with less than S seconds of the budget left (a
# grid always runs its first cell, GaLore's takes ~37 s). SUMMARIZE=0: no summaries on the device
# (make them here from the unpacked results with `crosslore-bench experiment SPEC --summarize-only`,
# which needs no GPU: saves device time).
set -uo pipefail
OUT=${OUT:-/tmp/exp_out}
STAGE=/root/stage
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$OUT" "$STAGE"
exec > >(tee -a "$OUT/experiment.log") 2>&1
cmd=${1:-}
shift || true
# every carried part (.devexp-*/model.partNN) is kept in $STAGE until the model is whole
stage_parts() {
  local p n=0
  for p in .devexp-*/model.part*; do
    [ -f "$p" ] && cp "$p" "$STAGE/${p##*/}" && n=$((n + 1))
  done
  echo "$n part(s) staged"; ls -l "$STAGE"
}
if [ "$cmd" = stage ]; then
  stage_parts
  ls "$STAGE"/model.part* > /dev/null 2>&1 && exit 0
  echo "FAILED: no .devexp-*/model.part* (carry .devexp-a, then .devexp-b)"; exit 2
fi
case "$cmd" in
  run) nproc=1 ;;
  par) nproc=$1; shift ;;
  *) echo "usage: run_experiment.sh stage | run BUDGET_S SPEC... | par NPROC BUDGET_S SPEC..."; exit 2 ;;
esac
budget=$1; shift
t0=$SECONDS
if [ ! -f "$STAGE/model.gguf" ]; then
  stage_parts
  cat "$STAGE"/model.part* > "$STAGE/model.gguf"
  echo "$SHA  $STAGE/model.gguf" | sha256sum -c \
    || { rm -f "$STAGE/model.gguf"; echo "FAILED: parts missing (the machine went back?): stage again"; exit 3; }
  rm -f "$STAGE"/model.part*
fi
if [ -f .devexp-bin/crosslore-bench.xz ]; then
  xz -dc .devexp-bin/crosslore-bench.xz > "$STAGE/crosslore-bench" && chmod +x "$STAGE/crosslore-bench"
fi
[ -x "$STAGE/crosslore-bench" ] || { echo "FAILED: no binary (carry .devexp-bin)"; exit 3; }
# PRECHECK=1: this binary's GPU-vs-CPU checks first (~40 s); any FAIL stops before the budget is spent
if [ "${PRECHECK:-0}" = 1 ] && [ ! -e "$STAGE/.prechecked" ]; then
  for c in gpu-check model-check; do
    "$STAGE/crosslore-bench" --device cuda $c --json "$OUT/$c.json" > "$OUT/$c.log" 2>&1
    rc=$?; tail -2 "$OUT/$c.log"
    if [ $rc != 0 ] || grep -q "^FAIL" "$OUT/$c.log"; then echo "FAILED: $c (exit $rc)"; grep "^FAIL" "$OUT/$c.log" | head; exit 4; fi
  done
  touch "$STAGE/.prechecked"
fi
mkdir -p .cache/models /dev/shm/exp
# a fresh machine: results of an earlier machine (a results.tgz carried in .devexp-state) come back
if [ -f .devexp-state/results.tgz ] && [ ! -e /dev/shm/exp/.restored ]; then
  tar xzf .devexp-state/results.tgz -C /dev/shm && touch /dev/shm/exp/.restored && echo "restored earlier results"
fi
ln -sf "$STAGE/model.gguf" .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
rm -rf runs && mkdir -p runs && ln -sfn /dev/shm/exp runs/experiments
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
# `par NPROC`: NPROC processes share the GPU (each is kernel-launch bound, so the GPU has room);
# process i runs shard i/NPROC of every spec (a cell's shard is a hash of its id, so specs that
# share run folders never run one cell twice at once); then one pass writes the summaries.
mkdir -p /dev/shm/exp/logs
run_specs() {  # shard index, specs...
  local i=$1; shift
  for spec in "$@"; do
    local left=$((budget - (SECONDS - t0)))
    if [ "$left" -lt "${MIN_LEFT:-40}" ]; then echo "=== $spec: $left s left, not started ==="; continue; fi
    echo "=== $spec shard $i/$nproc (budget $left s) at $((SECONDS - t0)) s ==="
    "$STAGE/crosslore-bench" experiment "$spec" --time-budget-s "$left" --shard "$i/$nproc" \
      || echo "FAILED: $spec shard $i (exit $?)"
  done
}
pids=()
for ((i = 0; i < nproc; i++)); do
  run_specs "$i" "$@" > "/dev/shm/exp/logs/shard-$i.log" 2>&1 &
  pids+=($!)
done
# wait for the shards only: a bare `wait` also waits for the `tee` of the `exec > >(tee ...)`
# above (bash >= 5.1), which never ends: on 2026-11-28 a call hung there until its time limit
wait "${pids[@]}"
cp /dev/shm/exp/logs/shard-*.log "$OUT/" 2>/dev/null
grep -h "FAILED\|error" /dev/shm/exp/logs/shard-*.log | head -20
grep -h "experiment .*: \[" /dev/shm/exp/logs/shard-*.log | sed 's/; bleu.*rougeL \([0-9.]*\).*/; rougeL \1/' | cut -c1-160
[ "${SUMMARIZE:-1}" = 0 ] || for spec in "$@"; do
  "$STAGE/crosslore-bench" experiment "$spec" --summarize-only 2>&1 | grep -v "^experiment" || echo "FAILED: summary of $spec"
done
echo "=== done at $((SECONDS - t0)) s ==="
tar czf "$OUT/results.tgz" -C /dev/shm --exclude='ckpt-*' --exclude='export' exp && ls -l "$OUT/results.tgz"
