//! Config validation, HF folder loading (single, sharded, broken), export round trips, adapter
//! files, dropout and loss-mask behaviour.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, fixture, ids, reference, rel_err};
use crosslore_model::{
    causal_lm_loss, causal_lm_loss_sum, AdapterConfig, AdapterKind, Llama, LlamaConfig,
    LoadOptions, ModelError, RopeScaling, TargetModules, Training,
};
use serde_json::{json, Value};

fn opts(training: Training) -> LoadOptions {
    LoadOptions {
        dtype: DType::F32,
        device: Device::Cpu,
        training,
    }
}

fn base_json() -> Value {
    let text = std::fs::read_to_string(fixture("tied_gqa").join("config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn config_err(edit: impl FnOnce(&mut Value)) -> (String, String) {
    let mut v = base_json();
    edit(&mut v);
    match LlamaConfig::from_json_value(v, "test.json") {
        Err(ModelError::Config { field, msg, origin }) => {
            assert_eq!(origin, "test.json");
            (field, msg)
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn config_parses_fixtures_and_defaults() {
    let c = LlamaConfig::from_file(&fixture("tied_gqa").join("config.json")).unwrap();
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (4, 2, 16)
    );
    assert!(c.tie_word_embeddings && c.rope_scaling.is_none());
    assert_eq!(c.declared_dtype(), Some(DType::F32)); // transformers 4.57 writes `dtype`
    let c = LlamaConfig::from_file(&fixture("untied_linear").join("config.json")).unwrap();
    assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 2.0 }));
    let c = LlamaConfig::from_file(&fixture("llama3_headdim").join("config.json")).unwrap();
    assert!(matches!(
        c.rope_scaling,
        Some(RopeScaling::Llama3 {
            original_max_position_embeddings: 64,
            ..
        })
    ));
    assert_eq!(c.head_dim, 32);
    // defaults: no head_dim / num_key_value_heads / rope_scaling
    let mut v = base_json();
    let o = v.as_object_mut().unwrap();
    o.remove("head_dim");
    o.remove("num_key_value_heads");
    o.remove("rope_theta");
    o.insert("rope_scaling".into(), json!({"type": "default"}));
    let c = LlamaConfig::from_json_value(v, "x").unwrap();
    assert_eq!(
        (c.num_key_value_heads, c.head_dim, c.rope_theta),
        (4, 16, 10000.0)
    );
    assert_eq!(c.rope_scaling, None);
}

#[test]
fn config_errors_name_field_and_expectation() {
    let (f, m) = config_err(|v| v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0}));
    assert_eq!(f, "rope_scaling.rope_type");
    assert!(m.contains("yarn") && m.contains("llama3"), "{m}");
    let (f, _) = config_err(|v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    assert_eq!(f, "hidden_size");
    let (f, m) = config_err(|v| v["num_key_value_heads"] = json!(3));
    assert_eq!(f, "num_key_value_heads");
    assert!(m.contains("divide"), "{m}");
    let (f, _) = config_err(|v| v["hidden_act"] = json!("gelu"));
    assert_eq!(f, "hidden_act");
    let (f, _) = config_err(|v| v["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0}));
    assert!(f.starts_with("rope_scaling."), "{f}");
    let (f, _) = config_err(|v| v["rope_scaling"] = json!({"rope_type": "linear", "factor": -1.0}));
    assert_eq!(f, "rope_scaling.factor");
    let (f, _) = config_err(|v| v["head_dim"] = json!(15));
    assert_eq!(f, "head_dim");
    let (f, _) = config_err(|v| v["vocab_size"] = json!(0));
    assert_eq!(f, "vocab_size");
    let (f, _) = config_err(|v| v["model_type"] = json!("gpt2"));
    assert_eq!(f, "model_type");
}

fn weights(case: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(case).join("model.safetensors"), &Device::Cpu).unwrap()
}

fn write_folder(dir: &Path, tensors: &HashMap<String, Tensor>) {
    std::fs::copy(
        fixture("tied_gqa").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    candle_core::safetensors::save(tensors, dir.join("model.safetensors")).unwrap();
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = weights("tied_gqa");
    w.remove("model.layers.1.mlp.up_proj.weight");
    write_folder(tmp.path(), &w);
    match Llama::from_hf_folder(tmp.path(), &opts(Training::Full)) {
        Err(ModelError::MissingTensor { name, expected, .. }) => {
            assert_eq!(name, "model.layers.1.mlp.up_proj.weight");
            assert_eq!(expected, vec![96, 64]);
        }
        other => panic!("{other:?}"),
    }
    let mut w = weights("tied_gqa");
    w.insert(
        "model.layers.0.self_attn.k_proj.weight".into(),
        Tensor::zeros((64, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    write_folder(tmp.path(), &w);
    let e = Llama::from_hf_folder(tmp.path(), &opts(Training::Full)).unwrap_err();
    match &e {
        ModelError::TensorShape {
            name,
            expected,
            got,
            ..
        } => {
            assert_eq!(name, "model.layers.0.self_attn.k_proj.weight");
            assert_eq!(
                (expected.clone(), got.clone()),
                (vec![32, 64], vec![64, 64])
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("k_proj"));
    // same checks through from_tensors (the GGUF path)
    let cfg = LlamaConfig::from_file(&fixture("tied_gqa").join("config.json")).unwrap();
    let mut w = weights("tied_gqa");
    w.remove("model.norm.weight");
    assert!(matches!(
        Llama::from_tensors(cfg, w, &opts(Training::Full)),
        Err(ModelError::MissingTensor { .. })
    ));
    // no weights at all
    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("tied_gqa").join("config.json"),
        empty.path().join("config.json"),
    )
    .unwrap();
    assert!(matches!(
        Llama::from_hf_folder(empty.path(), &opts(Training::Full)),
        Err(ModelError::Io { .. })
    ));
}

#[test]
fn sharded_folder_and_bf16_source_load_like_single_file() {
    let r = reference("untied_linear");
    let tmp = tempfile::tempdir().unwrap();
    let w = weights("untied_linear");
    let mut names: Vec<&String> = w.keys().collect();
    names.sort();
    let mut map = serde_json::Map::new();
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    for (i, n) in names.iter().enumerate() {
        let (shard, file) = if i % 2 == 0 {
            (&mut a, "model-00001-of-00002.safetensors")
        } else {
            (&mut b, "model-00002-of-00002.safetensors")
        };
        shard.insert((*n).clone(), w[*n].clone());
        map.insert((*n).clone(), json!(file));
    }
    candle_core::safetensors::save(&a, tmp.path().join("model-00001-of-00002.safetensors"))
        .unwrap();
    candle_core::safetensors::save(&b, tmp.path().join("model-00002-of-00002.safetensors"))
        .unwrap();
    std::fs::write(
        tmp.path().join("model.safetensors.index.json"),
        serde_json::to_string(&json!({"metadata": {}, "weight_map": map})).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        fixture("untied_linear").join("config.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let m = Llama::from_hf_folder(tmp.path(), &opts(Training::Frozen)).unwrap();
    let logits = m.forward(&ids(&r), Some(&r["attention_mask"])).unwrap();
    assert_close("sharded logits", &logits, &r["logits"], 1e-4);
    assert!(m.params().is_empty()); // Frozen: no Var at all

    // bf16 tensors handed to from_tensors are converted to the requested f32
    let cfg = LlamaConfig::from_file(&fixture("untied_linear").join("config.json")).unwrap();
    let wb: HashMap<String, Tensor> = w
        .iter()
        .map(|(k, v)| (k.clone(), v.to_dtype(DType::BF16).unwrap()))
        .collect();
    let m = Llama::from_tensors(cfg, wb, &opts(Training::Full)).unwrap();
    assert_eq!(m.embed.weight.tensor().dtype(), DType::F32);
    let lb = m.forward(&ids(&r), Some(&r["attention_mask"])).unwrap();
    let e = rel_err(&lb, &r["logits"]);
    assert!(e > 1e-6 && e < 5e-2, "bf16-rounded weights: {e}");
}

/// Export writes HF names, shapes and dtypes (tied: no lm_head), and reloads to the same logits.
#[test]
fn export_round_trip_hf_layout() {
    for case in ["tied_gqa", "untied_linear"] {
        let r = reference(case);
        let m = Llama::from_hf_folder(&fixture(case), &opts(Training::Full)).unwrap();
        for dtype in [DType::F32, DType::BF16] {
            let tmp = tempfile::tempdir().unwrap();
            m.save_hf_folder(tmp.path(), dtype).unwrap();
            let saved =
                candle_core::safetensors::load(tmp.path().join("model.safetensors"), &Device::Cpu)
                    .unwrap();
            let expected = m.config.expected_tensors();
            assert_eq!(saved.len(), expected.len(), "{case}: exported tensor count");
            for (name, shape) in &expected {
                let t = &saved[name];
                assert_eq!(t.dims(), shape.as_slice(), "{name}");
                assert_eq!(t.dtype(), dtype, "{name}");
            }
            assert_eq!(
                saved.contains_key("lm_head.weight"),
                !m.config.tie_word_embeddings
            );
            let cfg = LlamaConfig::from_file(&tmp.path().join("config.json")).unwrap();
            assert_eq!(cfg.declared_dtype(), Some(dtype));
            let mut c0 = m.config.clone();
            let mut c1 = cfg.clone();
            c0.torch_dtype = None;
            c1.torch_dtype = None;
            c0.extra.clear();
            c1.extra.clear();
            assert_eq!(c0, c1, "{case}: config round trip");
            let back = Llama::from_hf_folder(tmp.path(), &opts(Training::Frozen)).unwrap();
            let l = back.forward(&ids(&r), Some(&r["attention_mask"])).unwrap();
            let tol = if dtype == DType::F32 { 1e-6 } else { 5e-2 };
            assert_close(&format!("{case} reloaded {dtype:?}"), &l, &r["logits"], tol);
            // no temp files left behind
            let left: Vec<_> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left.len(), 2, "{left:?}");
        }
    }
}

fn lora_cfg(kind: AdapterKind, dropout: f64) -> AdapterConfig {
    AdapterConfig {
        kind,
        rank: 4,
        alpha: 8.0,
        dropout,
        targets: TargetModules::parse(&["all-linear"]).unwrap(),
        init_seed: 11,
    }
}

/// Give B non-zero values so that adapters change the output.
fn perturb_b(m: &Llama) {
    for (n, v) in m.params() {
        if n.contains("lora_B") {
            let t = Tensor::randn(0f32, 0.1, v.dims(), &Device::Cpu).unwrap();
            v.set(&t).unwrap();
        }
    }
}

#[test]
fn merged_adapter_export_and_peft_adapter_files() {
    let r = reference("tied_gqa");
    for kind in [AdapterKind::Lora, AdapterKind::Dora] {
        let m = Llama::from_hf_folder(
            &fixture("tied_gqa"),
            &opts(Training::Adapter(lora_cfg(kind, 0.0))),
        )
        .unwrap();
        perturb_b(&m);
        let want = m.forward(&ids(&r), Some(&r["attention_mask"])).unwrap();
        assert!(rel_err(&want, &r["logits"]) > 1e-3);
        let tmp = tempfile::tempdir().unwrap();
        m.save_hf_folder(&tmp.path().join("merged"), DType::F32)
            .unwrap();
        let back =
            Llama::from_hf_folder(&tmp.path().join("merged"), &opts(Training::Frozen)).unwrap();
        let got = back.forward(&ids(&r), Some(&r["attention_mask"])).unwrap();
        assert_close(&format!("{kind:?} merged export"), &got, &want, 1e-5);

        // peft-style adapter files: names as peft writes them, and a reload restores the output
        m.save_adapter(&tmp.path().join("adapter"), None).unwrap();
        let fixture_case = if kind == AdapterKind::Dora {
            "dora_tied_gqa"
        } else {
            "lora_tied_gqa"
        };
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(fixture_case).join("adapter.json")).unwrap(),
        )
        .unwrap();
        let saved = candle_core::safetensors::load(
            tmp.path().join("adapter/adapter_model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        if kind == AdapterKind::Dora {
            // the DoRA fixture is all-linear like this model: the key sets must be equal
            let mut keys: Vec<&String> = saved.keys().collect();
            keys.sort();
            let peft: Vec<&str> = meta["peft_keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap())
                .collect();
            assert_eq!(keys, peft);
        }
        let fresh = Llama::from_hf_folder(
            &fixture("tied_gqa"),
            &opts(Training::Adapter(lora_cfg(kind, 0.0))),
        )
        .unwrap();
        fresh
            .load_adapter_weights(&tmp.path().join("adapter"))
            .unwrap();
        let got = fresh.forward(&ids(&r), Some(&r["attention_mask"])).unwrap();
        assert_close("adapter reload", &got, &want, 1e-6);
    }
}

#[test]
fn lora_init_is_peft_like_and_a_no_op() {
    let r = reference("tied_gqa");
    let m = Llama::from_hf_folder(
        &fixture("tied_gqa"),
        &opts(Training::Adapter(lora_cfg(AdapterKind::Dora, 0.0))),
    )
    .unwrap();
    // B = 0 and m = ||W||: the adapted model equals the base model
    let l = m.forward(&ids(&r), Some(&r["attention_mask"])).unwrap();
    assert_close("fresh adapters", &l, &r["logits"], 1e-5);
    let vm = m.var_map();
    let a = &vm["model.layers.0.mlp.down_proj.lora_A.weight"]; // [4, 96]
    assert_eq!(a.dims(), &[4, 96]);
    let bound = 1.0 / (96f32).sqrt();
    let mx = a
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(mx <= bound && mx > 0.5 * bound, "{mx} vs {bound}");
    // same seed, same init; other seed, other init
    let m2 = Llama::from_hf_folder(
        &fixture("tied_gqa"),
        &opts(Training::Adapter(lora_cfg(AdapterKind::Dora, 0.0))),
    )
    .unwrap();
    assert_eq!(
        rel_err(
            m2.var_map()["model.layers.0.mlp.down_proj.lora_A.weight"].as_tensor(),
            a
        ),
        0.0
    );
    let mut c = lora_cfg(AdapterKind::Dora, 0.0);
    c.init_seed = 12;
    let m3 = Llama::from_hf_folder(&fixture("tied_gqa"), &opts(Training::Adapter(c))).unwrap();
    assert!(
        rel_err(
            m3.var_map()["model.layers.0.mlp.down_proj.lora_A.weight"].as_tensor(),
            a
        ) > 0.1
    );
    assert!(TargetModules::parse(&["q_proj", "lm_head"]).is_err());
    assert!(TargetModules::parse(&["all-linear", "q_proj"]).is_err());
}

#[test]
fn adapter_dropout_is_seeded_and_train_only() {
    let r = reference("tied_gqa");
    for kind in [AdapterKind::Lora, AdapterKind::Dora] {
        let m = Llama::from_hf_folder(
            &fixture("tied_gqa"),
            &opts(Training::Adapter(lora_cfg(kind, 0.3))),
        )
        .unwrap();
        perturb_b(&m);
        let (ids, mask) = (ids(&r), &r["attention_mask"]);
        let run = |train: bool, seed: u64| {
            let ctx = m.context(2, 9, Some(mask), train, seed).unwrap();
            m.forward_with(&ids, &ctx).unwrap()
        };
        let eval = run(false, 1);
        assert_eq!(rel_err(&run(false, 2), &eval), 0.0, "eval ignores the seed");
        let t1 = run(true, 1);
        assert_eq!(
            rel_err(&run(true, 1), &t1),
            0.0,
            "{kind:?}: same seed, same masks"
        );
        assert!(
            rel_err(&run(true, 2), &t1) > 1e-4,
            "{kind:?}: other seed, other masks"
        );
        assert!(
            rel_err(&t1, &eval) > 1e-4,
            "{kind:?}: dropout active in training"
        );
    }
}

#[test]
fn loss_mask_counts_and_errors() {
    let r = reference("tied_gqa");
    let m = Llama::from_hf_folder(&fixture("tied_gqa"), &opts(Training::Frozen)).unwrap();
    let logits = m.forward(&ids(&r), Some(&r["attention_mask"])).unwrap();
    let labels = &r["labels"];
    // -100 labels versus the same positions given as a loss mask over raw ids
    let lv: Vec<Vec<i64>> = labels.to_vec2().unwrap();
    let mask: Vec<f32> = lv
        .iter()
        .flatten()
        .map(|&y| if y == -100 { 0.0 } else { 1.0 })
        .collect();
    let mask = Tensor::from_vec(mask, (2, 9), &Device::Cpu).unwrap();
    let raw = r["input_ids"].clone();
    let a = causal_lm_loss(&logits, labels, None).unwrap();
    let b = causal_lm_loss(&logits, &raw, Some(&mask)).unwrap();
    assert_close("loss mask == -100", &b, &a, 1e-6);
    assert_close("loss vs transformers", &a, &r["loss"], 1e-4);
    let (sum, count) = causal_lm_loss_sum(&logits, labels, None).unwrap();
    let expect = lv
        .iter()
        .map(|row| row[1..].iter().filter(|&&y| y != -100).count())
        .sum::<usize>();
    assert_eq!(count, expect);
    assert_close("sum / count", &(sum / count as f64).unwrap(), &a, 1e-6);
    let none = Tensor::full(-100i64, (2, 9), &Device::Cpu).unwrap();
    assert!(causal_lm_loss(&logits, &none, None).is_err());
    let bad = Tensor::full(500i64, (2, 9), &Device::Cpu).unwrap();
    assert!(matches!(
        causal_lm_loss(&logits, &bad, None),
        Err(ModelError::Input { .. })
    ));
    // bad inputs to the forward
    let big = Tensor::full(128u32, (1, 3), &Device::Cpu).unwrap();
    assert!(matches!(
        m.forward(&big, None),
        Err(ModelError::Input { .. })
    ));
    let m2 = Tensor::full(2f32, (2, 9), &Device::Cpu).unwrap();
    assert!(m.forward(&ids(&r), Some(&m2)).is_err());
}

/// Under LoRA/DoRA the backward allocates no gradient for frozen base weights: no tensor in the
/// gradient store has the shape of a base linear weight (or its transpose). With candle's plain
/// matmul backward every frozen linear would leave such a weight-sized gradient in the store.
#[test]
fn adapter_backward_holds_no_base_weight_gradients() {
    let r = reference("tied_gqa");
    for kind in [AdapterKind::Lora, AdapterKind::Dora] {
        let m = Llama::from_hf_folder(
            &fixture("tied_gqa"),
            &opts(Training::Adapter(lora_cfg(kind, 0.1))),
        )
        .unwrap();
        let ctx = m
            .context(2, 9, Some(&r["attention_mask"]), true, 1)
            .unwrap();
        let logits = m.forward_with(&ids(&r), &ctx).unwrap();
        let grads = causal_lm_loss(&logits, &r["labels"], None)
            .unwrap()
            .backward()
            .unwrap();
        let mut weight_shapes = std::collections::HashSet::new();
        for l in &m.layers {
            for p in crosslore_model::Proj::ALL {
                let d = l.proj(p).weight.tensor().dims().to_vec();
                weight_shapes.insert(d.clone());
                weight_shapes.insert(vec![d[1], d[0]]);
            }
        }
        let n_weight_sized = grads
            .get_ids()
            .filter(|id| weight_shapes.contains(grads.get_id(**id).unwrap().dims()))
            .count();
        assert_eq!(n_weight_sized, 0, "{kind:?}");
    }
}

/// `inference_view`: same logits bit for bit, no trainable parameter, and its outputs record no
/// graph (so inference inside a training run keeps no activations alive), for full training and
/// both adapter kinds; the original model stays trainable.
#[test]
fn inference_view_is_identical_and_records_no_graph() {
    for training in [
        Training::Full,
        Training::Adapter(lora_cfg(AdapterKind::Lora, 0.0)),
        Training::Adapter(lora_cfg(AdapterKind::Dora, 0.0)),
    ] {
        let m = Llama::from_hf_folder(&fixture("tied_gqa"), &opts(training.clone())).unwrap();
        perturb_b(&m);
        let x = ids(&reference("tied_gqa"));
        let logits = m.forward(&x, None).unwrap();
        assert!(logits.track_op(), "a trainable model records the graph");
        let v = m.inference_view();
        assert!(v.params().is_empty());
        let lv = v.forward(&x, None).unwrap();
        assert!(!lv.track_op(), "the view must record nothing");
        let (a, b) = (
            logits.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            lv.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
        assert!(!m.params().is_empty(), "the original is untouched");
    }
}
