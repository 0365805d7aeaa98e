//! CPU smoke test of P3 at 1/16 of the LLaMA-2-7B shapes (one layer, batch 4 x 32 tokens): every
//! default arm trains (finite loss, positive throughput), and an unknown arm is an error.
use candle_core::Device;
use crosslore_bench::p3::{run, P3Options, DEFAULT_ARMS};
use crosslore_bench::shapes::ModelDims;

fn options(arms: Vec<String>) -> P3Options {
    P3Options {
        dims: ModelDims::llama2_7b(1, 16),
        batch: 4,
        seq: 32,
        steps: 1,
        warmup: 2,
        seed: 1,
        rate_scale: 16,
        arms,
    }
}

#[test]
fn p3_small_cpu_runs_every_default_arm() {
    let arms: Vec<String> = DEFAULT_ARMS.iter().map(|s| s.to_string()).collect();
    let rep = run(&Device::Cpu, &options(arms.clone())).expect("p3 on the CPU");
    let got: Vec<&str> = rep.results.iter().map(|r| r.arm.as_str()).collect();
    assert_eq!(got, arms.iter().map(String::as_str).collect::<Vec<_>>());
    for r in &rep.results {
        assert!(r.error.is_none(), "{r:?}");
        assert!(r.last_loss.is_finite() && r.last_loss > 0.0, "{r:?}");
        assert!(r.step_s > 0.0 && r.tokens_per_s > 0.0, "{r:?}");
        assert!(r.peak_used_gib.is_none(), "no pool on the CPU: {r:?}");
    }
}

#[test]
fn p3_unknown_arm_is_an_error() {
    let err = run(&Device::Cpu, &options(vec!["sgd".into()])).unwrap_err();
    assert!(err.to_string().contains("sgd"), "{err}");
}
