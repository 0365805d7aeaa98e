//! CPU smoke test of P3 at 1/16 of the LLaMA-2-7B shapes (one layer, batch 4 x 32 tokens): both
//! methods train (finite loss, positive throughput).
use candle_core::Device;
use crosslore_bench::p3::{run, P3Options};
use crosslore_bench::shapes::ModelDims;

#[test]
fn p3_small_cpu_runs_both_methods() {
    let opt = P3Options {
        dims: ModelDims::llama2_7b(1, 16),
        batch: 4,
        seq: 32,
        steps: 1,
        seed: 1,
        rate_scale: 16,
    };
    let rep = run(&Device::Cpu, &opt).expect("p3 on the CPU");
    assert_eq!(rep.results.len(), 2);
    for r in &rep.results {
        assert!(r.last_loss.is_finite() && r.last_loss > 0.0, "{r:?}");
        assert!(r.step_s > 0.0 && r.tokens_per_s > 0.0, "{r:?}");
    }
}
