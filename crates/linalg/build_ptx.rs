// Shared by the build scripts of crosslore-linalg and crosslore-fused (`include!`d): compiles one
// CUDA source to PTX with nvcc when feature `cuda` is on. CPU builds need no CUDA tools.

/// Compiles `src` (relative to the crate) into `$OUT_DIR/<ptx>` with nvcc (`$NVCC` or `nvcc` on
/// `PATH`, as candle-kernels needs), for the compute capability `$CUDA_COMPUTE_CAP` (default 80:
/// the driver JIT-compiles the PTX for the card), with `extra` nvcc flags. Does nothing without
/// feature `cuda`.
fn compile_ptx(src: &str, ptx: &str, extra: &[&str]) {
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .and_then(|c| c.trim().trim_end_matches('a').parse::<u32>().ok())
        .unwrap_or(80);
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let status = std::process::Command::new(&nvcc)
        .args(["--ptx", "-O3", &format!("-arch=compute_{cap}")])
        .args(extra)
        .arg("-o")
        .arg(out.join(ptx))
        .arg(src)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{nvcc} failed ({s}) compiling {src}"),
        Err(e) => panic!("feature `cuda` needs nvcc ({nvcc}): {e}"),
    }
}
