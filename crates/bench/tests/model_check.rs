//! `model-check` on the CPU (device = CPU): every f32 comparison is exact (same code, same
//! device, deterministic), the bf16 forward is within its tolerance but really bf16, and every
//! method's 3 trainer steps ran. On CUDA the same code compares against the CPU path.

use std::path::PathBuf;

use candle_core::Device;
use crosslore_bench::model_check::{run, CASES, TOL_BF16, TOL_BF16_GRAD, TOL_F32, TOL_TRAIN};

#[test]
fn model_check_cpu_vs_cpu_exact_f32_and_bf16_within_tolerance() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures");
    let rep = run(&Device::Cpu, &fixtures, 0).unwrap();
    // 8 lines per case (logits, loss, grads, fused f32 loss and grads, fused bf16 loss and
    // grads, bf16 logits) + 5 methods x (autograd, fused)
    assert_eq!(rep.checks.len(), 8 * CASES.len() + 10);
    for c in &rep.checks {
        assert!(c.pass, "{}: {}", c.name, c.rel);
        if c.name.contains("fused") {
            // the fused blocks against CPU autograd: other operations, so not exact; `c.pass`
            // above holds them to the module's tolerances (checked here to be those constants)
            let tol = if c.name.contains("bf16") {
                TOL_BF16_GRAD
            } else if c.name.starts_with("train") {
                TOL_TRAIN
            } else {
                TOL_F32
            };
            assert_eq!(c.tol, tol, "{}", c.name);
        } else if c.name.contains("bf16") {
            assert!(c.rel > 1e-5 && c.rel <= TOL_BF16, "{}: {}", c.name, c.rel);
        } else {
            assert_eq!(c.max_abs, 0.0, "{}", c.name);
        }
    }
    // the perturbed CPU runs really differ, and rounding-sized noise stays below the tolerance
    assert_eq!(rep.sensitivity.len(), 5);
    for s in &rep.sensitivity {
        assert!(s.rel > 0.0 && s.rel < TOL_TRAIN, "{}: {}", s.name, s.rel);
    }
}
