//! `crosslore experiment <spec.toml>`: an experiment from a spec (grid of methods x ranks x
//! seeds on a task, projection quality, or learning-rate sweep), through
//! [`crosslore_experiment::run_experiment`]: run folders, `summary.md`/`summary.json` and PNG
//! plots in the output folder. Finished cells are skipped, so the same command resumes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use crosslore_experiment::{run_experiment, CommandOptions};

#[derive(Debug, Clone, Args)]
pub struct ExperimentArgs {
    /// Experiment spec (TOML; see experiments/*.toml and the crosslore-experiment docs)
    pub spec: PathBuf,
    /// Output folder (default runs/experiments/<name>)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Stop starting new grid cells after this many seconds (run again to continue)
    #[arg(long)]
    pub time_budget_s: Option<f64>,
    /// Only rebuild the summary and plots from finished run folders
    #[arg(long)]
    pub summarize_only: bool,
    /// Run only shard I/N of a grid's cells (several processes on one GPU; then
    /// --summarize-only)
    #[arg(long, value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    crosslore_experiment::command::parse_shard(s)
        .ok_or_else(|| format!("expected I/N with I < N, got {s:?}"))
}

pub fn run(args: &ExperimentArgs) -> Result<()> {
    let out = run_experiment(
        &args.spec,
        &CommandOptions {
            out: args.out.clone(),
            time_budget_s: args.time_budget_s,
            summarize_only: args.summarize_only,
            shard: args.shard,
        },
    )
    .with_context(|| format!("experiment {}", args.spec.display()))?;
    println!("results: {}", out.display());
    Ok(())
}
