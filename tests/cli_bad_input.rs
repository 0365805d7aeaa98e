//! Bad input through `crosslore finetune` as a user meets it (issue 7 item 1): for each class of
//! bad file or value, the process exits with status 1, the message names the file (and the
//! line / field / key) and what was expected, and the run folder is not created (nothing
//! half-done is written).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tiny_gguf() -> PathBuf {
    root().join("crates/model/tests/fixtures/gguf/tiny_llama.gguf")
}

/// Runs `finetune` with `args` into `<tmp>/run` and checks the failure.
fn fails(tmp: &Path, args: &[String], expect: &[&str]) {
    let run = tmp.join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_crosslore"))
        .arg("finetune")
        .arg(format!("output_dir={}", run.display()))
        .args([
            "max_steps=1",
            "eval_samples=0",
            "batch_size=2",
            "max_len=256",
        ])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    for e in expect {
        assert!(err.contains(e), "{args:?}: expected `{e}` in: {err}");
    }
    assert!(!run.exists(), "{args:?}: the run folder was created");
}

fn model_arg(p: &Path) -> String {
    format!("model={}", p.display())
}

#[test]
fn bad_model_files() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(tiny_gguf()).unwrap();
    let data = root().join("fuzz/corpus/dataset/seed-e2e-nlg");
    let task = [
        format!("task={}", data.display()),
        "data_format=e2e_nlg".to_string(),
    ];

    // GGUF: truncated, wrong magic.
    let trunc = tmp.path().join("truncated.gguf");
    std::fs::write(&trunc, &good[..good.len() / 3]).unwrap();
    let mut args = vec![model_arg(&trunc)];
    args.extend(task.clone());
    fails(tmp.path(), &args, &[trunc.to_str().unwrap()]);
    let magic = tmp.path().join("magic.gguf");
    let mut b = good.clone();
    b[..4].copy_from_slice(b"GGUX");
    std::fs::write(&magic, &b).unwrap();
    args[0] = model_arg(&magic);
    fails(tmp.path(), &args, &[magic.to_str().unwrap(), "GGUF"]);
    // A missing model file.
    args[0] = model_arg(&tmp.path().join("none.gguf"));
    fails(tmp.path(), &args, &["none.gguf"]);

    // HF folder: safetensors with offsets past the end; config.json shape mismatch.
    let src = root().join("crates/model/tests/fixtures/tied_gqa");
    let hf = tmp.path().join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    let st = std::fs::read(src.join("model.safetensors")).unwrap();
    let cfg_text = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(hf.join("config.json"), &cfg_text).unwrap();
    std::fs::write(hf.join("model.safetensors"), &st[..st.len() - 16]).unwrap();
    args[0] = model_arg(&hf);
    fails(tmp.path(), &args, &["model.safetensors"]);
    std::fs::write(hf.join("model.safetensors"), &st).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg_text).unwrap();
    let h = cfg["intermediate_size"].as_u64().unwrap();
    cfg["intermediate_size"] = serde_json::json!(h + 8);
    std::fs::write(hf.join("config.json"), cfg.to_string()).unwrap();
    fails(tmp.path(), &args, &[hf.to_str().unwrap(), "mlp"]);
    // config.json that is not JSON.
    std::fs::write(hf.join("config.json"), "{\"hidden_size\": ").unwrap();
    fails(tmp.path(), &args, &["config.json"]);
}

#[test]
fn bad_run_configs() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_arg(&tiny_gguf());
    for (arg, expect) in [
        ("rank=0", vec!["rank", "at least 1"]),
        ("learning_rate=-1e-4", vec!["learning_rate", "positive"]),
        ("residual_ratio=1.5", vec!["residual_ratio", "[0, 1]"]),
        ("max_bad_steps=0", vec!["max_bad_steps"]),
        (
            "lerning_rate=1e-4",
            vec!["lerning_rate", "did you mean `learning_rate`"],
        ),
        ("method=sgd", vec!["method", "sgd"]),
    ] {
        fails(tmp.path(), &[m.clone(), arg.to_string()], &expect);
    }
    // Rank larger than a weight matrix of the model (tiny: smallest side 16).
    fails(
        tmp.path(),
        &[m.clone(), "method=galore".into(), "rank=4096".into()],
        &["rank", "4096"],
    );
    // Unknown key in a config file: the file and the key are named.
    let file = tmp.path().join("run.toml");
    std::fs::write(&file, "method = \"lora\"\nrnak = 8\n").unwrap();
    fails(
        tmp.path(),
        &[m, format!("--config={}", file.display())],
        &[file.to_str().unwrap(), "rnak", "did you mean `rank`"],
    );
}

#[test]
fn bad_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_arg(&tiny_gguf());
    let good = r#"{"prompt": "the cat", "response": "sat on a mat"}"#;
    for (name, bytes, expect) in [
        (
            "malformed.jsonl",
            format!("{good}\n{{\"prompt\": \"x\", \n").into_bytes(),
            vec![":2"],
        ),
        (
            "missing.jsonl",
            format!("{good}\n{good}\n{{\"prompt\": \"the cat\"}}\n").into_bytes(),
            vec![":3", "response"],
        ),
        ("empty.jsonl", Vec::new(), vec!["empty.jsonl"]),
        (
            "latin1.jsonl",
            b"{\"prompt\": \"caf\xe9\", \"response\": \"x\"}\n".to_vec(),
            vec!["latin1.jsonl", "UTF-8"],
        ),
    ] {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let mut expect = expect;
        let shown = path.display().to_string();
        expect.push(&shown);
        fails(
            tmp.path(),
            &[
                m.clone(),
                format!("task={}", path.display()),
                "data_format=prompt_response".into(),
            ],
            &expect,
        );
    }
}
