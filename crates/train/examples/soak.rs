//! Soak run (issue 7 item 5): the tiny model trained for thousands of steps with every method,
//! alternating whole-graph and layerwise mode, gradient accumulation 2, clipping, a checkpoint
//! every `SAVE` steps and a resume (fresh trainer loaded from the newest checkpoint) every
//! `RESUME` steps. Prints the resident set size (current and peak) over time and checks it is
//! flat: per method, the mean RSS of the last quarter of its steps may not exceed that of its
//! second quarter (after warm-up) by more than `--max-growth-mb`.
//!
//! `cargo run --release -p crosslore-train --example soak -- [steps_per_method] [--max-growth-mb N]`
//! (default 2000 steps per method, 5 methods, 8 MB: the tiny model's weights are ~0.1 MB, so a
//! leak of anything per step shows within a few hundred steps).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use crosslore_data::Encoded;
use crosslore_linalg::Rng;
use crosslore_model::{Llama, LlamaConfig};
use crosslore_train::checkpoint::latest_checkpoint;
use crosslore_train::config::Method;
use crosslore_train::memory;
use crosslore_train::run::load_options;
use crosslore_train::{TrainConfig, Trainer};

const SAVE: usize = 50;
const RESUME: usize = 250;
/// RSS is sampled every this many steps; the check compares quarters of the samples.
const SAMPLE_EVERY: usize = 25;

/// (current, peak) resident set size in MB ([`memory`]'s `/proc/self/status` readers; NaN
/// where unavailable).
fn rss_mb() -> (f64, f64) {
    let mb = |b: Option<u64>| b.map_or(f64::NAN, |b| b as f64 / (1024.0 * 1024.0));
    (
        mb(memory::current_rss_bytes()),
        mb(memory::peak_rss_bytes()),
    )
}

fn tiny_config() -> Result<LlamaConfig> {
    let v = serde_json::json!({
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64,
        "tie_word_embeddings": true, "max_position_embeddings": 128,
    });
    Ok(LlamaConfig::from_json_value(v, "soak")?)
}

fn model(cfg: &TrainConfig) -> Result<Llama> {
    let c = tiny_config()?;
    let mut rng = Rng::new(7);
    let mut t = std::collections::HashMap::new();
    for (name, shape) in c.expected_tensors() {
        let n: usize = shape.iter().product();
        let one = shape.len() == 1;
        let v: Vec<f32> = rng
            .normal_vec(n)
            .into_iter()
            .map(|x| if one { 1.0 + 0.05 * x } else { 0.1 * x })
            .collect();
        t.insert(name, Tensor::from_vec(v, shape, &Device::Cpu)?);
    }
    Ok(Llama::from_tensors(c, t, &load_options(cfg)?)?)
}

fn data() -> Vec<Encoded> {
    let mut rng = Rng::new(5);
    (0..64)
        .map(|_| {
            let len = 8 + rng.below(24) as usize;
            let start = rng.below(64) as u32;
            let ids: Vec<u32> = (0..len).map(|i| (start + i as u32) % 64).collect();
            Encoded::from_ids(ids, 3)
        })
        .collect()
}

fn soak(method: Method, steps: usize, dir: &Path, samples: &mut Vec<f64>) -> Result<f64> {
    let cfg = TrainConfig {
        method,
        rank: 4,
        update_interval: 20,
        residual_ratio: 0.02,
        learning_rate: 1e-3,
        batch_size: 4,
        grad_accum: 2,
        max_steps: steps,
        max_grad_norm: 1.0,
        save_every: SAVE,
        keep_checkpoints: 2,
        seed: 1,
        ..TrainConfig::default()
    };
    let mut loss = f64::NAN;
    let mut done = 0;
    let mut segment = 0;
    while done < steps {
        // Alternate the backward mode per segment; each segment resumes from the checkpoint.
        let mut c = cfg.clone();
        c.layerwise = segment % 2 == 1;
        let mut t = Trainer::new(c, model(&cfg)?, data(), 0)?;
        if let Some(ck) = latest_checkpoint(dir)? {
            t.resume_from(&ck)?;
        }
        while !t.is_done() && t.steps_done() < done + RESUME {
            let r = t.step()?;
            loss = r.loss;
            if r.step % SAVE == 0 {
                t.save_checkpoint(dir, 2)?;
            }
            if r.step % SAMPLE_EVERY == 0 {
                samples.push(rss_mb().0);
            }
        }
        t.save_checkpoint(dir, 2)?;
        done = t.steps_done();
        segment += 1;
    }
    Ok(loss)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .transpose()
        .context("steps per method")?
        .unwrap_or(2000);
    let max_growth: f64 = match args.iter().position(|a| a == "--max-growth-mb") {
        Some(i) => args.get(i + 1).context("--max-growth-mb N")?.parse()?,
        None => 8.0,
    };
    if steps < 4 * SAMPLE_EVERY {
        // fewer than 4 samples: an empty quarter would read as a mean of 0 MB, i.e. a "leak"
        bail!("at least {} steps per method", 4 * SAMPLE_EVERY);
    }
    let tmp = tempfile::tempdir()?;
    let t0 = Instant::now();
    let (rss0, hwm0) = rss_mb();
    println!("start: rss {rss0:.1} MB, peak {hwm0:.1} MB");
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let mut worst = 0f64;
    let methods = [
        Method::Crosslore,
        Method::Galore,
        Method::Adamw,
        Method::Lora,
        Method::Dora,
    ];
    for m in methods {
        let dir = tmp.path().join(format!("{m:?}"));
        std::fs::create_dir_all(&dir)?;
        let t = Instant::now();
        let mut samples = Vec::new();
        let loss = soak(m, steps, &dir, &mut samples)?;
        let (rss, hwm) = rss_mb();
        let q = samples.len() / 4;
        let growth = mean(&samples[3 * q..]) - mean(&samples[q..2 * q]);
        worst = worst.max(growth);
        println!(
            "{m:?}: {steps} steps in {:.1} s, last loss {loss:.4}; rss {rss:.1} MB, peak \
             {hwm:.1} MB; rss over its run {:.1} -> {:.1} MB (mean of 2nd -> last quarter, \
             growth {growth:.1} MB)",
            t.elapsed().as_secs_f64(),
            mean(&samples[q..2 * q]),
            mean(&samples[3 * q..]),
        );
    }
    let (rss1, hwm1) = rss_mb();
    println!(
        "end: {} steps in {:.1} s; rss {rss1:.1} MB, peak {hwm1:.1} MB; largest growth within a \
         method {worst:.1} MB (limit {max_growth} MB)",
        steps * methods.len(),
        t0.elapsed().as_secs_f64(),
    );
    if worst > max_growth {
        bail!("resident memory grew by {worst:.1} MB within one method's run: a leak");
    }
    Ok(())
}
