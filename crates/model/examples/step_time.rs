//! Seconds per forward+backward of a SmolLM2-135M-shaped LLaMA with random weights on CPU
//! (no files needed): `cargo run --release -p crosslore-model --example step_time -- [SEQ] [full|lora|dora]`.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use crosslore_model::{
    causal_lm_loss, AdapterConfig, AdapterKind, Llama, LlamaConfig, LoadOptions, TargetModules,
    Training,
};

fn main() -> anyhow::Result<()> {
    let seq: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(64);
    let mode = std::env::args().nth(2).unwrap_or_else(|| "full".into());
    let cfg = LlamaConfig::from_json_value(
        serde_json::json!({
            "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
            "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": true,
        }),
        "SmolLM2-135M shape",
    )?;
    let dev = Device::Cpu;
    let mut tensors = HashMap::new();
    for (name, shape) in cfg.expected_tensors() {
        let t = if shape.len() == 1 {
            Tensor::ones(shape.as_slice(), DType::F32, &dev)?
        } else {
            Tensor::randn(0f32, 0.02, shape.as_slice(), &dev)?
        };
        tensors.insert(name, t);
    }
    let adapter = |kind| {
        Training::Adapter(AdapterConfig {
            kind,
            rank: 16,
            alpha: 32.0,
            dropout: 0.05,
            targets: TargetModules::AllLinear,
            init_seed: 0,
        })
    };
    let training = match mode.as_str() {
        "lora" => adapter(AdapterKind::Lora),
        "dora" => adapter(AdapterKind::Dora),
        _ => Training::Full,
    };
    let opts = LoadOptions {
        dtype: DType::F32,
        device: dev.clone(),
        training,
    };
    let m = Llama::from_tensors(cfg, tensors, &opts)?;
    let ids: Vec<u32> = (0..seq as u32).map(|i| (i * 7919) % 49152).collect();
    let ids = Tensor::from_vec(ids, (1, seq), &dev)?;
    let labels = ids.to_dtype(DType::I64)?;
    for step in 0..3 {
        let t = Instant::now();
        let ctx = m.context(1, seq, None, true, step)?;
        let loss = causal_lm_loss(&m.forward_with(&ids, &ctx)?, &labels, None)?;
        let t_fwd = t.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        let n = m
            .params()
            .iter()
            .filter(|(_, v)| grads.get(v.as_tensor()).is_some())
            .count();
        println!(
            "{mode} seq {seq}: forward {t_fwd:.2}s, forward+backward {:.2}s, loss {:.4}, {n} grads",
            t.elapsed().as_secs_f64(),
            loss.to_scalar::<f32>()?
        );
    }
    Ok(())
}
