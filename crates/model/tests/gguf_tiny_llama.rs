//! `load_llama` on a tiny 2-layer GQA LLaMA written llama.cpp-style (Q/K rows permuted, F32/F16/Q8_0
//! weights, untied head), compared with what `transformers` loads from the same GGUF.

mod gguf_common;

use candle_core::{DType, Device};
use crosslore_model::gguf::{load_llama, GgufFile};
use crosslore_model::tokenizer;
use gguf_common::{fixture, json};

/// transformers dequantizes with the same `gguf.quants` arithmetic and un-permutes by reshaping,
/// so the tensors must be bit-equal.
#[test]
fn tiny_llama_tensors_reference() {
    let m = load_llama(fixture("tiny_llama.gguf"), &Device::Cpu, DType::F32).unwrap();
    let want =
        candle_core::safetensors::load(fixture("tiny_llama.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(m.tensors.len(), want.len(), "same tensor set");
    for (name, w) in &want {
        let got = m
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(got.dims(), w.dims(), "{name}");
        let a: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn tiny_llama_config_reference() {
    let m = load_llama(fixture("tiny_llama.gguf"), &Device::Cpu, DType::F32).unwrap();
    let want = json("tiny_llama.json");
    for (k, v) in want["config"].as_object().unwrap() {
        let got = &m.config[k];
        match v.as_f64() {
            // GGUF stores eps as f32; we print the shortest decimal (1e-6), transformers the
            // f32 widened to f64 (9.99999997e-7): equal to f32 precision.
            Some(x) if v.is_f64() => {
                assert!((got.as_f64().unwrap() - x).abs() <= x.abs() * 1e-7, "{k}")
            }
            _ => assert_eq!(got, v, "{k}"),
        }
    }
    assert_eq!(m.config["rms_norm_eps"].as_f64(), Some(1e-6));
    assert_eq!(m.config["tie_word_embeddings"], false);
    assert!(m.tensors.contains_key("lm_head.weight"));
    assert_eq!(m.bos_id, Some(1));
    assert_eq!(m.eos_id, Some(2));
    assert!(m.chat_template.as_deref().unwrap().contains("<|im_start|>"));
}

#[test]
fn tiny_llama_bf16_and_tokenizer() {
    let m = load_llama(fixture("tiny_llama.gguf"), &Device::Cpu, DType::BF16).unwrap();
    assert_eq!(m.config["torch_dtype"], "bfloat16");
    assert!(m.tensors.values().all(|t| t.dtype() == DType::BF16));
    // vocabulary: 3 control tokens + 256 byte symbols + 5 merges
    let tok = &m.tokenizer;
    assert_eq!(tok.get_vocab_size(true), 264);
    let enc = tok.encode("<|im_start|>the hat<|im_end|>", false).unwrap();
    let toks: Vec<&str> = enc.get_tokens().iter().map(String::as_str).collect();
    // merges: "Ġ t", "h e", "Ġt he", "i n", "Ġ a". "the" -> "t" + "he"; " hat" has none
    assert_eq!(
        toks,
        ["<|im_start|>", "t", "he", "Ġ", "h", "a", "t", "<|im_end|>"]
    );
    assert_eq!(enc.get_ids()[0], 1);
    let enc = tok.encode(" the", false).unwrap();
    assert_eq!(enc.get_tokens(), ["Ġthe"]);
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), " the");

    // save as tokenizer.json and load back: same ids
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    tokenizer::save(tok, &p).unwrap();
    let back = tokenizer::load_json(&p).unwrap();
    let text = "<|im_start|>in a hat, 12 the<|im_end|>";
    assert_eq!(
        back.encode(text, false).unwrap().get_ids(),
        tok.encode(text, false).unwrap().get_ids()
    );
}

#[test]
fn tiny_llama_header_matches_metadata() {
    let f = GgufFile::open(fixture("tiny_llama.gguf")).unwrap();
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.tensors().len(), 3 + 2 * 9);
    let q = f.tensor_info("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dims, vec![32, 32]);
    let k = f.tensor_info("blk.1.attn_k.weight").unwrap();
    assert_eq!(k.shape(), vec![16, 32]); // [n_kv * head_dim, hidden]
}

#[test]
fn load_errors_name_what_is_wrong() {
    // a non-llama file
    let e = load_llama(fixture("synthetic.gguf"), &Device::Cpu, DType::F32).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("synthetic.gguf") && msg.contains("expected \"llama\""),
        "{msg}"
    );
    // bad json for the HF tokenizer loader
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    std::fs::write(&p, "{not json").unwrap();
    let msg = tokenizer::load_json(&p).unwrap_err().to_string();
    assert!(
        msg.contains("tokenizer.json") && msg.contains("Hugging Face"),
        "{msg}"
    );
}
