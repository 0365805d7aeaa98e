//! KV-cached, batched generation against the no-cache path (full recompute through
//! `Llama::forward` every step) on the tiny random fixture models, sampling determinism, stop
//! conditions and input errors.

mod common;

use candle_core::{DType, Device};
use common::fixture;
use crosslore_model::generate::{generate, FinishReason, GenerateConfig, Generation, Sampling};
use crosslore_model::gguf::load_llama;
use crosslore_model::{Llama, LlamaConfig, LoadOptions, Training};
use tokenizers::Tokenizer;

const CASES: [&str; 3] = ["tied_gqa", "untied_linear", "llama3_headdim"];

fn frozen(dtype: DType) -> LoadOptions {
    LoadOptions {
        dtype,
        device: Device::Cpu,
        training: Training::Frozen,
    }
}

fn load(case: &str) -> Llama {
    Llama::from_hf_folder(&fixture(case), &frozen(DType::F32)).unwrap()
}

/// Prompts of different lengths (so the batch is left-padded), ids spread over the vocabulary.
fn prompts(vocab: usize) -> Vec<Vec<u32>> {
    [(3usize, 5usize), (7, 1), (1, 11), (5, 2)]
        .iter()
        .map(|&(len, mul)| {
            (0..len)
                .map(|i| ((i * 31 * mul + 7 * len) % vocab) as u32)
                .collect()
        })
        .collect()
}

fn tokens(g: &[Generation]) -> Vec<Vec<u32>> {
    g.iter().map(|g| g.tokens.clone()).collect()
}

#[test]
fn cached_batched_greedy_equals_full_recompute() {
    for case in CASES {
        let m = load(case);
        let p = prompts(m.config.vocab_size);
        let reference = GenerateConfig {
            max_new_tokens: 12,
            use_cache: false,
            ..GenerateConfig::default()
        };
        let want = generate(&m, &p, &reference, None).unwrap();
        assert!(want.iter().all(|g| g.tokens.len() == 12));
        assert!(want.iter().all(|g| g.finish == FinishReason::Length));
        for batch_size in [0, 1, 3] {
            let cfg = GenerateConfig {
                use_cache: true,
                batch_size,
                ..reference.clone()
            };
            let got = generate(&m, &p, &cfg, None).unwrap();
            assert_eq!(
                tokens(&got),
                tokens(&want),
                "{case}, batch size {batch_size}"
            );
        }
        // the convenience wrapper agrees too
        assert_eq!(m.generate_greedy(&p[1], 12, &[]).unwrap(), want[1].tokens);
    }
}

#[test]
fn cached_greedy_equals_recompute_in_bf16() {
    // bf16 logits are coarse; with the same op order per position the two paths still agree on
    // these fixtures (a mismatch here would mean a different computation, not rounding).
    let m = Llama::from_hf_folder(&fixture("tied_gqa"), &frozen(DType::BF16)).unwrap();
    let p = prompts(m.config.vocab_size);
    let base = GenerateConfig {
        max_new_tokens: 6,
        batch_size: 1,
        ..GenerateConfig::default()
    };
    let cached = generate(&m, &p, &base, None).unwrap();
    let full = generate(
        &m,
        &p,
        &GenerateConfig {
            use_cache: false,
            ..base.clone()
        },
        None,
    )
    .unwrap();
    assert_eq!(tokens(&cached), tokens(&full));
}

#[test]
fn sampling_is_deterministic_per_seed_and_batch_independent() {
    let m = load("tied_gqa");
    let p = prompts(m.config.vocab_size);
    let cfg = |seed, use_cache, batch_size| GenerateConfig {
        max_new_tokens: 16,
        sampling: Sampling::Sample {
            temperature: 1.5,
            top_p: 0.95,
            seed,
        },
        use_cache,
        batch_size,
        ..GenerateConfig::default()
    };
    let a = tokens(&generate(&m, &p, &cfg(7, true, 0), None).unwrap());
    let b = tokens(&generate(&m, &p, &cfg(7, true, 0), None).unwrap());
    assert_eq!(a, b, "same seed, same tokens");
    let per_prompt = tokens(&generate(&m, &p, &cfg(7, true, 1), None).unwrap());
    assert_eq!(
        a, per_prompt,
        "a prompt's sample does not depend on its batch"
    );
    let recompute = tokens(&generate(&m, &p, &cfg(7, false, 1), None).unwrap());
    assert_eq!(a, recompute, "cached and recomputed sampling agree");
    let other = tokens(&generate(&m, &p, &cfg(8, true, 0), None).unwrap());
    assert_ne!(a, other, "another seed draws other tokens");
    let greedy = tokens(
        &generate(
            &m,
            &p,
            &GenerateConfig {
                max_new_tokens: 16,
                ..GenerateConfig::default()
            },
            None,
        )
        .unwrap(),
    );
    assert_ne!(a, greedy, "temperature 1.5 sampling is not greedy");
    // a nucleus smaller than the top token's probability keeps only that token: greedy
    let tiny_p = GenerateConfig {
        max_new_tokens: 16,
        sampling: Sampling::Sample {
            temperature: 1.0,
            top_p: 1e-9,
            seed: 3,
        },
        ..GenerateConfig::default()
    };
    assert_eq!(tokens(&generate(&m, &p, &tiny_p, None).unwrap()), greedy);
}

#[test]
fn eos_ends_each_row_alone() {
    let m = load("untied_linear");
    let p = prompts(m.config.vocab_size);
    let base = GenerateConfig {
        max_new_tokens: 10,
        ..GenerateConfig::default()
    };
    let free = generate(&m, &p, &base, None).unwrap();
    // declare prompt 0's 4th token an EOS: prompt 0 stops before it, others only where they
    // produce it themselves
    let eos = free[0].tokens[3];
    let cfg = GenerateConfig {
        eos_ids: vec![eos],
        ..base.clone()
    };
    for use_cache in [true, false] {
        let got = generate(
            &m,
            &p,
            &GenerateConfig {
                use_cache,
                ..cfg.clone()
            },
            None,
        )
        .unwrap();
        for (g, f) in got.iter().zip(&free) {
            match f.tokens.iter().position(|&t| t == eos) {
                Some(k) => {
                    assert_eq!(g.tokens, f.tokens[..k]);
                    assert_eq!(g.finish, FinishReason::Eos { id: eos });
                }
                None => {
                    assert_eq!(g.tokens, f.tokens);
                    assert_eq!(g.finish, FinishReason::Length);
                }
            }
        }
    }
    let k = free[0].tokens.iter().position(|&t| t == eos).unwrap();
    let mut with_stop = free[0].tokens[..k].to_vec();
    with_stop.push(eos);
    assert_eq!(m.generate_greedy(&p[0], 10, &[eos]).unwrap(), with_stop);
    // max_new_tokens = 0 generates nothing
    let none = generate(
        &m,
        &p,
        &GenerateConfig {
            max_new_tokens: 0,
            ..base
        },
        None,
    )
    .unwrap();
    assert!(none.iter().all(|g| g.tokens.is_empty()));
}

fn tiny_gguf() -> (Llama, Tokenizer) {
    let g = load_llama(
        fixture("gguf").join("tiny_llama.gguf"),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let config = LlamaConfig::from_json_value(g.config.clone(), "tiny_llama.gguf").unwrap();
    let m = Llama::from_tensors(config, g.tensors, &frozen(DType::F32)).unwrap();
    (m, g.tokenizer)
}

#[test]
fn stop_strings_cut_the_text() {
    let (m, tok) = tiny_gguf();
    let prompt = tok.encode("hello world", false).unwrap().get_ids().to_vec();
    let base = GenerateConfig {
        max_new_tokens: 24,
        ..GenerateConfig::default()
    };
    let free = generate(&m, std::slice::from_ref(&prompt), &base, Some(&tok)).unwrap();
    let text = free[0].text.clone().unwrap();
    assert_eq!(text, tok.decode(&free[0].tokens, true).unwrap());
    // a stop string from the middle of the free text (3 chars starting at the 2nd char boundary
    // after a quarter of the text)
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    assert!(
        chars.len() >= 8,
        "text too short to test stop strings: {text:?}"
    );
    let start = chars[chars.len() / 4].0;
    let stop: String = text[start..].chars().take(3).collect();
    let cut = text.find(&stop).unwrap();
    let cfg = GenerateConfig {
        stop_strings: vec!["\u{1F600}never".into(), stop.clone()],
        ..base
    };
    for use_cache in [true, false] {
        let got = generate(
            &m,
            std::slice::from_ref(&prompt),
            &GenerateConfig {
                use_cache,
                ..cfg.clone()
            },
            Some(&tok),
        )
        .unwrap();
        assert_eq!(got[0].finish, FinishReason::StopString);
        assert_eq!(got[0].text.as_deref(), Some(&text[..cut]), "stop {stop:?}");
        assert!(got[0].tokens.len() < free[0].tokens.len());
        assert_eq!(got[0].tokens[..], free[0].tokens[..got[0].tokens.len()]);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let m = load("tied_gqa");
    let ok = vec![vec![1u32, 2, 3]];
    let cfg = GenerateConfig::default();
    let err =
        |p: &[Vec<u32>], c: &GenerateConfig| generate(&m, p, c, None).unwrap_err().to_string();
    assert!(err(&[vec![]], &cfg).contains("prompt 0 has no tokens"));
    assert!(err(&[vec![1, 500]], &cfg).contains("500 >= vocab_size 128"));
    let sample = |temperature, top_p| GenerateConfig {
        sampling: Sampling::Sample {
            temperature,
            top_p,
            seed: 0,
        },
        ..GenerateConfig::default()
    };
    assert!(err(&ok, &sample(0.0, 0.9)).contains("temperature"));
    assert!(err(&ok, &sample(f64::NAN, 0.9)).contains("temperature"));
    assert!(err(&ok, &sample(1.0, 0.0)).contains("top_p"));
    assert!(err(&ok, &sample(1.0, 1.5)).contains("top_p"));
    let stop = GenerateConfig {
        stop_strings: vec!["x".into()],
        ..GenerateConfig::default()
    };
    assert!(err(&ok, &stop).contains("need a tokenizer"));
    let empty_stop = GenerateConfig {
        stop_strings: vec![String::new()],
        ..GenerateConfig::default()
    };
    assert!(err(&ok, &empty_stop).contains("must not be empty"));
}
