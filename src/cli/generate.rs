//! `crosslore generate`: continue a prompt with a model (the shipped SmolLM2 by default) and
//! print the continuation.

use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use crosslore_data::{Prompt, Template};
use crosslore_model::generate::{generate, GenerateConfig, Sampling};

use super::model_source::ModelArgs;

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// The prompt text
    #[arg(long)]
    pub prompt: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Maximum number of new tokens
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy decoding
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling: sample among the most likely tokens whose probabilities sum to this
    /// (only with --temperature > 0); 1 disables it
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Seed of the sampling (only with --temperature > 0)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Wrap the prompt as a user turn in the chat template (--template) and generate the
    /// assistant's answer; without it the raw text is continued
    #[arg(long)]
    pub chat: bool,
    /// Chat template used with --chat: chatml (SmolLM2-Instruct's), llama2, plain
    #[arg(long, default_value = "chatml")]
    pub template: String,
    /// System message with --chat (chatml default: SmolLM2's own)
    #[arg(long)]
    pub system: Option<String>,
    /// Stop when the output contains this text (repeatable); the output is cut before it
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Disable the KV cache (recompute the whole sequence at every step; slow, for comparison)
    #[arg(long)]
    pub no_cache: bool,
}

/// The text given to the model.
pub fn prompt_text(args: &GenerateArgs) -> Result<String> {
    if !args.chat {
        return Ok(args.prompt.clone());
    }
    let template = Template::from_str(&args.template).context("--template")?;
    let mut p = Prompt::user(args.prompt.clone());
    p.system = args.system.clone();
    Ok(template.render_prompt(&p))
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let t_load = Instant::now();
    let m = args.model.load()?;
    let load_s = t_load.elapsed().as_secs_f64();
    let sampling = if args.temperature > 0.0 {
        Sampling::Sample {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
        }
    } else {
        Sampling::Greedy
    };
    let cfg = GenerateConfig {
        max_new_tokens: args.max_new_tokens,
        sampling,
        eos_ids: m.eos_ids.clone(),
        stop_strings: args.stop.clone(),
        use_cache: !args.no_cache,
        batch_size: 1,
    };
    let text = prompt_text(args)?;
    let ids = m
        .tokenizer
        .encode(text.as_str(), false)
        .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?
        .get_ids()
        .to_vec();
    let t0 = Instant::now();
    let out = generate(
        &m.model,
        std::slice::from_ref(&ids),
        &cfg,
        Some(&m.tokenizer),
    )?;
    let secs = t0.elapsed().as_secs_f64();
    let g = out.into_iter().next().context("no generation returned")?;
    println!("{}", g.text.as_deref().unwrap_or_default());
    eprintln!(
        "[{}] loaded in {load_s:.1} s; prompt {} tokens, generated {} tokens in {secs:.2} s \
         ({:.1} tokens/s, {}), finish: {:?}",
        m.path.display(),
        ids.len(),
        g.tokens.len(),
        g.tokens.len() as f64 / secs.max(1e-9),
        if args.no_cache {
            "no cache"
        } else {
            "KV cache"
        },
        g.finish
    );
    Ok(())
}
