//! Checkpoints: interrupt after step k + resume == uninterrupted run, bit for bit (losses and
//! weights), for stateful methods (CrossLore: projectors, RSI RNG, residual index; LoRA with
//! dropout: the trainer's RNG), in layerwise mode with accumulation and clipping; atomic writes
//! and keep-last-K.

mod common;

use common::*;
use crosslore_train::checkpoint::list_checkpoints;
use crosslore_train::config::Method;
use crosslore_train::{TrainConfig, Trainer};

fn trainer(cfg: &TrainConfig) -> Trainer {
    Trainer::new(cfg.clone(), tiny_model(cfg), dataset(10, 5), 0).unwrap()
}

#[test]
fn resume_is_bit_identical() {
    for (method, layerwise) in [
        (Method::Crosslore, true),
        (Method::Crosslore, false),
        (Method::Galore, true),
        (Method::Lora, true),
        (Method::Dora, false),
        (Method::Adamw, true),
    ] {
        let mut cfg = tiny_train_config(method);
        cfg.layerwise = layerwise;
        cfg.grad_accum = 2;
        cfg.batch_size = 3; // 10 examples: batches cross epoch boundaries
        cfg.max_grad_norm = 0.5;
        cfg.max_steps = 7;
        cfg.lora_dropout = if method == Method::Lora { 0.1 } else { 0.0 };
        let dir = tempfile::tempdir().unwrap();

        let mut full = trainer(&cfg);
        let mut losses_full = Vec::new();
        for s in 1..=7 {
            losses_full.push(full.step().unwrap().loss);
            if s == 3 {
                full.save_checkpoint(dir.path(), 0).unwrap();
            }
        }
        let mut resumed = trainer(&cfg);
        resumed.resume_from(&dir.path().join("ckpt-3")).unwrap();
        assert_eq!(resumed.steps_done(), 3);
        let mut losses_res = losses_full[..3].to_vec();
        while !resumed.is_done() {
            losses_res.push(resumed.step().unwrap().loss);
        }
        let what = format!("{method:?} layerwise={layerwise}");
        assert_eq!(losses_res.len(), 7, "{what}");
        for (a, b) in losses_full.iter().zip(&losses_res) {
            assert_eq!(a.to_bits(), b.to_bits(), "{what}: loss {a} vs {b}");
        }
        let (wf, wr) = (weights(full.params()), weights(resumed.params()));
        let (d, name) = max_rel_diff(&wr, &wf);
        assert!(bitwise_equal(&wf, &wr), "{what}: {d:e} in {name}");

        // A trainer that does not resume diverges from the resumed one (the check can fail).
        let mut fresh = trainer(&cfg);
        for _ in 0..4 {
            fresh.step().unwrap();
        }
        assert!(!bitwise_equal(&weights(fresh.params()), &wr), "{what}");
    }
}

#[test]
fn keeps_last_k_and_ignores_partial_folders() {
    let cfg = tiny_train_config(Method::Lora);
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(&cfg);
    for _ in 0..4 {
        t.step().unwrap();
        t.save_checkpoint(dir.path(), 2).unwrap();
    }
    // A crash mid-write leaves a .tmp folder, and a folder without trainer.json is incomplete.
    std::fs::create_dir_all(dir.path().join("ckpt-9.tmp")).unwrap();
    std::fs::create_dir_all(dir.path().join("ckpt-8")).unwrap();
    let steps: Vec<usize> = list_checkpoints(dir.path())
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, vec![3, 4]);
    let c = dir.path().join("ckpt-4");
    for f in [
        "trainable.safetensors",
        "trainer.json",
        "config.toml",
        "optimizer/optimizer.json",
        "optimizer/optimizer.safetensors",
    ] {
        assert!(c.join(f).is_file(), "{f}");
    }
    // Adapter methods store only the adapters.
    let saved =
        candle_core::safetensors::load(c.join("trainable.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    assert!(
        saved.keys().all(|k| k.contains(".lora_")),
        "{:?}",
        saved.keys()
    );
    assert_eq!(saved.len(), t.params().len());
}

/// Pruning renames a checkpoint to `ckpt-<n>.del` before removing it: a kill during the removal
/// leaves a `.del` folder (possibly still holding its trainer.json), which is never listed as a
/// checkpoint and is cleaned up by the next save.
#[test]
fn a_half_removed_checkpoint_is_never_listed() {
    let cfg = tiny_train_config(Method::Lora);
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(&cfg);
    t.step().unwrap();
    t.save_checkpoint(dir.path(), 1).unwrap();
    // The kill: ckpt-1 was retired and its removal had deleted the weights, not trainer.json.
    std::fs::rename(dir.path().join("ckpt-1"), dir.path().join("ckpt-1.del")).unwrap();
    std::fs::remove_file(dir.path().join("ckpt-1.del/trainable.safetensors")).unwrap();
    assert!(dir.path().join("ckpt-1.del/trainer.json").is_file());
    assert!(list_checkpoints(dir.path()).unwrap().is_empty());
    t.step().unwrap();
    t.save_checkpoint(dir.path(), 1).unwrap();
    t.step().unwrap();
    t.save_checkpoint(dir.path(), 1).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["ckpt-3".to_string()],
        "no .del left, older pruned"
    );
}

/// Re-saving a step that already has a checkpoint moves the old one aside first; a crash between
/// the two renames leaves `ckpt-<n>.old`, which still counts, and the next save cleans it up.
#[test]
fn replacing_a_checkpoint_never_leaves_the_step_without_one() {
    let cfg = tiny_train_config(Method::Crosslore);
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(&cfg);
    t.step().unwrap();
    t.save_checkpoint(dir.path(), 0).unwrap();
    // The crash: the old checkpoint was moved aside, the new one not yet renamed into place.
    std::fs::rename(dir.path().join("ckpt-1"), dir.path().join("ckpt-1.old")).unwrap();
    std::fs::create_dir_all(dir.path().join("ckpt-1.tmp")).unwrap();
    let found = list_checkpoints(dir.path()).unwrap();
    assert_eq!(found, vec![(1, dir.path().join("ckpt-1.old"))]);
    let mut resumed = trainer(&cfg);
    resumed.resume_from(&found[0].1).unwrap();
    assert_eq!(resumed.steps_done(), 1);
    // Saving step 1 again replaces it cleanly.
    t.save_checkpoint(dir.path(), 0).unwrap();
    t.save_checkpoint(dir.path(), 0).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["ckpt-1".to_string()], "no .old/.tmp left");
    assert_eq!(
        list_checkpoints(dir.path()).unwrap(),
        vec![(1, dir.path().join("ckpt-1"))]
    );
}

#[test]
fn resume_errors_name_the_file() {
    let cfg = tiny_train_config(Method::Lora);
    let dir = tempfile::tempdir().unwrap();
    let mut t = trainer(&cfg);
    t.step().unwrap();
    let ckpt = t.save_checkpoint(dir.path(), 0).unwrap();
    // Another method.
    let mut other = trainer(&tiny_train_config(Method::Dora));
    let e = other.resume_from(&ckpt).unwrap_err().to_string();
    assert!(e.contains("trainer.json") && e.contains("Lora"), "{e}");
    // Missing folder.
    let e = trainer(&cfg)
        .resume_from(&dir.path().join("ckpt-77"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ckpt-77"), "{e}");
}
