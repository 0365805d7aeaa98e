//! `block_backward = "fused"` (hand-differentiated blocks) trains like the autograd blocks:
//! every method, whole-model and layerwise, accumulation, clipping, recomputation, adapter
//! dropout.
//!
//! Tolerance 1e-4 relative on losses, gradient norms and weights after 4 steps. Both paths
//! compute in f32 but in different orders (the fused softmax and RMSNorm backward sum their
//! terms differently, the head's cross-entropy is one fused pass), so gradients agree to a few
//! 1e-7 relative; AdamW's normalised update turns that into weight differences of the same
//! relative order. The bound leaves a wide margin while a wrong gradient path (a missed tied
//! contribution, an unscaled loss, a wrong mask) moves weights by 1e-2 and more. CrossLore's
//! residual (top-k by magnitude) could amplify ulp-level differences by switching an index;
//! its ratio is kept at 0 here and the residual path is covered by the optimizer's own tests.

mod common;

use common::*;
use crosslore_train::config::Method;
use crosslore_train::{BlockBackward, TrainConfig, Trainer};

const TOL: f64 = 1e-4;

fn run(
    cfg: &TrainConfig,
    steps: usize,
) -> (Vec<f64>, Vec<f64>, Vec<(String, candle_core::Tensor)>) {
    let mut t = Trainer::new(cfg.clone(), tiny_model(cfg), dataset(16, 11), 0).unwrap();
    let (mut losses, mut norms) = (vec![], vec![]);
    for _ in 0..steps {
        let r = t.step().unwrap();
        assert!(r.skipped.is_none());
        losses.push(r.loss);
        norms.push(r.grad_norm);
    }
    (losses, norms, weights(t.params()))
}

#[test]
fn fused_equals_autograd_all_methods_and_modes() {
    for method in [
        Method::Adamw,
        Method::Galore,
        Method::Crosslore,
        Method::Lora,
        Method::Dora,
    ] {
        for (layerwise, accum, clip, recompute) in [
            (false, 1, 0.0, false),
            (true, 2, 0.5, false),
            (true, 1, 0.0, true),
            (false, 2, 0.5, false),
        ] {
            let mut cfg = tiny_train_config(method);
            cfg.residual_ratio = 0.0;
            cfg.layerwise = layerwise;
            cfg.grad_accum = accum;
            cfg.max_grad_norm = clip;
            cfg.recompute = recompute;
            cfg.lora_dropout = if matches!(method, Method::Lora | Method::Dora) {
                0.1
            } else {
                0.0
            };
            let what = format!(
                "{method:?} layerwise={layerwise} accum={accum} clip={clip} recompute={recompute}"
            );
            let (la, na, wa) = run(&cfg, 4);
            cfg.block_backward = BlockBackward::Fused;
            let (lf, nf, wf) = run(&cfg, 4);
            for (a, f) in la.iter().zip(&lf) {
                assert!(
                    (a - f).abs() <= TOL * a.abs(),
                    "{what}: loss {a} vs fused {f}"
                );
            }
            for (a, f) in na.iter().zip(&nf) {
                assert!(
                    (a - f).abs() <= TOL * a.abs(),
                    "{what}: grad norm {a} vs fused {f}"
                );
            }
            let (d, name) = max_rel_diff(&wf, &wa);
            assert!(
                (d as f64) <= TOL,
                "{what}: weights differ by {d:e} in {name}"
            );
            let (moved, _) = max_rel_diff(&wf, &weights(&tiny_model(&cfg).params()));
            assert!(moved > 1e-3, "{what}: weights did not move ({moved:e})");
        }
    }
}

/// Whole-model mode through the fused blocks sweeps into the accumulation buffers block by
/// block: its gradient peak is one full gradient (+ one block's while accumulating), below the
/// autograd whole graph's (a full store per micro-batch + the buffers), and the report's
/// estimate equals the measurement.
#[test]
fn fused_whole_model_gradient_memory_matches_its_estimate() {
    for accum in [1, 2] {
        let mut cfg = tiny_train_config(Method::Adamw);
        cfg.grad_accum = accum;
        cfg.max_grad_norm = 0.5;
        let mut peaks = Vec::new();
        for bb in [BlockBackward::Fused, BlockBackward::Autograd] {
            cfg.block_backward = bb;
            let mut t = Trainer::new(cfg.clone(), tiny_model(&cfg), dataset(16, 11), 0).unwrap();
            t.step().unwrap();
            let m = t.memory_report();
            assert_eq!(
                m.grads_peak_bytes, m.grads_peak_estimate_bytes,
                "{bb:?} accum={accum}"
            );
            peaks.push(m.grads_peak_bytes);
        }
        if accum > 1 {
            assert!(
                peaks[0] < peaks[1],
                "fused {} vs autograd {}",
                peaks[0],
                peaks[1]
            );
        }
    }
}
