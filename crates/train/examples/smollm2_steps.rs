//! Measurement: a short CPU fine-tune of the real SmolLM2-135M-Instruct on the shipped E2E NLG
//! train split, for one method. Prints the loss of each step, seconds per step, and the memory
//! report (process peak RSS is per process, so run one method/mode per invocation).
//!
//! `cargo run --release -p crosslore-train --example smollm2_steps -- <method> <steps> <batch>
//!  <max_len> <layerwise:0|1> [recompute:0|1]`

use crosslore_data::Split;
use crosslore_train::config::Method;
use crosslore_train::eval::heldout_loss;
use crosslore_train::run::{encoder, load_model, load_task};
use crosslore_train::{TrainConfig, Trainer};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let method: Method =
        toml::Value::String(a.get(1).cloned().unwrap_or("crosslore".into())).try_into()?;
    let steps: usize = a.get(2).map_or(Ok(5), |s| s.parse())?;
    let batch: usize = a.get(3).map_or(Ok(2), |s| s.parse())?;
    let max_len: usize = a.get(4).map_or(Ok(64), |s| s.parse())?;
    let layerwise = a.get(5).is_none_or(|s| s == "1");
    let recompute = a.get(6).is_some_and(|s| s == "1");
    let cfg = TrainConfig {
        method,
        max_steps: steps,
        batch_size: batch,
        max_len,
        layerwise,
        recompute,
        learning_rate: match method {
            Method::Adamw => 2e-5,
            Method::Lora | Method::Dora => 1e-3,
            _ => 1e-4,
        },
        lr_scheduler: crosslore_train::SchedulerKind::Constant,
        rank: 16,
        scale: 1.0,
        update_interval: 200,
        ..TrainConfig::default()
    };
    let t = std::time::Instant::now();
    let (model, tok, path) = load_model(&cfg)?;
    let tok = tok.ok_or_else(|| anyhow::anyhow!("no tokenizer"))?;
    println!(
        "loaded {} in {:.1}s",
        path.display(),
        t.elapsed().as_secs_f64()
    );
    let hwm = || crosslore_train::memory::peak_rss_bytes().unwrap_or(0) as f64 / 1e9;
    let rss = || crosslore_train::memory::current_rss_bytes().unwrap_or(0) as f64 / 1e9;
    println!("after load: rss {:.2} GB, peak {:.2} GB", rss(), hwm());
    let (enc, pad) = encoder(&cfg, &tok)?;
    let set = enc.encode_all(&load_task(&cfg, Split::Train)?)?;
    let test = enc
        .encode_all(&load_task(&cfg, Split::Test)?[..8])?
        .examples;
    let before = heldout_loss(&model, &test, batch, pad)?;
    println!(
        "after held-out loss: rss {:.2} GB, peak {:.2} GB",
        rss(),
        hwm()
    );
    let mut tr = Trainer::new(cfg.clone(), model, set.examples, pad)?;
    let mut times = Vec::new();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let r = tr.step()?;
        println!(
            "step {} loss {:.4} grad_norm {:.3} clip {:.3} {:.2}s (fwd {:.2} bwd {:.2} clip-pass {:.2} opt {:.2} refresh {:.2}) {} tok",
            r.step, r.loss, r.grad_norm, r.clip_coef, r.timings.total_s, r.timings.forward_s,
            r.timings.backward_s, r.timings.clip_pass_s, r.timings.optimizer_s,
            r.timings.refresh_s, r.tokens
        );
        println!("  rss {:.2} GB, peak {:.2} GB", rss(), hwm());
        times.push(r.timings.total_s);
        losses.push(r.loss);
    }
    let mean_rest = if times.len() > 1 {
        times[1..].iter().sum::<f64>() / (times.len() - 1) as f64
    } else {
        times[0]
    };
    let after = heldout_loss(tr.model(), &test, batch, pad)?;
    println!("HELDOUT (8 test examples) before={before:.4} after={after:.4}");
    let m = tr.memory_report();
    println!(
        "SUMMARY method={method:?} layerwise={layerwise} recompute={recompute} loss_first={:.4} loss_last={:.4} s/step(first)={:.2} s/step(rest)={:.2}",
        losses[0],
        losses[losses.len() - 1],
        times[0],
        mean_rest
    );
    println!("MEMORY {}", serde_json::to_string(&m)?);
    Ok(())
}
