#!/usr/bin/env bash
# Builds crosslore-bench with CUDA here (no GPU needed) and packs it for the device machine:
# .devbin/crosslore-bench.xz. Needs the toolchain of ../shared/gpu/README.md in /tmp/cudaroot.
# The CUDA build has its own target folder so that CPU builds never invalidate candle-kernels.
set -euo pipefail
cd "$(dirname "$0")/../.."
. /tmp/cudaroot/env.sh
CARGO_TARGET_DIR="$PWD/target/cuda" cargo build --release --features cuda -p crosslore-bench
mkdir -p .devbin
strip -o .devbin/crosslore-bench target/cuda/release/crosslore-bench
xz -T2 -6 -c .devbin/crosslore-bench > .devbin/crosslore-bench.xz
rm .devbin/crosslore-bench
ls -l .devbin/crosslore-bench.xz
# CPU smoke test of the CUDA binary with the stub driver (prints the CPU path):
LD_LIBRARY_PATH=/tmp/cudaroot/lib/stubs:/tmp/cudaroot/lib target/cuda/release/crosslore-bench --device cpu gpu-check | tail -1
