//! `crosslore --help`, `generate` and `eval` run as processes on the tiny GGUF fixture model
//! (random weights, byte-level tokenizer), and as a Hugging Face folder exported from it.

use std::path::PathBuf;
use std::process::{Command, Output};

use candle_core::{DType, Device};
use crosslore_model::generate::{generate_text, GenerateConfig};
use crosslore_model::gguf::load_llama;
use crosslore_model::{Llama, LlamaConfig, LoadOptions, Training};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crosslore"))
}

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/model/tests/fixtures/gguf/tiny_llama.gguf")
}

fn ok(out: Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    (stdout, stderr)
}

fn gen(model: &str, extra: &[&str]) -> Output {
    bin()
        .args(["generate", "--model", model, "--prompt", "hello world"])
        .args(extra)
        .output()
        .unwrap()
}

fn tiny_model() -> (Llama, tokenizers::Tokenizer) {
    let g = load_llama(tiny(), &Device::Cpu, DType::F32).unwrap();
    let config = LlamaConfig::from_json_value(g.config.clone(), "tiny").unwrap();
    let opts = LoadOptions {
        training: Training::Frozen,
        ..LoadOptions::default()
    };
    (
        Llama::from_tensors(config, g.tensors, &opts).unwrap(),
        g.tokenizer,
    )
}

#[test]
fn help_lists_subcommands_and_defaults() {
    let (out, _) = ok(bin().arg("--help").output().unwrap());
    for sub in ["finetune", "eval", "score", "generate"] {
        assert!(out.contains(sub), "{sub} missing from --help:\n{out}");
    }
    let (out, _) = ok(bin().args(["finetune", "--help"]).output().unwrap());
    assert!(out.contains("method = \"crosslore\""), "{out}");
    assert!(out.contains("residual_ratio = 0.012"), "{out}");
    let (out, _) = ok(bin().args(["generate", "--help"]).output().unwrap());
    assert!(
        out.contains("[default: 64]") && out.contains("[default: smollm2]"),
        "{out}"
    );
    let out = bin().arg("frobnicate").output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn generate_on_tiny_gguf_matches_library_and_folder() {
    let model = tiny();
    let model = model.to_str().unwrap();
    let (text, log) = ok(gen(model, &["--max-new-tokens", "12"]));
    assert!(log.contains("tokens/s"), "{log}");
    // the library, greedy with the same end markers
    let (m, tok) = tiny_model();
    let mut eos: Vec<u32> = m
        .config
        .eos_token_id
        .as_ref()
        .map(|e| e.ids())
        .unwrap_or_default();
    for marker in ["<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>"] {
        eos.extend(tok.token_to_id(marker));
    }
    let cfg = GenerateConfig {
        max_new_tokens: 12,
        eos_ids: eos,
        ..GenerateConfig::default()
    };
    let want = generate_text(&m, &tok, &["hello world"], &cfg).unwrap();
    assert_eq!(text, format!("{}\n", want[0].text.as_deref().unwrap()));

    // without the KV cache: same text
    let (slow, log) = ok(gen(model, &["--max-new-tokens", "12", "--no-cache"]));
    assert_eq!(slow, text);
    assert!(log.contains("no cache"));

    // the same model as a Hugging Face folder (config.json, model.safetensors, tokenizer.json)
    let dir = tempfile::tempdir().unwrap();
    m.save_hf_folder(dir.path(), DType::F32).unwrap();
    crosslore_model::tokenizer::save(&tok, dir.path().join("tokenizer.json")).unwrap();
    let (folder, _) = ok(gen(
        dir.path().to_str().unwrap(),
        &["--max-new-tokens", "12"],
    ));
    assert_eq!(folder, text);

    // seeded sampling repeats; another seed differs
    let s = |seed: &str| {
        ok(gen(
            model,
            &[
                "--max-new-tokens",
                "16",
                "--temperature",
                "1.5",
                "--seed",
                seed,
            ],
        ))
        .0
    };
    assert_eq!(s("5"), s("5"));
    assert_ne!(s("5"), s("6"));
}

#[test]
fn generate_errors_are_clear() {
    let out = gen("/no/such/model.gguf", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/model.gguf"), "{err}");
    let model = tiny();
    let out = gen(
        model.to_str().unwrap(),
        &["--temperature", "1", "--top-p", "0"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("top_p"));
}

#[test]
fn eval_on_tiny_model_writes_report() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny();
    for (task, keys) in [
        ("mathqa", vec!["accuracy"]),
        (
            "e2e_nlg",
            vec![
                "bleu",
                "nist",
                "meteor",
                "rouge1",
                "rouge2",
                "rougeL",
                "rougeLsum",
                "cider",
            ],
        ),
    ] {
        let report = dir.path().join(format!("{task}.json"));
        let (table, _) = ok(bin()
            .args(["eval", "--model", model.to_str().unwrap(), "--task", task])
            .args([
                "--samples",
                "3",
                "--max-new-tokens",
                "6",
                "--template",
                "plain",
            ])
            .args(["--output", report.to_str().unwrap()])
            .output()
            .unwrap());
        assert!(table.contains(&format!("{task} (3 examples)")), "{table}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!(v["examples"], 3);
        assert_eq!(v["outputs"].as_array().unwrap().len(), 3);
        let metrics = v["metrics"].as_object().unwrap();
        for k in keys {
            let m = &metrics[k];
            // a number, or null with the metric's error recorded
            assert!(
                m.is_number() || !v["metric_errors"].as_object().unwrap().is_empty(),
                "{task} {k}: {v}"
            );
        }
        if task == "mathqa" {
            let acc = metrics["accuracy"].as_f64().unwrap();
            let right = v["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["correct"] == true)
                .count();
            assert_eq!(acc, right as f64 / 3.0);
        } else {
            assert!(v["outputs"][0]["references"].as_array().unwrap().len() > 1);
        }
    }
    // a data file with its format, and one whose format is detected from its fields
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/data/tests/fixtures");
    for (file, format) in [("gsm8k.jsonl", Some("gsm8k")), ("mawps.json", None)] {
        let report = dir.path().join(format!("{file}.json"));
        let mut cmd = bin();
        cmd.args(["eval", "--model", model.to_str().unwrap(), "--task"])
            .arg(fixtures.join(file))
            .args(["--samples", "2", "--max-new-tokens", "4", "--output"])
            .arg(&report);
        if let Some(f) = format {
            cmd.args(["--format", f]);
        }
        ok(cmd.output().unwrap());
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert!(v["metrics"]["accuracy"].is_number(), "{file}: {v}");
        assert!(v["outputs"][0]["correct"].is_boolean(), "{file}: {v}");
    }
    let out = bin()
        .args([
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--task",
            "nonexistent_task",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent_task"));
}
