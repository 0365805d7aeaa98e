//! The hand-differentiated blocks (`crosslore_model::fused`) against transformers 4.57.1 /
//! peft 0.21.2 (fixtures: scripts/fixtures/model_reference.py) and against the autograd blocks.
//!
//! f32 tolerance 1e-4 relative to each tensor's largest entry, as in `reference.rs` (different
//! summation orders cost a few 1e-6 after two layers; a wrong formula costs 1e-2..1).

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, fixture, ids, reference, rel_err};
use crosslore_model::fused::model_loss_and_grads;
use crosslore_model::{causal_lm_loss, Llama, LoadOptions, Training};

const TOL: f32 = 1e-4;

/// The fused loss and gradients by name.
fn fused_grads(
    model: &Llama,
    ids: &Tensor,
    mask: &Tensor,
    labels: &Tensor,
    seed: u64,
) -> (f32, HashMap<String, Tensor>) {
    let (loss, grads) = model_loss_and_grads(model, ids, mask, labels, seed).unwrap();
    (loss, grads.into_iter().collect())
}

fn opts(training: Training, dtype: DType) -> LoadOptions {
    LoadOptions {
        dtype,
        device: Device::Cpu,
        training,
    }
}

fn check_grads(
    case: &str,
    model: &Llama,
    grads: &HashMap<String, Tensor>,
    want: impl Fn(&str) -> Tensor,
    tol: f32,
) {
    let params = model.params();
    assert_eq!(grads.len(), params.len(), "{case}: gradients vs parameters");
    for (name, var) in &params {
        let g = grads
            .get(name)
            .unwrap_or_else(|| panic!("{case}: no fused gradient for {name}"));
        assert_eq!(g.dtype(), var.dtype(), "{case}: {name} dtype");
        assert_close(&format!("{case} fused grad {name}"), g, &want(name), tol);
    }
}

/// The loss and every gradient against the fixture's reference `r` (`loss`, `grad.<name>`).
fn check_against_reference(
    case: &str,
    model: &Llama,
    loss: f32,
    grads: &HashMap<String, Tensor>,
    r: &HashMap<String, Tensor>,
) {
    let want_loss = r["loss"].to_scalar::<f32>().unwrap();
    assert!(
        (loss - want_loss).abs() <= TOL * want_loss.abs(),
        "{case}: loss {loss} vs {want_loss}"
    );
    check_grads(case, model, grads, |n| r[&format!("grad.{n}")].clone(), TOL);
}

#[test]
fn reference_fused_full_models_loss_and_grads() {
    for case in ["tied_gqa", "untied_linear", "llama3_headdim"] {
        let r = reference(case);
        let model =
            Llama::from_hf_folder(&fixture(case), &opts(Training::Full, DType::F32)).unwrap();
        let (loss, grads) = fused_grads(&model, &ids(&r), &r["attention_mask"], &r["labels"], 0);
        check_against_reference(case, &model, loss, &grads, &r);
    }
}

fn adapter_model(
    case: &str,
    dropout: f64,
    dtype: DType,
) -> (Llama, HashMap<String, Tensor>, HashMap<String, Tensor>) {
    let (mut cfg, base) = common::adapter_case(case);
    cfg.dropout = dropout;
    let base = base.as_str();
    let r = reference(case);
    let model =
        Llama::from_hf_folder(&fixture(base), &opts(Training::Adapter(cfg), dtype)).unwrap();
    let adapters: HashMap<String, Tensor> = r
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("adapter.")
                .map(|n| (n.to_string(), v.clone()))
        })
        .collect();
    assert_eq!(
        model.set_adapter_tensors(&adapters).unwrap(),
        adapters.len()
    );
    (model, reference(base), r)
}

#[test]
fn reference_fused_lora_and_dora_grads() {
    for case in ["lora_tied_gqa", "dora_tied_gqa"] {
        let (model, rb, r) = adapter_model(case, 0.0, DType::F32);
        let (loss, grads) = fused_grads(&model, &ids(&rb), &rb["attention_mask"], &rb["labels"], 7);
        check_against_reference(case, &model, loss, &grads, &r);
    }
}

/// Autograd gradients of the same model (the CPU reference path of the trainer).
fn autograd_grads(
    model: &Llama,
    ids: &Tensor,
    mask: &Tensor,
    labels: &Tensor,
    seed: u64,
) -> HashMap<String, Tensor> {
    let (b, s) = ids.dims2().unwrap();
    let ctx = model.context(b, s, Some(mask), true, seed).unwrap();
    let logits = model.forward_with(ids, &ctx).unwrap();
    let loss = causal_lm_loss(&logits, labels, None).unwrap();
    let g = loss.backward().unwrap();
    model
        .params()
        .into_iter()
        .map(|(n, v)| (n, g.get(v.as_tensor()).unwrap().clone()))
        .collect()
}

/// Adapter dropout: the fused backward regenerates the forward's masks (same seed and layer
/// stream); it must equal autograd's gradients through the same masks, and differ from a
/// forward with another seed (so the masks are really in play).
#[test]
fn fused_adapter_dropout_matches_autograd() {
    for case in ["lora_tied_gqa", "dora_tied_gqa"] {
        let (model, rb, _) = adapter_model(case, 0.3, DType::F32);
        let (ids, mask, labels) = (ids(&rb), &rb["attention_mask"], &rb["labels"]);
        let (_, fused) = fused_grads(&model, &ids, mask, labels, 11);
        let auto = autograd_grads(&model, &ids, mask, labels, 11);
        check_grads(case, &model, &fused, |n| auto[n].clone(), TOL);
        let (_, other) = fused_grads(&model, &ids, mask, labels, 12);
        let name = "model.layers.0.self_attn.q_proj.lora_A.weight";
        assert!(
            rel_err(&other[name], &fused[name]) > 1e-3,
            "{case}: dropout seed has no effect"
        );
    }
}

/// bf16: the fused blocks' gradients against transformers' f32 gradients must be about as
/// accurate as the autograd blocks' bf16 gradients (bf16 rounds at 2^-9 per op; the fused ops
/// round less often, so their error is expected lower). Bound: at most 1.5x the autograd
/// path's error + 1e-2, and below 0.1 absolutely.
#[test]
fn reference_fused_bf16_grads_within_bf16_tolerance() {
    let case = "tied_gqa";
    let r = reference(case);
    let model = Llama::from_hf_folder(&fixture(case), &opts(Training::Full, DType::BF16)).unwrap();
    let (ids, mask, labels) = (ids(&r), &r["attention_mask"], &r["labels"]);
    let (_, fused) = fused_grads(&model, &ids, mask, labels, 0);
    let auto = autograd_grads(&model, &ids, mask, labels, 0);
    for (name, _) in model.params() {
        let want = &r[&format!("grad.{name}")];
        let (ef, ea) = (rel_err(&fused[&name], want), rel_err(&auto[&name], want));
        assert!(
            ef <= 1.5 * ea + 1e-2 && ef < 0.1,
            "{name}: fused bf16 error {ef:.3e}, autograd {ea:.3e}"
        );
        assert!(ef > 1e-6, "{name}: not computed in bf16?");
    }
}
