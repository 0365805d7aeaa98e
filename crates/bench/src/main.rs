//! `crosslore-bench`: `gpu-check`, `model-check`, `p1`, `p2` (see the library docs and docs/BENCHMARKS.md).
//!
//! Arguments are parsed by hand (no clap derive): clap's derive macros switch on `syn/full` for
//! every host crate, which changes the hash of candle-kernels' build script (through `cudaforge`
//! -> `serde_derive`) and forces a 30+ minute nvcc rebuild of the CUDA kernels.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use crosslore_bench::shapes::ModelDims;
use crosslore_bench::synth::Spectrum;
use crosslore_bench::{check, p1, p2, parse_device};

const USAGE: &str =
    "usage: crosslore-bench [--device cpu|cuda|cuda:N] [--json FILE] [--seed N] <command> [options]
commands:
  gpu-check                 every device path vs the CPU path on the same inputs; exit 1 on FAIL
  p1 [--layers 32] [--shrink 1] [--svd-samples 1] [--reps 3]
                            projection refresh of every targeted matrix (LLaMA-2-7B shapes)
  p2 [--layers 32] [--shrink 1] [--reps 5] [--targets-only] [--tf32]
                            optimizer step without refresh vs the measured floors
                            (--tf32: f32 matmuls on TF32 tensor cores, CUDA only)
  p3 [--layers 32] [--shrink 1] [--reps 3] [--warmup 2] [--arms a,b,...] [--model llama2-7b|smollm2]
     [--batch B] [--max-batch [--max-batch-free 0.03] [--max-batch-reps 2]] [--profile]
                            end-to-end bf16 training steps of every method (arms: crosslore-layerwise,
                            crosslore, galore-steady, lora, dora, adamw, ...) at batch 4 x seq
                            512/shrink of the LLaMA-2-7B shape (smollm2: the SmolLM2-135M shape,
                            batch 8, --layers ignored): s/step, tokens/s, MFU, peak pool memory;
                            --max-batch: then each arm at the largest batch that fits (extrapolated
                            from a probe at 2x the batch, leaving --max-batch-free of the card free;
                            CUDA only), a second table; --profile: then --reps more steps per arm
                            with the trainer's per-phase profiler (a device sync per phase)
  model-check [--fixtures crates/model/tests/fixtures]
                            LLaMA forward/loss/grads, bf16 forward and 3 trainer steps of every
                            method on the device vs the CPU; exit 1 on FAIL
  fused-ops [--reps 20]     crosslore-fused CUDA kernels vs their CPU reference (f32, bf16), then
                            per-op timings at the 7B layer shape vs the copy floor; exit 1 on FAIL
  layer [--reps 10] [--warmup 2] [--shrink 1]
                            one LLaMA-2-7B layer fwd and fwd+bwd, bf16, batch 4 x seq 512/shrink: the
                            fused block vs candle autograd, the head with its loss, gradient agreement
  htod                      host-to-device upload time of Tensor::from_vec by size
  experiment <spec.toml> [--out DIR] [--time-budget-s S] [--summarize-only] [--shard I/N]
                            an experiment spec (crosslore-experiment): grid runs, summary, plots";

struct Args {
    device: String,
    json: Option<PathBuf>,
    seed: u64,
    cmd: String,
    layers: usize,
    shrink: usize,
    svd_samples: usize,
    reps: Option<usize>,
    targets_only: bool,
    tf32: bool,
    /// `p3`: warm-up steps and arm labels (comma-separated).
    warmup: usize,
    arms: Option<String>,
    /// `p3`: `llama2-7b` (default) or `smollm2`.
    model: String,
    /// `p3`: batch (default: 4 for llama2-7b, 8 for smollm2) and the largest-batch search.
    batch: Option<usize>,
    max_batch: Option<crosslore_bench::p3_max::MaxBatchOptions>,
    profile: bool,
    fixtures: PathBuf,
    /// `experiment`: spec file, and its options.
    spec: Option<PathBuf>,
    exp: crosslore_experiment::CommandOptions,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        device: "cuda".into(),
        json: None,
        seed: 0,
        cmd: String::new(),
        layers: 32,
        shrink: 1,
        svd_samples: 1,
        reps: None,
        targets_only: false,
        tf32: false,
        warmup: 2,
        arms: None,
        model: "llama2-7b".into(),
        batch: None,
        max_batch: None,
        profile: false,
        fixtures: PathBuf::from("crates/model/tests/fixtures"),
        spec: None,
        exp: Default::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        let num = |name: &str, v: String| -> Result<usize> {
            v.parse()
                .with_context(|| format!("{name}: expected a non-negative integer, got {v:?}"))
        };
        match arg.as_str() {
            "--device" => a.device = value("--device")?,
            "--json" => a.json = Some(value("--json")?.into()),
            "--seed" => a.seed = num("--seed", value("--seed")?)? as u64,
            "--layers" => a.layers = num("--layers", value("--layers")?)?,
            "--shrink" => a.shrink = num("--shrink", value("--shrink")?)?,
            "--svd-samples" => a.svd_samples = num("--svd-samples", value("--svd-samples")?)?,
            "--reps" => a.reps = Some(num("--reps", value("--reps")?)?),
            "--targets-only" => a.targets_only = true,
            "--tf32" => a.tf32 = true,
            "--warmup" => a.warmup = num("--warmup", value("--warmup")?)?,
            "--arms" => a.arms = Some(value("--arms")?),
            "--model" => a.model = value("--model")?,
            "--batch" => a.batch = Some(num("--batch", value("--batch")?)?),
            "--profile" => a.profile = true,
            "--max-batch" => {
                a.max_batch.get_or_insert_with(Default::default);
            }
            "--max-batch-free" => {
                let v = value("--max-batch-free")?;
                let f: f64 = v
                    .parse()
                    .ok()
                    .filter(|f: &f64| (0.0..1.0).contains(f))
                    .with_context(|| {
                        format!("--max-batch-free: expected a fraction in [0, 1), got {v:?}")
                    })?;
                a.max_batch
                    .get_or_insert_with(Default::default)
                    .free_fraction = f;
            }
            "--max-batch-reps" => {
                let n = num("--max-batch-reps", value("--max-batch-reps")?)?;
                a.max_batch.get_or_insert_with(Default::default).steps = n.max(1);
            }
            "--fixtures" => a.fixtures = value("--fixtures")?.into(),
            "--out" => a.exp.out = Some(value("--out")?.into()),
            "--time-budget-s" => {
                let v = value("--time-budget-s")?;
                a.exp.time_budget_s = Some(
                    v.parse()
                        .with_context(|| format!("--time-budget-s: expected seconds, got {v:?}"))?,
                )
            }
            "--summarize-only" => a.exp.summarize_only = true,
            "--shard" => {
                let v = value("--shard")?;
                a.exp.shard = Some(
                    crosslore_experiment::command::parse_shard(&v)
                        .with_context(|| format!("--shard: expected I/N with I < N, got {v:?}"))?,
                )
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            c if !c.starts_with('-') && a.cmd.is_empty() => a.cmd = c.to_string(),
            c if !c.starts_with('-') && a.cmd == "experiment" && a.spec.is_none() => {
                a.spec = Some(c.into())
            }
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    if a.cmd.is_empty() {
        bail!("no command\n{USAGE}");
    }
    Ok(a)
}

fn write_json(path: &Option<PathBuf>, v: &impl serde::Serialize) -> Result<()> {
    if let Some(p) = path {
        std::fs::write(p, serde_json::to_string_pretty(v)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let a = parse()?;
    if a.cmd == "experiment" {
        // runs on the device named by the spec's `device` key, not --device
        let spec = a.spec.context("experiment needs a spec file")?;
        let out = crosslore_experiment::run_experiment(&spec, &a.exp)?;
        println!("results: {}", out.display());
        return Ok(());
    }
    let dev = parse_device(&a.device)?;
    match a.cmd.as_str() {
        "gpu-check" => {
            let rep = check::run(&dev, a.seed)?;
            write_json(&a.json, &rep)?;
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
        "p1" => {
            let opt = p1::P1Options {
                dims: ModelDims::llama2_7b(a.layers, a.shrink),
                spectrum: Spectrum::default(),
                oversample: 8,
                svd_samples: a.svd_samples,
                reps: a.reps.unwrap_or(3),
                seed: a.seed,
                rate_scale: a.shrink,
            };
            let rep = p1::run(&dev, &opt)?;
            write_json(&a.json, &rep)?;
            println!("{}", p1::table(&rep));
        }
        "p2" => {
            #[cfg(feature = "cuda")]
            candle_core::cuda::set_gemm_reduced_precision_f32(a.tf32);
            #[cfg(not(feature = "cuda"))]
            if a.tf32 {
                bail!("--tf32 needs a CUDA build");
            }
            let opt = p2::P2Options {
                dims: ModelDims::llama2_7b(a.layers, a.shrink),
                full_model: !a.targets_only,
                reps: a.reps.unwrap_or(5),
                seed: a.seed,
                rate_scale: a.shrink,
                tf32: a.tf32,
            };
            let rep = p2::run(&dev, &opt)?;
            write_json(&a.json, &rep)?;
            println!("{}", p2::table(&rep));
        }
        "p3" => {
            // SmolLM2: batch 8 x 512, as bench/reference/smol_torch.py
            let (dims, default_batch) = match a.model.as_str() {
                "llama2-7b" => (ModelDims::llama2_7b(a.layers, a.shrink), 4),
                "smollm2" => (ModelDims::smollm2(), 8),
                m => bail!("--model {m:?}: expected llama2-7b or smollm2"),
            };
            let batch = a.batch.unwrap_or(default_batch);
            if batch == 0 {
                bail!("--batch: expected at least 1");
            }
            let opt = crosslore_bench::p3::P3Options {
                dims,
                batch,
                seq: 512 / a.shrink,
                steps: a.reps.unwrap_or(3),
                warmup: a.warmup,
                seed: a.seed,
                rate_scale: a.shrink,
                arms: match &a.arms {
                    Some(s) => s.split(',').map(|x| x.trim().to_string()).collect(),
                    None => crosslore_bench::p3::DEFAULT_ARMS
                        .iter()
                        .map(|x| x.to_string())
                        .collect(),
                },
                max_batch: a.max_batch.clone(),
                profile: a.profile,
            };
            // the JSON is rewritten after each arm: a run stopped by a time limit keeps its arms
            let rep = crosslore_bench::p3::run_with_progress(&dev, &opt, |r| {
                write_json(&a.json, r)
                    .map_err(|e| crosslore_bench::BenchError::Config(format!("{e:#}")))
            })?;
            println!("{}", crosslore_bench::p3::table(&rep));
            if opt.max_batch.is_some() {
                println!("{}", crosslore_bench::p3::max_batch_table(&rep));
            }
            if opt.profile {
                println!("{}", crosslore_bench::p3::profile_tables(&rep));
            }
        }
        "model-check" => {
            let rep = crosslore_bench::model_check::run(&dev, &a.fixtures, a.seed)?;
            write_json(&a.json, &rep)?;
            let fails = rep.checks.iter().filter(|c| !c.pass).count();
            println!(
                "model-check on {}: {} checks, {} FAIL",
                rep.device,
                rep.checks.len(),
                fails
            );
            if fails > 0 {
                bail!("{fails} check(s) failed");
            }
        }
        "fused-ops" => {
            let rep = crosslore_bench::check_fused::fused_ops(&dev, a.seed, a.reps.unwrap_or(20))?;
            write_json(&a.json, &rep)?;
            println!("{}", crosslore_bench::check_fused::table(&rep.timings));
            let fails = rep.checks.checks.iter().filter(|c| !c.pass).count();
            println!(
                "fused-ops: {} checks, {fails} FAIL",
                rep.checks.checks.len()
            );
            if fails > 0 {
                bail!("{fails} check(s) failed");
            }
        }
        "layer" => {
            let opt = crosslore_bench::layer::LayerOptions {
                batch: 4,
                seq: 512 / a.shrink,
                reps: a.reps.unwrap_or(10),
                warmup: a.warmup.max(1),
            };
            let rep = crosslore_bench::layer::run(&dev, &opt)?;
            write_json(&a.json, &rep)?;
            println!("{}", crosslore_bench::layer::table(&rep));
        }
        "htod" => {
            println!("| f32 elements | MB | fresh Vec ms | reused Vec ms | MB/s (fresh) |\n|---|---|---|---|---|");
            for (n, fresh, reused) in crosslore_bench::floors::htod_probe(&dev)? {
                let mb = (n * 4) as f64 / 1e6;
                println!(
                    "| {n} | {mb:.3} | {:.3} | {:.3} | {:.0} |",
                    fresh * 1e3,
                    reused * 1e3,
                    mb / fresh
                );
            }
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
    Ok(())
}
