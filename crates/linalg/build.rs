//! With feature `cuda`: compiles `kernels/crosslore.cu` to PTX with nvcc (`$NVCC` or `nvcc` on
//! `PATH`, as candle-kernels needs) into `$OUT_DIR/crosslore.ptx` for `src/kernels.rs`. CPU builds
//! (no `cuda` feature) need no CUDA tools: this script then does nothing.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=kernels/crosslore.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let ptx = out.join("crosslore.ptx");
    // PTX for the lowest compute capability asked for (the driver JIT-compiles it for the card).
    let cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .and_then(|c| c.trim().trim_end_matches('a').parse::<u32>().ok())
        .unwrap_or(80);
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    // -fmad=false: no contraction of a*b+c into FMA, so that the kernels round like the CPU code.
    let status = Command::new(&nvcc)
        .args([
            "--ptx",
            "-O3",
            "-fmad=false",
            &format!("-arch=compute_{cap}"),
            "-o",
        ])
        .arg(&ptx)
        .arg("kernels/crosslore.cu")
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{nvcc} failed ({s}) compiling kernels/crosslore.cu"),
        Err(e) => panic!("feature `cuda` needs nvcc ({nvcc}): {e}"),
    }
}
