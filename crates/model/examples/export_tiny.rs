//! Writes a merged-DoRA export of the tiny `tied_gqa` fixture model, plus this crate's logits on
//! the fixture inputs, for `scripts/check_export.py` to load with transformers and compare.
//!
//! `cargo run --release -p crosslore-model --example export_tiny -- OUT_DIR`

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use crosslore_model::{AdapterConfig, AdapterKind, Llama, LoadOptions, TargetModules, Training};

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("usage: export_tiny OUT_DIR"))?,
    );
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let opts = LoadOptions {
        dtype: DType::F32,
        device: Device::Cpu,
        training: Training::Adapter(AdapterConfig {
            kind: AdapterKind::Dora,
            rank: 4,
            alpha: 6.0,
            dropout: 0.0,
            targets: TargetModules::AllLinear,
            init_seed: 5,
        }),
    };
    let model = Llama::from_hf_folder(&fx.join("tied_gqa"), &opts)?;
    // peft's adapter weights of the DoRA fixture (B non-zero), so the merge is not trivial
    let r = candle_core::safetensors::load(
        fx.join("dora_tied_gqa/reference.safetensors"),
        &Device::Cpu,
    )?;
    let adapters: HashMap<String, Tensor> = r
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("adapter.")
                .map(|n| (n.to_string(), v.clone()))
        })
        .collect();
    model.set_adapter_tensors(&adapters)?;
    let inp =
        candle_core::safetensors::load(fx.join("tied_gqa/reference.safetensors"), &Device::Cpu)?;
    let ids = inp["input_ids"].to_dtype(DType::U32)?;
    let mask = &inp["attention_mask"];
    let logits = model.forward(&ids, Some(mask))?;
    model.save_hf_folder(&out, DType::F32)?;
    let check: HashMap<String, Tensor> = [
        ("input_ids".to_string(), inp["input_ids"].clone()),
        ("attention_mask".to_string(), mask.clone()),
        ("logits".to_string(), logits),
    ]
    .into_iter()
    .collect();
    candle_core::safetensors::save(&check, out.join("rust_logits.safetensors"))?;
    println!("wrote {}", out.display());
    Ok(())
}
