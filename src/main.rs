//! `crosslore` command-line interface: fine-tune, evaluate, score and generate.

mod cli;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use cli::{eval, experiment, finetune, generate, score};

/// Memory-efficient fine-tuning of LLaMA-family models (CrossLore, GaLore, LoRA, DoRA, AdamW),
/// task evaluation, metric scoring and text generation.
#[derive(Debug, Parser)]
#[command(name = "crosslore", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fine-tune a model (default: SmolLM2-135M-Instruct with CrossLore on E2E NLG), evaluate it
    /// before and after, and write a run folder
    Finetune(finetune::FinetuneArgs),
    /// Evaluate a model or run folder on a task (generation + metrics): table on screen, JSON
    /// on disk
    Eval(eval::EvalArgs),
    /// Corpus metrics of a hypothesis file against reference files (one line per example),
    /// printed as JSON
    Score(score::ScoreArgs),
    /// Continue a prompt with a model (default: the shipped SmolLM2) and print the continuation
    Generate(generate::GenerateArgs),
    /// Run an experiment spec (grid of methods x ranks x seeds, projection quality, or
    /// learning-rate sweep): run folders, summary table (Markdown + JSON) and PNG plots
    Experiment(experiment::ExperimentArgs),
}

fn main() {
    let keys = finetune::keys_help();
    let cmd = Cli::command().mut_subcommand("finetune", |c| c.after_help(keys));
    let cli = match Cli::from_arg_matches(&cmd.get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let result = match &cli.command {
        Command::Finetune(a) => finetune::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Score(a) => score::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Experiment(a) => experiment::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {}", error_message(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, skipping a cause whose text the message already holds (typed
/// errors often print their source themselves).
fn error_message(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
