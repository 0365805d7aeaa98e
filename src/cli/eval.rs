//! `crosslore eval`: evaluate a model (or a run folder's exported model) on a task's test split;
//! table on screen, JSON report on disk.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use clap::Args;
use crosslore_data::{Example, Format, ShippedTask, Split, Template};
use crosslore_eval::Metric;

use super::model_source::{short_name, ModelArgs};
use super::task_eval::{evaluate, task_format, EvalSettings};

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Task: a shipped task (e2e_nlg, mathqa, xsum, cnn_dm: its test split) or a data file
    #[arg(long)]
    pub task: String,
    /// Format of a task file: gsm8k, mawps, e2e_nlg, e2e_csv, mathqa, cnn_dm, xsum, alpaca,
    /// prompt_response, chat (default: detected from the file's fields)
    #[arg(long)]
    pub format: Option<String>,
    /// Prompt template: chatml (SmolLM2-Instruct's), llama2, plain
    #[arg(long, default_value = "chatml")]
    pub template: String,
    /// Evaluate only the first N examples; 0 = all
    #[arg(long, default_value_t = 0)]
    pub samples: usize,
    /// Maximum new tokens per example
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Prompts generated together
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Comma-separated metrics (bleu, nist, meteor, rouge, cider, accuracy); default by task:
    /// accuracy where examples have gold answers (mathqa, gsm8k, mawps), bleu,nist,meteor,rouge,
    /// cider for E2E, rouge for xsum/cnn_dm, bleu,rouge otherwise
    #[arg(long)]
    pub metrics: Option<String>,
    /// JSON report path (default: eval-<task>-<model>.json in the run folder when --model is
    /// one, else in the current folder)
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// The examples of `--task` with their format (shipped: test split).
pub fn load_examples(task: &str, format: Option<&str>) -> Result<(Vec<Example>, Option<Format>)> {
    if let Ok(t) = ShippedTask::from_str(task) {
        return Ok((t.load(Split::Test)?, Some(t.format())));
    }
    let path = Path::new(task);
    if !path.is_file() {
        anyhow::bail!(
            "--task {task}: neither a shipped task ({}) nor a file",
            ShippedTask::ALL.map(ShippedTask::name).join(", ")
        );
    }
    match format {
        Some(f) => {
            let f = Format::from_str(f).context("--format")?;
            Ok((f.load(path)?, Some(f)))
        }
        None => {
            let (f, ex) = Format::load_detected(path)?;
            Ok((ex, Some(f)))
        }
    }
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let template = Template::from_str(&args.template).context("--template")?;
    let metrics = match &args.metrics {
        Some(m) => Some(Metric::parse_list(m).context("--metrics")?),
        None => None,
    };
    let (mut examples, format) = load_examples(&args.task, args.format.as_deref())?;
    if args.samples > 0 {
        examples.truncate(args.samples);
    }
    let m = args.model.load()?;
    let settings = EvalSettings {
        template,
        metrics,
        max_new_tokens: args.max_new_tokens,
        batch_size: args.batch_size,
        eos_ids: m.eos_ids.clone(),
    };
    let task_name = Path::new(&args.task)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.task.clone());
    let report = evaluate(
        &m.model,
        &m.tokenizer,
        &examples,
        task_format(&args.task, format),
        &settings,
        true,
        (&task_name, &args.model.model),
    )?;
    print!("{}", report.table());
    let out = match &args.output {
        Some(p) => p.clone(),
        None => {
            let name = format!("eval-{task_name}-{}.json", short_name(&args.model.model));
            let model_dir = Path::new(&args.model.model);
            if model_dir.join("export").join("config.json").is_file() {
                model_dir.join(name)
            } else {
                PathBuf::from(name)
            }
        }
    };
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(&out, text).with_context(|| format!("{}: cannot write", out.display()))?;
    println!("report: {}", out.display());
    Ok(())
}
