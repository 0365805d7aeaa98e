//! `crosslore finetune` run as a process: config resolution (defaults, file, overrides in both
//! `key=value` and `--key value` forms) and a 2-step smoke run of every method on the tiny GGUF
//! fixture model, with evaluation before and after.

use std::path::PathBuf;
use std::process::{Command, Output};

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

#[test]
fn config_resolution() {
    let (out, _) = ok(bin()
        .args([
            "finetune",
            "--max-steps",
            "2",
            "--method",
            "lora",
            "rank=8",
            "--print-config",
        ])
        .output()
        .unwrap());
    let cfg: toml::Table = out.parse().unwrap();
    assert_eq!(cfg["max_steps"].as_integer(), Some(2));
    assert_eq!(cfg["method"].as_str(), Some("lora"));
    assert_eq!(cfg["rank"].as_integer(), Some(8));
    assert_eq!(cfg["task"].as_str(), Some("e2e_nlg"), "default kept");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(
        &file,
        "method = \"galore\"\nrank = 4\nlearning_rate = 0.01\n",
    )
    .unwrap();
    let (out, _) = ok(bin()
        .args([
            "finetune",
            "--config",
            file.to_str().unwrap(),
            "--print-config",
            "rank=2",
        ])
        .output()
        .unwrap());
    let cfg: toml::Table = out.parse().unwrap();
    assert_eq!(cfg["method"].as_str(), Some("galore"), "from the file");
    assert_eq!(cfg["rank"].as_integer(), Some(2), "override beats the file");
    assert_eq!(cfg["learning_rate"].as_float(), Some(0.01));

    let out = bin()
        .args(["finetune", "rnak=3", "--print-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rnak") && err.contains("did you mean `rank`"),
        "{err}"
    );
    let out = bin()
        .args(["finetune", "--config", "/no/such/run.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/run.toml"));
}

#[test]
fn every_method_runs_two_steps_on_the_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny();
    for method in ["crosslore", "galore", "lora", "dora", "adamw"] {
        let run_dir = dir.path().join(method);
        let (out, err) = ok(bin()
            .args(["finetune", "--method", method, "--max-steps", "2"])
            .arg(format!("model={}", model.display()))
            .arg(format!("output_dir={}", run_dir.display()))
            .args(["rank=4", "update_interval=1", "batch_size=2", "max_len=256"])
            .args(["eval_samples=2", "eval_max_new_tokens=4"])
            .output()
            .unwrap());
        assert!(out.contains("steps: 2"), "{method}: {out}\n{err}");
        assert!(out.contains("before -> after"), "{method}: {out}");
        assert!(
            err.contains("step 2/2"),
            "{method}: plain log lines off a terminal: {err}"
        );
        for f in ["summary.json", "metrics.jsonl", "config.toml"] {
            assert!(run_dir.join(f).is_file(), "{method}: {f} missing");
        }
        // the run folder's exported model generates through the CLI
        let (text, _) = ok(bin()
            .args(["generate", "--model", run_dir.to_str().unwrap()])
            .args(["--prompt", "hi", "--max-new-tokens", "3"])
            .output()
            .unwrap());
        assert!(text.ends_with('\n'));
    }
}
