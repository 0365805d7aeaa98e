//! Layerwise (segmented backward) training equals whole-graph training; accumulation equals one
//! big batch; layerwise holds fewer gradient bytes; the loss goes down for every method.
//!
//! Tolerance: none on CPU. Both modes run the same candle ops on the same inputs in f32: the
//! layerwise seed `(out * g_out).sum()` gives exactly `g_out` at the block output, the tied
//! embedding's two contributions are summed in candle's order (head first, then the scatter of
//! the embedding), accumulation sums in micro-batch order and the global norm sums per-parameter
//! squares in name order. So the weights after N steps are bit-identical, and the test asserts
//! that (a looser 1e-6 bound would hide an ordering change; CrossLore's top-k residual index is
//! discontinuous, so such changes do show up as large differences after the warm-up).

mod common;

/// Losses, grad norms, clip coefficients, final weights, gradient-bytes peak.
type Trajectory = (
    Vec<f64>,
    Vec<f64>,
    Vec<f64>,
    Vec<(String, candle_core::Tensor)>,
    usize,
);

use common::*;
use crosslore_train::config::Method;
use crosslore_train::{BlockBackward, TrainConfig, Trainer};

const METHODS: [Method; 5] = [
    Method::Adamw,
    Method::Galore,
    Method::Crosslore,
    Method::Lora,
    Method::Dora,
];

/// Runs `steps` steps; returns the losses, grad norms, clip coefficients and final weights.
fn train(cfg: &TrainConfig, steps: usize) -> Trajectory {
    let model = tiny_model(cfg);
    let mut t = Trainer::new(cfg.clone(), model, dataset(16, 11), 0).unwrap();
    let (mut losses, mut norms, mut coefs) = (vec![], vec![], vec![]);
    for _ in 0..steps {
        let r = t.step().unwrap();
        losses.push(r.loss);
        norms.push(r.grad_norm);
        coefs.push(r.clip_coef);
    }
    (
        losses,
        norms,
        coefs,
        weights(t.params()),
        t.grads_peak_bytes(),
    )
}

#[test]
fn layerwise_equals_whole_graph_all_methods_with_accumulation_and_clipping() {
    for method in METHODS {
        for accum in [1, 2] {
            for (clip, recompute) in [(0.0, false), (0.5, false), (0.5, true)] {
                let mut cfg = tiny_train_config(method);
                cfg.grad_accum = accum;
                cfg.max_grad_norm = clip;
                cfg.recompute = recompute;
                cfg.lora_dropout = if method == Method::Lora { 0.1 } else { 0.0 };
                cfg.layerwise = false;
                let (lw, nw, cw, ww, _) = train(&cfg, 4);
                cfg.layerwise = true;
                let (ll, nl, _, wl, _) = train(&cfg, 4);
                let what = format!("{method:?} accum={accum} clip={clip} recompute={recompute}");
                if clip > 0.0 {
                    assert!(
                        cw.iter().any(|&c| c < 1.0),
                        "{what}: clipping never active (coefs {cw:?}, norms {nw:?})"
                    );
                }
                for (a, b) in lw.iter().zip(&ll) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{what}: loss {a} vs {b}");
                }
                for (a, b) in nw.iter().zip(&nl) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{what}: grad norm {a} vs {b}");
                }
                let (d, name) = max_rel_diff(&wl, &ww);
                assert!(
                    bitwise_equal(&wl, &ww),
                    "{what}: weights differ by {d:e} (relative) in {name}"
                );
                // The weights moved (the comparison is not between two untouched models).
                let init = weights(&tiny_model(&cfg).params());
                let (moved, _) = max_rel_diff(&wl, &init);
                assert!(moved > 1e-4, "{what}: weights did not move ({moved:e})");
            }
        }
    }
}

#[test]
fn accumulation_equals_one_big_batch() {
    // k = 2 micro-batches of 2 == 1 batch of 4 (same examples: the shuffled order is the same).
    // Tolerance 1e-5: the big batch pads every row to the longest of 4 examples instead of 2, so
    // matmuls run over different sequence lengths (padded keys add exact zeros to the softmax,
    // but blocked f32 reductions can round differently), and the loss is one sum over 4 rows
    // instead of two sums of 2 rows.
    for method in [Method::Adamw, Method::Crosslore, Method::Lora] {
        for layerwise in [false, true] {
            let mut cfg = tiny_train_config(method);
            cfg.layerwise = layerwise;
            cfg.max_grad_norm = 0.5;
            cfg.batch_size = 4;
            cfg.grad_accum = 1;
            let (lb, _, _, wb, _) = train(&cfg, 4);
            cfg.batch_size = 2;
            cfg.grad_accum = 2;
            let (la, _, _, wa, _) = train(&cfg, 4);
            for (a, b) in la.iter().zip(&lb) {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs(),
                    "{method:?}: loss {a} vs {b}"
                );
            }
            let (d, name) = max_rel_diff(&wa, &wb);
            assert!(
                d <= 1e-5,
                "{method:?} layerwise={layerwise}: {d:e} in {name}"
            );
        }
    }
}

#[test]
fn layerwise_holds_fewer_gradient_bytes() {
    for method in [Method::Adamw, Method::Crosslore] {
        for accum in [1, 2] {
            let mut cfg = tiny_train_config(method);
            cfg.grad_accum = accum;
            cfg.max_grad_norm = 0.5;
            cfg.layerwise = false;
            // The autograd blocks' whole-graph mode: a full gradient store per micro-batch.
            cfg.block_backward = BlockBackward::Autograd;
            let model = tiny_model(&cfg);
            let mut whole = Trainer::new(cfg.clone(), model, dataset(16, 11), 0).unwrap();
            whole.step().unwrap();
            cfg.layerwise = true;
            cfg.recompute = true;
            let model = tiny_model(&cfg);
            let mut lw = Trainer::new(cfg.clone(), model, dataset(16, 11), 0).unwrap();
            lw.step().unwrap();
            let (mw, ml) = (whole.memory_report(), lw.memory_report());
            let trainable = mw.trainable_bytes;
            // Whole-graph: the full gradient store (plus the buffers when accumulating).
            assert_eq!(
                mw.grads_peak_bytes,
                accum.min(2) * trainable,
                "{method:?} {accum}"
            );
            assert_eq!(mw.grads_peak_bytes, mw.grads_peak_estimate_bytes);
            // Layerwise: one block (+ the pending tied embedding) (+ the buffers).
            assert_eq!(
                ml.grads_peak_bytes, ml.grads_peak_estimate_bytes,
                "{method:?} {accum}"
            );
            assert!(ml.grads_peak_bytes < mw.grads_peak_bytes);
            assert!(ml.activations_estimate_bytes < mw.activations_estimate_bytes);
            assert!(ml.estimated_peak_bytes < mw.estimated_peak_bytes);
            assert_eq!(mw.optimizer_state_bytes, ml.optimizer_state_bytes);
            assert_eq!(
                mw.optimizer_state_bytes,
                whole.optimizer().state_bytes().total
            );
            println!(
                "{method:?} accum={accum}: grads peak whole {} B vs layerwise {} B; activations {} vs {} B; estimated peak {} vs {} B",
                mw.grads_peak_bytes,
                ml.grads_peak_bytes,
                mw.activations_estimate_bytes,
                ml.activations_estimate_bytes,
                mw.estimated_peak_bytes,
                ml.estimated_peak_bytes
            );
        }
    }
}

#[test]
fn loss_decreases_for_every_method() {
    for method in METHODS {
        for layerwise in [false, true] {
            let mut cfg = tiny_train_config(method);
            cfg.layerwise = layerwise;
            cfg.max_steps = 12;
            cfg.max_grad_norm = 1.0;
            let (losses, ..) = train(&cfg, 12);
            let first = losses[..2].iter().sum::<f64>() / 2.0;
            let last = losses[10..].iter().sum::<f64>() / 2.0;
            assert!(
                last < first * 0.97,
                "{method:?} layerwise={layerwise}: loss {first} -> {last} ({losses:?})"
            );
        }
    }
}

#[test]
fn optimizer_state_holds_no_graph() {
    // Gradients of leaf Vars come out of candle's backward still attached to the forward graph;
    // the trainer detaches them. Otherwise every moment would hold the graph of its step and
    // of all previous steps (a per-step leak).
    use crosslore_train::MethodOptimizer;
    for method in [
        Method::Adamw,
        Method::Galore,
        Method::Crosslore,
        Method::Lora,
    ] {
        for layerwise in [false, true] {
            let mut cfg = tiny_train_config(method);
            cfg.layerwise = layerwise;
            cfg.max_grad_norm = 0.5;
            let mut t = Trainer::new(cfg.clone(), tiny_model(&cfg), dataset(16, 11), 0).unwrap();
            t.step().unwrap();
            t.step().unwrap();
            let names: Vec<String> = t.params().iter().map(|(n, _)| n.clone()).collect();
            for name in &names {
                let (m, v) = match t.optimizer() {
                    MethodOptimizer::AdamW(o) => o.moments(name).unwrap(),
                    MethodOptimizer::GaLore(o) => o.moments(name).unwrap(),
                    MethodOptimizer::CrossLore(o) => o.moments(name).unwrap(),
                };
                assert!(
                    !m.track_op() && !v.track_op(),
                    "{method:?} layerwise={layerwise}: state of {name} holds a graph"
                );
            }
        }
    }
}
