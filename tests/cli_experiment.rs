//! `crosslore experiment` run as a process: a one-step grid on the tiny GGUF fixture model writes
//! the summary and plots; a bad spec fails with the file and key named.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crosslore"))
}

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/model/tests/fixtures/gguf/tiny_llama.gguf")
}

#[test]
fn a_tiny_grid_runs_and_a_bad_spec_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("tiny.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"tiny\"\ntask = \"e2e_nlg\"\nmethods = [\"adamw\", \"galore\"]\nranks = [4]\n\
             seeds = [1, 2]\n[eval]\nsamples = 2\nmax_new_tokens = 3\n\
             [base]\nmodel = \"{}\"\nmax_steps = 1\nbatch_size = 2\nmax_len = 256\n",
            tiny().display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let o = bin()
        .args([
            "experiment",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("| galore | 4 |") && stdout.contains("| 2 |"),
        "{stdout}"
    );
    for f in [
        "summary.md",
        "summary.json",
        "plots/metric-bleu.png",
        "plots/loss-curves.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }

    std::fs::write(
        &spec,
        "name = \"x\"\ntask = \"e2e_nlg\"\nmethods = [\"lora\"]\n",
    )
    .unwrap();
    let o = bin()
        .args(["experiment", spec.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("tiny.toml") && stderr.contains("ranks"),
        "{stderr}"
    );
}
