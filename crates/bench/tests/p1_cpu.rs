//! CPU smoke test of P1 at 1/16 of the LLaMA-2-7B shapes (one layer): every randomized method
//! runs, the batched refresh (`rsi_many`) gives the same projectors as the one-by-one path (same
//! residuals), and RSI's residual is within the 1.5x of the exact SVD's.
use candle_core::Device;
use crosslore_bench::p1::{run, P1Options};
use crosslore_bench::shapes::ModelDims;
use crosslore_bench::synth::Spectrum;

#[test]
fn p1_small_cpu_batched_equals_one_by_one_and_residual_near_exact() {
    let opt = P1Options {
        dims: ModelDims::llama2_7b(1, 16),
        spectrum: Spectrum::default(),
        oversample: 8,
        svd_samples: 1,
        reps: 1,
        seed: 3,
        rate_scale: 16,
    };
    let rep = run(&Device::Cpu, &opt).expect("p1 on the CPU");
    let get = |name: &str| {
        rep.methods
            .iter()
            .find(|m| m.method == name)
            .unwrap_or_else(|| panic!("method {name} missing"))
    };
    for (one, batched) in [
        ("rsi_q2", "rsi_q2_batched"),
        ("cross_head_qk+rsi_q2", "cross_head_qk+rsi_q2_batched"),
    ] {
        let (a, b) = (get(one), get(batched));
        assert_eq!(a.mean_residual, b.mean_residual, "{one} vs {batched}");
    }
    let rsi = get("rsi_q2");
    assert!(
        rsi.residual_ratio_vs_exact < 1.5 && rsi.residual_ratio_vs_exact >= 0.999,
        "RSI residual / exact = {}",
        rsi.residual_ratio_vs_exact
    );
    assert_eq!(rep.legacy_probe.len(), 7);
}
