//! With feature `cuda`: compiles `kernels/crosslore.cu` to PTX with nvcc into
//! `$OUT_DIR/crosslore.ptx` for `src/kernels.rs` (see `build_ptx.rs`). CPU builds (no `cuda`
//! feature) need no CUDA tools: this script then does nothing.
include!("build_ptx.rs");

fn main() {
    // -fmad=false: no contraction of a*b+c into FMA, so that the kernels round like the CPU code.
    compile_ptx("kernels/crosslore.cu", "crosslore.ptx", &["-fmad=false"]);
}
