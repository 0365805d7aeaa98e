//! Probe: process RSS over optimizer steps for a mid-size random LLaMA (fake gradients), to
//! separate allocator retention / leaks of the optimizer from the training loop.
use candle_core::{Device, Tensor};
use crosslore_model::{Llama, LlamaConfig, LoadOptions};
use crosslore_optim::{AdamW, AdamWConfig, ParamOptimizer};
use crosslore_train::memory::current_rss_bytes;

fn main() -> anyhow::Result<()> {
    let v = serde_json::json!({"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 4,
        "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 16384,
        "tie_word_embeddings": true, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 256});
    let cfg = LlamaConfig::from_json_value(v, "probe")?;
    let mut tensors = std::collections::HashMap::new();
    for (name, shape) in cfg.expected_tensors() {
        tensors.insert(
            name,
            Tensor::randn(0f32, 0.02, shape.as_slice(), &Device::Cpu)?,
        );
    }
    let model = Llama::from_tensors(cfg, tensors, &LoadOptions::default())?;
    let params = model.params();
    let bytes: usize = params.iter().map(|(_, v)| v.elem_count() * 4).sum();
    println!("params {:.1} MB", bytes as f64 / 1e6);
    let mut opt = AdamW::new(AdamWConfig::default())?;
    let gb = || current_rss_bytes().unwrap_or(0) as f64 / 1e9;
    for step in 0..8 {
        for (name, var) in &params {
            let g = var.as_tensor().ones_like()?;
            opt.step_param(name, var, &g)?;
        }
        println!("adamw-only step {step}: rss {:.2} GB", gb());
    }
    drop(opt);
    // Forward + backward only (whole graph), no optimizer.
    let ids = Tensor::arange(0u32, 128, &Device::Cpu)?.reshape((2, 64))?;
    for step in 0..6 {
        let logits = model.forward_with(&ids, &model.context(2, 64, None, true, 0)?)?;
        let loss = crosslore_model::causal_lm_loss(&logits, &ids, None)?;
        let g = loss.backward()?;
        drop(g);
        println!("fwd/bwd-only step {step}: rss {:.2} GB", gb());
    }
    // The trainer.
    for layerwise in [true, false] {
        let tc = crosslore_train::TrainConfig {
            method: crosslore_train::Method::Adamw,
            layerwise,
            batch_size: 2,
            max_steps: 100,
            ..Default::default()
        };
        let data: Vec<crosslore_data::Encoded> = (0..8)
            .map(|i| crosslore_data::Encoded {
                input_ids: (0..64).map(|t| (t * 7 + i) as u32 % 16384).collect(),
                labels: (0..64).map(|t| ((t * 7 + i) % 16384) as i64).collect(),
                truncated: false,
            })
            .collect();
        let mut tr = crosslore_train::Trainer::new(tc, model.clone(), data, 0)?;
        for step in 0..6 {
            tr.step()?;
            println!(
                "trainer layerwise={layerwise} step {step}: rss {:.2} GB",
                gb()
            );
        }
    }
    Ok(())
}
