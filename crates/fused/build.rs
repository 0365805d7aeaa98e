//! With feature `cuda`: compiles `kernels/fused.cu` to PTX with nvcc into `$OUT_DIR/fused.ptx`
//! for `src/cuda.rs` (the helper is shared with crosslore-linalg). CPU builds (no `cuda` feature)
//! need no CUDA tools: this script then does nothing.
include!("../linalg/build_ptx.rs");

fn main() {
    // FMA contraction allowed (speed): results may differ from the f32 reference in the last
    // bits, well inside the device check's tolerances.
    compile_ptx("kernels/fused.cu", "fused.ptx", &[]);
}
