//! Non-finite steps (issue 7 item 2): a NaN loss or gradient skips the step with the weights and
//! the optimizer state untouched (byte for byte), counts and logs it; `max_bad_steps`
//! consecutive skips stop the run with an error that names the last checkpoint, which is left as
//! it was.
//!
//! The fault is real, not mocked: the tiny model (untied head) gets a NaN row in its input
//! embedding for one token, so exactly the micro-batches containing that token produce a NaN
//! loss, through the normal forward, in every mode.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Tensor};
use common::*;
use crosslore_data::Encoded;
use crosslore_linalg::Rng;
use crosslore_model::{Llama, LlamaConfig};
use crosslore_train::config::Method;
use crosslore_train::run::load_options;
use crosslore_train::{TrainConfig, TrainError, Trainer};

/// The token whose embedding row is NaN.
const POISON: u32 = 63;

fn untied_config() -> LlamaConfig {
    let mut v = tiny_config().to_json_value(DType::F32);
    v["tie_word_embeddings"] = serde_json::json!(false);
    LlamaConfig::from_json_value(v, "tiny-untied").unwrap()
}

fn poisoned_model(cfg: &TrainConfig) -> Llama {
    let c = untied_config();
    let mut t = tiny_tensors(&c, 7);
    let name = "model.embed_tokens.weight";
    let emb = t[name].clone();
    let (v, h) = emb.dims2().unwrap();
    let mut rows = emb.to_vec2::<f32>().unwrap();
    rows[POISON as usize] = vec![f32::NAN; h];
    let rows: Vec<f32> = rows.into_iter().flatten().collect();
    t.insert(
        name.into(),
        Tensor::from_vec(rows, (v, h), emb.device()).unwrap(),
    );
    Llama::from_tensors(c, t, &load_options(cfg).unwrap()).unwrap()
}

/// `n` examples over tokens `0..POISON` (the rule of `common::dataset`); every `k`-th one
/// (`k > 0`) carries the poisoned token in its prompt.
fn data(n: usize, k: usize) -> Vec<Encoded> {
    let mut rng = Rng::new(9);
    (0..n)
        .map(|i| {
            let len = 6 + rng.below(6) as usize;
            let start = rng.below(POISON as u64 - 12) as u32;
            let mut ids: Vec<u32> = (0..len).map(|j| start + j as u32).collect();
            if k > 0 && i % k == 0 {
                ids[1] = POISON;
            }
            Encoded::from_ids(ids, 3)
        })
        .collect()
}

/// Trainable tensors and optimizer state files as bytes (NaN rows compare by their bits).
fn snapshot(t: &Trainer, dir: &Path) -> (Vec<Vec<u8>>, BTreeMap<String, Vec<u8>>) {
    let weights = t
        .params()
        .iter()
        .map(|(_, v)| {
            let x = v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            x.iter().flat_map(|f| f.to_bits().to_le_bytes()).collect()
        })
        .collect();
    let _ = std::fs::remove_dir_all(dir);
    t.optimizer().save(dir).unwrap();
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        files.insert(
            p.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(&p).unwrap(),
        );
    }
    (weights, files)
}

#[test]
fn nan_steps_are_skipped_with_weights_and_state_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    for method in [
        Method::Crosslore,
        Method::Galore,
        Method::Adamw,
        Method::Lora,
    ] {
        for (layerwise, clip, accum) in [
            (false, 1.0, 1),
            (true, 1.0, 2),
            (true, 0.0, 1),
            (false, 0.0, 2),
        ] {
            let what = format!("{method:?} layerwise={layerwise} clip={clip} accum={accum}");
            let mut cfg = tiny_train_config(method);
            cfg.layerwise = layerwise;
            cfg.max_grad_norm = clip;
            cfg.grad_accum = accum;
            cfg.batch_size = 2;
            cfg.max_steps = 12;
            cfg.max_bad_steps = 12;
            cfg.warmup_steps = 0; // lr 0 at step 1 would make a clean step a no-op too
                                  // Every 7th example is poisoned: some steps are clean, some are not.
            let mut t = Trainer::new(cfg.clone(), poisoned_model(&cfg), data(28, 7), 0).unwrap();
            let (mut skipped, mut clean) = (0, 0);
            while !t.is_done() {
                let before = snapshot(&t, &tmp.path().join("before"));
                let r = t.step().unwrap();
                let after = snapshot(&t, &tmp.path().join("after"));
                match &r.skipped {
                    Some(why) => {
                        skipped += 1;
                        assert!(why.contains("loss"), "{what}: {why}");
                        assert!(before.0 == after.0, "{what}: weights changed on a skip");
                        assert!(before.1 == after.1, "{what}: optimizer state changed");
                    }
                    None => {
                        clean += 1;
                        assert!(r.loss.is_finite(), "{what}");
                        assert!(before.0 != after.0, "{what}: a clean step must update");
                    }
                }
            }
            assert!(
                skipped > 0 && clean > 0,
                "{what}: {skipped} skipped, {clean} clean"
            );
            assert_eq!(t.skipped_steps(), skipped, "{what}");
            assert_eq!(t.steps_done(), 12, "{what}: skipped steps count as steps");
        }
    }
}

#[test]
fn consecutive_bad_steps_stop_the_trainer() {
    for layerwise in [false, true] {
        let mut cfg = tiny_train_config(Method::Crosslore);
        cfg.layerwise = layerwise;
        cfg.max_bad_steps = 3;
        cfg.max_steps = 10;
        // Every example poisoned: every step is bad.
        let mut t = Trainer::new(cfg.clone(), poisoned_model(&cfg), data(12, 1), 0).unwrap();
        assert!(t.step().unwrap().skipped.is_some());
        assert!(t.step().unwrap().skipped.is_some());
        match t.step() {
            Err(e @ TrainError::TooManyBadSteps { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("3 consecutive") && msg.contains("max_bad_steps"),
                    "{msg}"
                );
            }
            other => panic!("layerwise={layerwise}: expected TooManyBadSteps, got {other:?}"),
        }
    }
}

#[test]
fn a_good_step_resets_the_consecutive_count() {
    let mut cfg = tiny_train_config(Method::Adamw);
    cfg.batch_size = 1;
    cfg.max_bad_steps = 2;
    cfg.max_steps = 16;
    // Alternating poisoned / clean examples, batch 1: bad steps never come 2 in a row... unless
    // the shuffle puts two poisoned examples next to each other, which the count must allow
    // for: the trainer may stop only where two bad steps are adjacent.
    let mut t = Trainer::new(cfg.clone(), poisoned_model(&cfg), data(16, 2), 0).unwrap();
    let mut prev_bad = false;
    while !t.is_done() {
        match t.step() {
            Ok(r) => {
                prev_bad = r.skipped.is_some();
            }
            Err(TrainError::TooManyBadSteps { consecutive, .. }) => {
                assert!(prev_bad && consecutive == 2);
                return;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(t.skipped_steps() > 0);
}

/// Every file under `dir` by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The whole job: a LoRA run checkpoints at step 2; its base model then goes bad (NaN
/// embedding rows for every word); resuming skips, then stops after `max_bad_steps` with an
/// error naming the step-2 checkpoint, which is left byte for byte as it was, and no later
/// checkpoint is written.
#[test]
fn the_run_stops_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("tiny");
    write_tiny_folder(&model_dir);
    let out = tmp.path().join("run");
    let mut cfg = TrainConfig {
        model: model_dir.display().to_string(),
        task: "e2e_nlg".into(),
        max_steps: 2,
        batch_size: 2,
        max_len: 48,
        eval_samples: 0,
        save_every: 2,
        max_bad_steps: 2,
        output_dir: Some(out.clone()),
        ..tiny_train_config(Method::Lora)
    };
    let s = crosslore_train::run_finetune(&cfg).unwrap();
    assert_eq!((s.steps, s.skipped_steps), (2, 0));
    let ckpt = out.join("ckpt-2");
    let saved = tree(&ckpt);

    // Poison the frozen base: every embedding row NaN.
    let st = model_dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&st, &candle_core::Device::Cpu).unwrap();
    let emb = &t["model.embed_tokens.weight"];
    let nan = (emb.ones_like().unwrap() * f64::NAN).unwrap();
    t.insert("model.embed_tokens.weight".into(), nan);
    candle_core::safetensors::save(&t, &st).unwrap();

    cfg.max_steps = 6;
    cfg.resume = true;
    let err = crosslore_train::run_finetune(&cfg).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TrainError::TooManyBadSteps { consecutive: 2, .. }),
        "{msg}"
    );
    assert!(msg.contains(&ckpt.display().to_string()), "{msg}");
    assert!(
        tree(&ckpt) == saved,
        "the last good checkpoint must not change"
    );
    let ckpts = crosslore_train::checkpoint::list_checkpoints(&out).unwrap();
    assert_eq!(ckpts.iter().map(|c| c.0).collect::<Vec<_>>(), vec![2]);
    // The skipped steps were logged.
    let lines = crosslore_train::MetricsLog::read(&out.join("metrics.jsonl")).unwrap();
    let skipped: Vec<usize> = lines
        .iter()
        .filter(|l| l.skipped.is_some())
        .map(|l| l.step)
        .collect();
    assert_eq!(
        skipped,
        vec![3],
        "step 4 raised the error before it was logged"
    );
}
