//! `run_finetune` end to end on a tiny model saved as a Hugging Face folder with a word-level
//! tokenizer: run folder contents, metrics lines, checkpoints, export (merged model that loads
//! back with the same logits; peft-style adapters), and resuming a finished run for more steps.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::*;
use crosslore_model::{Llama, LoadOptions, Training};
use crosslore_train::config::Method;
use crosslore_train::{run_finetune, MetricsLog, TrainConfig};

fn run_cfg(model: &Path, out: &Path, method: Method) -> TrainConfig {
    TrainConfig {
        model: model.display().to_string(),
        task: "e2e_nlg".into(),
        max_steps: 3,
        batch_size: 2,
        max_len: 48,
        eval_samples: 4,
        save_every: 2,
        output_dir: Some(out.to_path_buf()),
        ..tiny_train_config(method)
    }
}

#[test]
fn finetune_writes_the_run_folder_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("tiny");
    write_tiny_folder(&model_dir);
    for method in [Method::Lora, Method::Crosslore] {
        let out = tmp.path().join(format!("run-{method:?}"));
        let cfg = run_cfg(&model_dir, &out, method);
        let s = run_finetune(&cfg).unwrap();
        assert_eq!((s.start_step, s.steps), (0, 3));
        assert!(s.train_examples > 100, "{}", s.train_examples);
        assert!(s.heldout_loss_before.is_some() && s.heldout_loss_after.is_some());
        for f in [
            "config.toml",
            "metrics.jsonl",
            "memory.json",
            "summary.json",
        ] {
            assert!(out.join(f).is_file(), "{f}");
        }
        // The resolved config reads back as the same config.
        let back = TrainConfig::from_file(&out.join("config.toml"), &[]).unwrap();
        assert_eq!(back, cfg);
        let lines = MetricsLog::read(&out.join("metrics.jsonl")).unwrap();
        assert_eq!(
            lines.iter().map(|l| l.step).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(lines
            .iter()
            .all(|l| l.loss.is_finite() && l.grad_norm > 0.0));
        if method == Method::Crosslore {
            // Projected parameters report their subspace residual, in [0, 1].
            let r = lines[0].subspace_residual.unwrap();
            assert!((0.0..=1.0).contains(&r), "{r}");
            assert!(lines[0].refreshed > 0);
        }
        let ckpts: Vec<usize> = crosslore_train::checkpoint::list_checkpoints(&out)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(ckpts, vec![2, 3]);

        // Export: HF names, shapes and dtypes; it loads back and gives the trained model's logits.
        let export = out.join("export");
        let st =
            candle_core::safetensors::load(export.join("model.safetensors"), &Device::Cpu).unwrap();
        let want = tiny_config().expected_tensors();
        assert_eq!(st.len(), want.len());
        for (name, shape) in &want {
            let t = &st[name];
            assert_eq!(t.dims(), shape.as_slice(), "{name}");
            assert_eq!(t.dtype(), DType::F32, "{name}");
        }
        assert!(export.join("tokenizer.json").is_file() && export.join("config.json").is_file());
        let exported = Llama::from_hf_folder(
            &export,
            &LoadOptions {
                training: Training::Frozen,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        // The trained model, rebuilt from its last checkpoint.
        let trained = Llama::from_hf_folder(
            &model_dir,
            &crosslore_train::run::load_options(&cfg).unwrap(),
        )
        .unwrap();
        crosslore_train::checkpoint::load_trainable(&out.join("ckpt-3"), &trained.params())
            .unwrap();
        let ids = Tensor::new(&[[3u32, 5, 9, 1, 2, 7]], &Device::Cpu).unwrap();
        let a = exported.forward(&ids, None).unwrap();
        let b = trained.forward(&ids, None).unwrap();
        let d = rel_diff(&a, &b);
        assert!(d < 1e-5, "{method:?}: exported logits differ by {d:e}");
        // Nonzero training effect: the exported weights differ from the initial ones.
        let init = Llama::from_hf_folder(&model_dir, &LoadOptions::default()).unwrap();
        assert!(rel_diff(&init.forward(&ids, None).unwrap(), &a) > 1e-5);

        if method == Method::Lora {
            let ad = out.join("adapter");
            let t =
                candle_core::safetensors::load(ad.join("adapter_model.safetensors"), &Device::Cpu)
                    .unwrap();
            // 2 layers x 7 projections x (A, B).
            assert_eq!(t.len(), 28);
            let k = "base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight";
            assert_eq!(t[k].dims(), &[4, 16]);
            let c: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(ad.join("adapter_config.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(c["peft_type"], "LORA");
            assert_eq!(c["r"], 4);
            assert_eq!(c["use_dora"], false);
            let base = c["base_model_name_or_path"].as_str().unwrap_or_default();
            assert!(base.ends_with("tiny"), "{base}");
        } else {
            assert!(s.adapter_dir.is_none());
        }

        // Resume the finished run for two more steps.
        let mut more = cfg.clone();
        more.resume = true;
        more.max_steps = 5;
        let s2 = run_finetune(&more).unwrap();
        assert_eq!((s2.start_step, s2.steps), (3, 2), "{method:?}");
        let lines = MetricsLog::read(&out.join("metrics.jsonl")).unwrap();
        assert_eq!(
            lines.iter().map(|l| l.step).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
    }
}

#[test]
fn bad_inputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = run_cfg(Path::new("/nonexistent/model"), tmp.path(), Method::Lora);
    let e = run_finetune(&cfg).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/model"), "{e}");
    let model_dir = tmp.path().join("tiny");
    write_tiny_folder(&model_dir);
    cfg.model = model_dir.display().to_string();
    cfg.task = "my_data.jsonl".into();
    let e = run_finetune(&cfg).unwrap_err().to_string();
    assert!(e.contains("data_format"), "{e}");
    // Every example longer than max_len: the error says so instead of "nothing to batch".
    cfg.task = "e2e_nlg".into();
    cfg.max_len = 4;
    let e = run_finetune(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("max_len = 4") && e.contains("e2e_nlg") && e.contains("dropped"),
        "{e}"
    );
}

#[test]
fn skip_final_checkpoint_writes_none() {
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("tiny");
    write_tiny_folder(&model_dir);
    let out = tmp.path().join("run");
    let mut cfg = run_cfg(&model_dir, &out, Method::Adamw);
    cfg.save_every = 0;
    cfg.eval_samples = 0;
    let opts = crosslore_train::RunOptions {
        skip_export: true,
        skip_final_checkpoint: true,
        ..Default::default()
    };
    let s = crosslore_train::run_finetune_with(&cfg, opts).unwrap();
    assert_eq!(s.steps, 3);
    assert!(s.checkpoint.is_none());
    assert!(crosslore_train::checkpoint::list_checkpoints(&out)
        .unwrap()
        .is_empty());
    // Without the flag the end of the run is checkpointed.
    let s = crosslore_train::run_finetune_with(&cfg, Default::default()).unwrap();
    assert_eq!(s.checkpoint, Some(out.join("ckpt-3")));
}
