//! Crash safety of `crosslore finetune` as a process (issue 7 item 3):
//!
//! - SIGKILL at seeded random moments, over and over (many of them while a checkpoint is being
//!   written, which is most of what a step of the tiny model does with `save_every = 1`): after
//!   every kill the newest checkpoint loads, and `resume=true` runs continue to a final state
//!   that is bit-identical to an uninterrupted run's (trainable tensors, optimizer state files,
//!   and the loss of every step in `metrics.jsonl`);
//! - SIGTERM and SIGINT: the run stops after the current step with a checkpoint, exit status
//!   128 + signal, `summary.json` saying `stopped_early`; resuming finishes bit-identically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crosslore_linalg::Rng;
use crosslore_train::checkpoint::{latest_checkpoint, list_checkpoints, TrainerState};
use crosslore_train::MetricsLog;

const STEPS: usize = 30;

fn tiny_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/model/tests/fixtures/gguf/tiny_llama.gguf")
}

/// 40 prompt/response pairs from a fixed seed (words the tiny tokenizer knows).
fn write_data(dir: &Path) -> PathBuf {
    let words = "the cat sat on a mat and ran to the red house near water"
        .split(' ')
        .collect::<Vec<_>>();
    let mut rng = Rng::new(11);
    let mut pick = |n: usize| {
        (0..n)
            .map(|_| words[rng.below(words.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut text = String::new();
    for _ in 0..40 {
        let rec = serde_json::json!({"prompt": pick(5), "response": pick(8)});
        text.push_str(&rec.to_string());
        text.push('\n');
    }
    let path = dir.join("data.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

/// `crosslore finetune` on the tiny model: CrossLore (projectors, RSI RNG, residual index all in
/// the checkpoint), layerwise with accumulation and clipping, a checkpoint every step.
fn finetune(data: &Path, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crosslore"));
    c.arg("finetune")
        .arg(format!("model={}", tiny_model().display()))
        .arg(format!("task={}", data.display()))
        .arg(format!("output_dir={}", out.display()))
        .args(["data_format=prompt_response", "method=crosslore"])
        .arg(format!("max_steps={STEPS}"))
        .args(["save_every=1", "keep_checkpoints=2", "eval_samples=0"])
        .args([
            "batch_size=2",
            "grad_accum=2",
            "layerwise=true",
            "max_len=256",
        ])
        .args(["rank=4", "update_interval=3", "residual_ratio=0.05"])
        .arg(format!("resume={resume}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The newest checkpoint by relative path: the bytes of the trainable tensors and optimizer
/// state files, and of `trainer.json` without its `config` (which names the run folder).
fn final_state(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let ckpt = latest_checkpoint(run).unwrap().expect("a checkpoint");
    let mut out = BTreeMap::new();
    let mut stack = vec![ckpt.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&ckpt).unwrap().display().to_string();
                let bytes = std::fs::read(&p).unwrap();
                match rel.as_str() {
                    "config.toml" => {}
                    "trainer.json" => {
                        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                        v.as_object_mut().unwrap().remove("config");
                        out.insert(rel, v.to_string().into_bytes());
                    }
                    _ => {
                        out.insert(rel, bytes);
                    }
                }
            }
        }
    }
    out
}

/// Loss bits by step from `metrics.jsonl` (every step is logged once).
fn losses(run: &Path) -> Vec<(usize, u64)> {
    MetricsLog::read(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|m| (m.step, m.loss.to_bits()))
        .collect()
}

/// Every listed checkpoint is complete: its state parses and its tensors load.
fn assert_loadable(run: &Path) {
    for (step, dir) in list_checkpoints(run).unwrap() {
        let json = std::fs::read(dir.join("trainer.json")).unwrap();
        let state: TrainerState =
            serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert_eq!(state.step, step, "{}", dir.display());
        candle_core::safetensors::load(
            dir.join("trainable.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
}

fn reference(tmp: &Path, data: &Path) -> PathBuf {
    let run = tmp.join("reference");
    let out = finetune(data, &run, false).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run
}

fn wait_for_steps(child: &mut Child, run: &Path, steps: usize) {
    let t = Instant::now();
    loop {
        let n = std::fs::read_to_string(run.join("metrics.jsonl"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n >= steps {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before step {steps}");
        }
        assert!(t.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_data(tmp.path());
    let reference = reference(tmp.path(), &data);

    let run = tmp.path().join("killed");
    let mut rng = Rng::new(2026);
    let (mut kills, mut during_write, mut mid_run) = (0, 0, 0);
    let t = Instant::now();
    loop {
        let mut child = finetune(&data, &run, true).spawn().unwrap();
        if kills < 25 {
            // Let it load and start (the first checkpoint), then kill at a random moment.
            wait_for_steps(&mut child, &run, 1);
            std::thread::sleep(Duration::from_millis(rng.below(400)));
            let _ = child.kill(); // SIGKILL
            let status = child.wait().unwrap();
            if status.success() {
                break; // finished before the kill
            }
            kills += 1;
            let names: Vec<String> = std::fs::read_dir(&run)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            if names
                .iter()
                .any(|n| n.ends_with(".tmp") || n.ends_with(".old"))
            {
                during_write += 1;
            }
            let done = list_checkpoints(&run).unwrap().last().map_or(0, |c| c.0);
            if done < STEPS {
                mid_run += 1;
            }
            assert_loadable(&run);
        } else {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            break;
        }
    }
    eprintln!(
        "{kills} SIGKILLs ({mid_run} mid-run, {during_write} while a checkpoint was being \
         written), {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        mid_run >= 5,
        "the kills must interrupt the run: {mid_run} of {kills}"
    );
    // The run may have finished before the 25th kill; make sure it is finished.
    if list_checkpoints(&run).unwrap().last().map(|c| c.0) != Some(STEPS) {
        let out = finetune(&data, &run, true).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(losses(&run), losses(&reference), "loss of every step");
    let (a, b) = (final_state(&run), final_state(&reference));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(
            bytes == &b[name],
            "{name} differs from the uninterrupted run"
        );
    }
}

#[test]
fn sigterm_and_sigint_stop_with_a_checkpoint_and_resume_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_data(tmp.path());
    let reference = reference(tmp.path(), &data);
    for (sig, name) in [(15, "TERM"), (2, "INT")] {
        let run = tmp.path().join(format!("sig{name}"));
        let mut child = finetune(&data, &run, true).spawn().unwrap();
        wait_for_steps(&mut child, &run, 3);
        let kill = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(128 + sig), "SIG{name}: {err}");
        assert!(err.contains("resume=true"), "SIG{name}: {err}");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["stopped_early"], true, "SIG{name}");
        let stopped_at = summary["steps"].as_u64().unwrap() as usize;
        assert!((3..STEPS).contains(&stopped_at), "SIG{name}: {stopped_at}");
        // The checkpoint of the step it stopped at is there and complete.
        let last = list_checkpoints(&run).unwrap().pop().unwrap();
        assert_eq!(last.0, stopped_at, "SIG{name}");
        assert_loadable(&run);
        assert!(
            !run.join("export").exists(),
            "SIG{name}: no export of a stopped run"
        );

        let out = finetune(&data, &run, true).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(losses(&run), losses(&reference), "SIG{name}");
        assert!(final_state(&run) == final_state(&reference), "SIG{name}");
    }
}
