//! `crosslore finetune`: a fine-tuning run from a TOML config (keys in LLaMA-Factory's spirit)
//! with command-line overrides, through [`crosslore_train::run_finetune_with`], with
//! generation-based evaluation before and after training ([`super::task_eval::RunEvaluator`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use crosslore_train::{run_finetune_with, EvalPhase, RunOptions, StepReport, TrainConfig};

use super::progress::{format_duration, interactive, Progress};
use super::task_eval::{compare_table, RunEvaluator};

#[derive(Debug, Clone, Args)]
pub struct FinetuneArgs {
    /// TOML config file (every key listed below; unknown keys are errors). Without it the
    /// defaults run: SmolLM2-135M-Instruct + CrossLore on the shipped E2E NLG train split
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the resolved configuration (defaults, file, overrides) as TOML and exit
    #[arg(long)]
    pub print_config: bool,
    /// Generation batch size of the before/after evaluation
    #[arg(long, default_value_t = 8)]
    pub eval_batch_size: usize,
    /// Config overrides, `key=value` or `--key value` / `--key=value` (e.g. `max_steps=2`,
    /// `--method lora --device cuda`); a `--flag` without value sets it to true
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "KEY=VALUE"
    )]
    pub overrides: Vec<String>,
}

/// `key=value` overrides from `key=value`, `--key=value`, `--key value` and `--flag` forms.
pub fn normalize_overrides(args: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.strip_prefix("--") {
            Some(rest) if rest.contains('=') => out.push(rest.to_string()),
            Some(key) if !key.is_empty() => match args.get(i + 1) {
                Some(v) if !v.starts_with("--") => {
                    out.push(format!("{key}={v}"));
                    i += 1;
                }
                _ => out.push(format!("{key}=true")),
            },
            _ if a.contains('=') => out.push(a.clone()),
            _ => bail!("override `{a}`: expected key=value or --key value"),
        }
        i += 1;
    }
    Ok(out)
}

/// The subcommand's own options after the overrides began (clap hands everything after the
/// first override to the overrides) are taken back out: `config`, `print_config`,
/// `eval_batch_size`.
pub fn resolve_args(args: &FinetuneArgs) -> Result<(FinetuneArgs, Vec<String>)> {
    let mut own = args.clone();
    let mut overrides = Vec::new();
    for o in normalize_overrides(&args.overrides)? {
        let (k, v) = o.split_once('=').unwrap_or((o.as_str(), ""));
        match k.replace('-', "_").as_str() {
            "config" => own.config = Some(PathBuf::from(v)),
            "print_config" => own.print_config = v != "false",
            "eval_batch_size" => {
                own.eval_batch_size = v
                    .parse()
                    .with_context(|| format!("--eval-batch-size {v}: expected an integer"))?
            }
            _ => overrides.push(o),
        }
    }
    own.overrides.clear();
    Ok((own, overrides))
}

/// The run configuration: defaults, then the file, then the overrides.
pub fn resolve_config(args: &FinetuneArgs, overrides: &[String]) -> Result<TrainConfig> {
    Ok(match &args.config {
        Some(path) => TrainConfig::from_file(path, overrides)?,
        None => TrainConfig::from_toml_str("", "built-in defaults", overrides)?,
    })
}

/// Every key with its default, for `--help`.
pub fn keys_help() -> String {
    let defaults = toml::to_string(&TrainConfig::default()).unwrap_or_default();
    format!(
        "Config keys and their defaults (TOML; see README for what each means):\n\n{defaults}\
         output_dir = \"runs/<method>-<task>-s<seed>\"\n"
    )
}

/// SIGINT / SIGTERM: the first asks the run to stop after the current step (with a
/// checkpoint, exit status 128 + signal); a second one ends the process at once (status 1).
/// Returns the stop flag and the number of the signal received (0 = none).
fn stop_on_signals() -> Result<(Arc<AtomicBool>, Arc<AtomicUsize>)> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
        signal_hook::flag::register_usize(sig, Arc::clone(&which), sig as usize)?;
    }
    Ok((stop, which))
}

fn step_detail(r: &StepReport) -> String {
    if let Some(why) = &r.skipped {
        return format!("SKIPPED ({why}): weights and optimizer state unchanged");
    }
    format!(
        "loss {:.4} lr {:.2e} grad-norm {:.3} {:.0} tokens/s",
        r.loss, r.lr, r.grad_norm, r.tokens_per_s
    )
}

pub fn run(args: &FinetuneArgs) -> Result<()> {
    let (args, overrides) = resolve_args(args)?;
    let cfg = resolve_config(&args, &overrides)?;
    if args.print_config {
        print!("{}", toml::to_string(&cfg)?);
        return Ok(());
    }
    eprintln!(
        "finetune: method {:?}, model {}, task {}, {} steps, device {:?} -> {}",
        cfg.method,
        cfg.model,
        cfg.task,
        cfg.max_steps,
        cfg.device,
        cfg.run_dir().display()
    );
    let show = interactive();
    let mut evaluator = RunEvaluator {
        batch_size: args.eval_batch_size,
        progress: true,
        reports: Vec::new(),
    };
    let mut progress: Option<Progress> = None;
    let mut on_step = |r: &StepReport, total: usize| {
        let p = progress.get_or_insert_with(|| Progress::new("train", total));
        if show {
            p.update(r.step, &step_detail(r));
        } else if r.step.is_multiple_of(cfg.log_every.max(1)) || r.step == total {
            eprintln!("step {}/{total}: {}", r.step, step_detail(r));
        }
    };
    let (stop, signal) = stop_on_signals().context("installing the SIGINT/SIGTERM handlers")?;
    let t0 = Instant::now();
    let summary = run_finetune_with(
        &cfg,
        RunOptions {
            evaluator: Some(&mut evaluator),
            on_step: Some(&mut on_step),
            stop: Some(&stop),
            ..Default::default()
        },
    )
    .context("finetune")?;
    let total = t0.elapsed().as_secs_f64();
    if summary.stopped_early {
        let sig = signal.load(Ordering::SeqCst);
        eprintln!(
            "stopped by signal {sig} after step {} of {}: checkpoint {}; continue with \
             `crosslore finetune ... resume=true` (same config and output_dir)",
            summary.start_step + summary.steps,
            cfg.max_steps,
            summary
                .checkpoint
                .as_ref()
                .map_or("-".into(), |p| p.display().to_string()),
        );
        std::process::exit(128 + sig as i32);
    }
    if summary.skipped_steps > 0 {
        eprintln!(
            "warning: {} step(s) skipped for a non-finite loss or gradient (see metrics.jsonl)",
            summary.skipped_steps
        );
    }
    println!(
        "run folder: {}\nsteps: {} (mean {:.2} s/step), loss {} -> {}",
        summary.run_dir.display(),
        summary.steps,
        summary.mean_step_s,
        summary.first_loss.map_or("-".into(), |l| format!("{l:.4}")),
        summary.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
    );
    if let (Some(b), Some(a)) = (summary.heldout_loss_before, summary.heldout_loss_after) {
        println!("held-out loss: {b:.4} -> {a:.4}");
    }
    let before = evaluator.reports.iter().find(|r| r.0 == EvalPhase::Before);
    let after = evaluator.reports.iter().find(|r| r.0 == EvalPhase::After);
    if let (Some((_, b)), Some((_, a))) = (before, after) {
        print!("{}", compare_table(&cfg.task, b, a));
    }
    println!(
        "exported model: {} | total time {}",
        summary.export_dir.display(),
        format_duration(total)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::normalize_overrides;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn override_forms() {
        assert_eq!(
            normalize_overrides(&s(&[
                "max_steps=2",
                "--method",
                "lora",
                "--rank=8",
                "--recompute",
                "--device",
                "cuda"
            ]))
            .unwrap(),
            s(&[
                "max_steps=2",
                "method=lora",
                "rank=8",
                "recompute=true",
                "device=cuda"
            ])
        );
        assert!(normalize_overrides(&s(&["oops"])).is_err());
    }
}
