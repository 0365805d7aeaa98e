//! `crosslore-bench`: `gpu-check`, `p1`, `p2` (see the library docs and docs/BENCHMARKS.md).
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use crosslore_bench::shapes::ModelDims;
use crosslore_bench::synth::Spectrum;
use crosslore_bench::{check, p1, p2, parse_device};

#[derive(Parser)]
#[command(
    name = "crosslore-bench",
    about = "CrossLore device checks and benchmarks"
)]
struct Cli {
    /// cpu, cuda or cuda:N
    #[arg(long, global = true, default_value = "cuda")]
    device: String,
    /// Write the full JSON report here.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    #[arg(long, global = true, default_value_t = 0)]
    seed: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every device path vs the CPU path on the same random inputs; exits 1 on a FAIL.
    GpuCheck,
    /// Projection refresh of every targeted matrix of a LLaMA-2-7B-shaped model.
    P1 {
        #[arg(long, default_value_t = 32)]
        layers: usize,
        /// Divide every dimension by this (CPU smoke tests).
        #[arg(long, default_value_t = 1)]
        shrink: usize,
        #[arg(long, default_value_t = 1)]
        svd_samples: usize,
        #[arg(long, default_value_t = 3)]
        reps: usize,
    },
    /// Optimizer step without refresh (AdamW, GaLore, CrossLore) vs the measured floors.
    P2 {
        #[arg(long, default_value_t = 32)]
        layers: usize,
        #[arg(long, default_value_t = 1)]
        shrink: usize,
        /// Only the 224 targeted matrices (no embeddings, head, norms).
        #[arg(long)]
        targets_only: bool,
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
}

fn write_json(path: &Option<PathBuf>, v: &impl serde::Serialize) -> Result<()> {
    if let Some(p) = path {
        std::fs::write(p, serde_json::to_string_pretty(v)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let dev = parse_device(&cli.device)?;
    match cli.cmd {
        Cmd::GpuCheck => {
            let rep = check::run(&dev, cli.seed)?;
            write_json(&cli.json, &rep)?;
            let fails = rep.checks.iter().filter(|c| !c.pass).count();
            println!(
                "gpu-check on {}: {} checks, {} FAIL",
                rep.device,
                rep.checks.len(),
                fails
            );
            if fails > 0 {
                bail!("{fails} check(s) failed");
            }
        }
        Cmd::P1 {
            layers,
            shrink,
            svd_samples,
            reps,
        } => {
            let opt = p1::P1Options {
                dims: ModelDims::llama2_7b(layers, shrink),
                spectrum: Spectrum::default(),
                oversample: 8,
                svd_samples,
                reps,
                seed: cli.seed,
                rate_scale: shrink,
            };
            let rep = p1::run(&dev, &opt)?;
            write_json(&cli.json, &rep)?;
            println!("{}", p1::table(&rep));
        }
        Cmd::P2 {
            layers,
            shrink,
            targets_only,
            reps,
        } => {
            let opt = p2::P2Options {
                dims: ModelDims::llama2_7b(layers, shrink),
                full_model: !targets_only,
                reps,
                seed: cli.seed,
                rate_scale: shrink,
            };
            let rep = p2::run(&dev, &opt)?;
            write_json(&cli.json, &rep)?;
            println!("{}", p2::table(&rep));
        }
    }
    Ok(())
}
