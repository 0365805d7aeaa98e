//! `crosslore score`: corpus metrics of a hypothesis file against one or more reference files
//! (one example per line), printed as JSON.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use crosslore_eval::{Metric, ScoreOptions};

use super::metrics::{score_each, to_json};

#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    /// Comma-separated metrics: bleu (sacrebleu corpus BLEU, 0-100), nist (nltk, n=5), meteor
    /// (nltk, exact+stem), rouge (rouge-score F1 of rouge1, rouge2, rougeL, rougeLsum), cider
    /// (CIDEr-D), accuracy (answer extraction against the first reference file)
    #[arg(long, default_value = "bleu,nist,meteor,rouge,cider")]
    pub metrics: String,
    /// Hypotheses, one per line
    #[arg(long)]
    pub hyp: PathBuf,
    /// A reference file, one reference per line aligned with --hyp; repeat for several
    /// references per example
    #[arg(long = "ref", required = true)]
    pub refs: Vec<PathBuf>,
    /// Do not Porter-stem ROUGE tokens (rouge-score `use_stemmer=False`); stemming is on by
    /// default
    #[arg(long)]
    pub no_rouge_stemmer: bool,
}

/// The lines of a file (a final newline does not start another line; `\r\n` accepted).
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read as UTF-8 text", path.display()))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Parse, read and score; returns the JSON printed.
pub fn score(args: &ScoreArgs) -> Result<serde_json::Value> {
    let metrics = Metric::parse_list(&args.metrics).context("--metrics")?;
    if metrics.is_empty() {
        bail!("--metrics: no metric given");
    }
    let hyps = read_lines(&args.hyp)?;
    if hyps.is_empty() {
        bail!("{}: no line (empty hypothesis file)", args.hyp.display());
    }
    let mut refs: Vec<Vec<String>> = vec![Vec::with_capacity(args.refs.len()); hyps.len()];
    for path in &args.refs {
        let lines = read_lines(path)?;
        if lines.len() != hyps.len() {
            bail!(
                "{} has {} lines but the hypothesis file {} has {}: every file needs one line per \
                 example",
                path.display(),
                lines.len(),
                args.hyp.display(),
                hyps.len()
            );
        }
        for (r, line) in refs.iter_mut().zip(lines) {
            r.push(line);
        }
    }
    let opts = ScoreOptions {
        rouge_use_stemmer: !args.no_rouge_stemmer,
        ..ScoreOptions::default()
    };
    let scores = score_each(&metrics, &hyps, &refs, &opts);
    for (m, e) in &scores.errors {
        eprintln!("warning: {m}: {e} (reported as null)");
    }
    Ok(to_json(&scores.values))
}

pub fn run(args: &ScoreArgs) -> Result<()> {
    let json = score(args)?;
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
