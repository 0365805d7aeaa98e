//! `run_finetune`: the whole fine-tuning job the CLI runs (issue 4 item 5, `finetune`): load the
//! model (`smollm2` = fetched + GGUF, a `.gguf` file, or a Hugging Face folder), load and encode
//! the task, train, and write the run folder:
//!
//! ```text
//! <run_dir>/config.toml      resolved configuration
//! <run_dir>/metrics.jsonl    one line per logged step (crate::metrics)
//! <run_dir>/memory.json      memory report (crate::memory)
//! <run_dir>/ckpt-<step>/     checkpoints (crate::checkpoint)
//! <run_dir>/export/          Hugging Face folder, adapters merged (+ tokenizer.json)
//! <run_dir>/adapter/         lora/dora only: peft-style adapters
//! <run_dir>/summary.json     RunSummary
//! ```
//!
//! **Stopping.** With [`RunOptions::stop`] set (the CLI sets it on SIGINT/SIGTERM) the run stops
//! after the step in progress, writes a checkpoint, `memory.json` and `summary.json`
//! (`stopped_early`), and skips the after-evaluation and the export; `resume = true` continues it
//! bit-identically. A run killed outright (SIGKILL, power loss) leaves the previous checkpoint
//! intact (checkpoints are written to a temporary folder and renamed), and `metrics.jsonl` is cut
//! back to the resumed step when the run resumes.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device};
use crosslore_data::{
    expand_references, EncodeConfig, Encoded, Encoder, Example, Format, ShippedTask, Split,
    Template,
};
use crosslore_model::{
    AdapterConfig, AdapterKind, Llama, LlamaConfig, LoadOptions, TargetModules, Training,
};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::checkpoint::latest_checkpoint;
use crate::config::{DType as DTypeKey, DeviceKind, Method, TrainConfig};
use crate::error::{Result, TrainError};
use crate::eval::{heldout_loss, EvalPhase, Evaluator};
use crate::memory::MemoryReport;
use crate::metrics::MetricsLog;
use crate::trainer::{StepReport, Trainer};

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub method: Method,
    pub model: String,
    pub task: String,
    pub train_examples: usize,
    pub truncated_examples: usize,
    pub dropped_examples: usize,
    /// Step the run started from (0, or the resumed checkpoint's step).
    pub start_step: usize,
    pub steps: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// Mean wall time per optimizer step of this invocation.
    pub mean_step_s: f64,
    pub train_s: f64,
    /// Mean token loss on up to `eval_samples` test examples, before / after training.
    pub heldout_loss_before: Option<f64>,
    pub heldout_loss_after: Option<f64>,
    /// Results of the plugged-in [`Evaluator`], if any.
    pub eval_before: Option<serde_json::Value>,
    pub eval_after: Option<serde_json::Value>,
    pub memory: MemoryReport,
    pub export_dir: PathBuf,
    pub adapter_dir: Option<PathBuf>,
    pub checkpoint: Option<PathBuf>,
    /// Steps skipped because of a non-finite loss or gradient (whole run, resumed part included).
    #[serde(default)]
    pub skipped_steps: usize,
    /// The run stopped on request ([`RunOptions::stop`]) before its last step; no after-evaluation
    /// and no export were done; resume continues it.
    #[serde(default)]
    pub stopped_early: bool,
}

/// Progress callback: the step's report and the total number of steps.
pub type StepCallback<'a> = &'a mut dyn FnMut(&StepReport, usize);

/// Optional parts of a run.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Generation-based evaluation before and after training.
    pub evaluator: Option<&'a mut dyn Evaluator>,
    /// Called after every step (progress display).
    pub on_step: Option<StepCallback<'a>>,
    /// Skip writing the exported model (tests).
    pub skip_export: bool,
    /// Skip the checkpoint at the end of the run (experiment grids that only keep the
    /// summaries); `save_every` checkpoints are still written, and a stopped run still saves.
    pub skip_final_checkpoint: bool,
    /// Checked before every step: when set, the run stops cleanly (module docs).
    pub stop: Option<&'a AtomicBool>,
}

/// The adapter configuration of a lora/dora run (`None` for the other methods).
pub fn adapter_config(cfg: &TrainConfig) -> Result<Option<AdapterConfig>> {
    let kind = match cfg.method {
        Method::Lora => AdapterKind::Lora,
        Method::Dora => AdapterKind::Dora,
        _ => return Ok(None),
    };
    let names: Vec<&str> = cfg
        .target_modules
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let targets = TargetModules::parse(&names).map_err(|e| TrainError::Invalid {
        what: "target_modules",
        msg: e.to_string(),
    })?;
    Ok(Some(AdapterConfig {
        kind,
        rank: cfg.rank,
        alpha: cfg.lora_alpha,
        dropout: cfg.lora_dropout,
        targets,
        init_seed: cfg.seed,
    }))
}

/// Device, dtype and trainability for the configured method.
pub fn load_options(cfg: &TrainConfig) -> Result<LoadOptions> {
    let device = match cfg.device {
        DeviceKind::Cpu => Device::Cpu,
        DeviceKind::Cuda => Device::new_cuda(0)?,
    };
    let dtype = match cfg.dtype {
        DTypeKey::F32 => DType::F32,
        DTypeKey::Bf16 => DType::BF16,
    };
    let training = match adapter_config(cfg)? {
        Some(a) => Training::Adapter(a),
        None => Training::Full,
    };
    Ok(LoadOptions {
        dtype,
        device,
        training,
    })
}

/// Loads `cfg.model` (`smollm2`, a `.gguf` file, or a Hugging Face folder) for training, with
/// its tokenizer (`None` for a folder without `tokenizer.json`). Returns the model path too.
pub fn load_model(cfg: &TrainConfig) -> Result<(Llama, Option<Tokenizer>, PathBuf)> {
    let opts = load_options(cfg)?;
    let path = if cfg.model == "smollm2" {
        crosslore_model::fetch::ensure_smollm2(crosslore_model::fetch::default_cache_dir())?
    } else {
        PathBuf::from(&cfg.model)
    };
    if path.extension().is_some_and(|e| e == "gguf") {
        let g = crosslore_model::gguf::load_llama(&path, &opts.device, opts.dtype)?;
        let origin = path.display().to_string();
        let config = LlamaConfig::from_json_value(g.config, &origin)?;
        let model = Llama::from_tensors_named(config, g.tensors, &opts, &origin)?;
        return Ok((model, Some(g.tokenizer), path));
    }
    if !path.is_dir() {
        return Err(TrainError::Invalid {
            what: "model",
            msg: format!(
                "`{}` is neither `smollm2`, a .gguf file, nor a Hugging Face folder",
                cfg.model
            ),
        });
    }
    let model = Llama::from_hf_folder(&path, &opts)?;
    let tj = path.join("tokenizer.json");
    let tok = if tj.is_file() {
        Some(crosslore_model::tokenizer::load_json(&tj)?)
    } else {
        None
    };
    Ok((model, tok, path))
}

/// The examples of a split: a shipped task (`e2e_nlg`, `mathqa`, `xsum`, `cnn_dm`, embedded
/// from `data/<task>/{train,test}.jsonl`) or a file read with `cfg.data_format`. E2E training
/// examples are expanded to one per reference.
pub fn load_task(cfg: &TrainConfig, split: Split) -> Result<Vec<Example>> {
    let examples = match ShippedTask::from_str(&cfg.task) {
        Ok(t) => {
            let ex = t.load(split)?;
            if t == ShippedTask::E2eNlg && split == Split::Train {
                expand_references(&ex)
            } else {
                ex
            }
        }
        Err(_) => {
            if cfg.data_format.is_empty() {
                return Err(TrainError::Invalid {
                    what: "data_format",
                    msg: format!(
                        "task `{}` is not a shipped task (e2e_nlg, mathqa, xsum, cnn_dm): set \
                         data_format to the file's format",
                        cfg.task
                    ),
                });
            }
            let format = Format::from_str(&cfg.data_format)?;
            let path = Path::new(&cfg.task);
            match split {
                Split::Train => format.load(path)?,
                // A file task has no separate test split: evaluate on its first examples.
                Split::Test => format.load(path)?,
            }
        }
    };
    if examples.is_empty() {
        return Err(TrainError::Invalid {
            what: "task",
            msg: format!("`{}` ({}) has no example", cfg.task, split.name()),
        });
    }
    Ok(examples)
}

/// The encoder of a run (template from the config) and the padding id (the EOS: padded
/// positions carry no loss and are masked from attention, so any id would do).
pub fn encoder<'t>(cfg: &TrainConfig, tokenizer: &'t Tokenizer) -> Result<(Encoder<'t>, u32)> {
    let template = Template::from_str(&cfg.template)?;
    let enc = Encoder::new(tokenizer, EncodeConfig::new(template, cfg.max_len))?;
    let pad = enc.eos_id();
    Ok((enc, pad))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Invalid {
        what: "json",
        msg: format!("{}: {e}", path.display()),
    })?;
    crosslore_model::export::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// [`run_finetune_with`] without evaluator or progress callback.
pub fn run_finetune(cfg: &TrainConfig) -> Result<RunSummary> {
    run_finetune_with(cfg, RunOptions::default())
}

/// The whole job (module docs).
pub fn run_finetune_with(cfg: &TrainConfig, mut opts: RunOptions<'_>) -> Result<RunSummary> {
    cfg.validate("config")?;
    let run_dir = cfg.run_dir();
    let (model, tokenizer, model_path) = load_model(cfg)?;
    let tokenizer = tokenizer.ok_or_else(|| TrainError::Invalid {
        what: "model",
        msg: format!("{}: no tokenizer.json", model_path.display()),
    })?;
    let train_ex = load_task(cfg, Split::Train)?;
    let test_ex = load_task(cfg, Split::Test)?;
    let (enc, pad_id) = encoder(cfg, &tokenizer)?;
    let set = enc.encode_all(&train_ex)?;
    if set.examples.is_empty() {
        return Err(TrainError::Invalid {
            what: "max_len",
            msg: format!(
                "all {} training examples of `{}` were dropped: none keeps a target token within \
                 max_len = {} tokens (prompt and template included); raise max_len",
                train_ex.len(),
                cfg.task,
                cfg.max_len
            ),
        });
    }
    let n_eval = cfg.eval_samples.min(test_ex.len());
    let test_enc: Vec<Encoded> = enc.encode_all(&test_ex[..n_eval])?.examples;
    let (truncated, dropped, n_train) = (set.truncated, set.dropped, set.examples.len());
    // Built before anything is written or evaluated: it validates the method against the
    // model (e.g. rank larger than a matrix). Every input is then loaded and valid.
    let mut trainer = Trainer::new(cfg.clone(), model, set.examples, pad_id)?;
    // Only now is the run folder created (bad input writes nothing).
    std::fs::create_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, "create", e))?;
    let toml = toml::to_string(cfg).map_err(|e| TrainError::Invalid {
        what: "config",
        msg: e.to_string(),
    })?;
    crosslore_model::export::write_atomic(&run_dir.join("config.toml"), toml.as_bytes())?;

    let before = if test_enc.is_empty() {
        None
    } else {
        Some(heldout_loss(
            trainer.model(),
            &test_enc,
            cfg.batch_size,
            pad_id,
        )?)
    };
    let eval_before = match opts.evaluator.as_deref_mut() {
        Some(e) if n_eval > 0 => Some(e.evaluate(
            EvalPhase::Before,
            trainer.model(),
            &tokenizer,
            &test_ex[..n_eval],
            cfg,
        )?),
        _ => None,
    };

    // The newest checkpoint and the step it holds (a resumed run starts with its own).
    let mut checkpoint = if cfg.resume {
        latest_checkpoint(&run_dir)?
    } else {
        None
    };
    if let Some(ckpt) = &checkpoint {
        trainer.resume_from(ckpt)?;
    }
    let start_step = trainer.steps_done();
    let mut log = MetricsLog::open_at(&run_dir.join("metrics.jsonl"), start_step)?;
    let (mut first, mut last) = (None, None);
    let t0 = Instant::now();
    let mut saved_step = checkpoint.as_ref().map(|_| start_step);
    let stop_requested = || opts.stop.is_some_and(|f| f.load(Ordering::SeqCst));
    let mut stopped_early = false;
    while !trainer.is_done() {
        if stop_requested() {
            stopped_early = true;
            break;
        }
        let r = match trainer.step() {
            Ok(r) => r,
            Err(TrainError::TooManyBadSteps {
                step,
                consecutive,
                last,
                ..
            }) => {
                return Err(TrainError::TooManyBadSteps {
                    step,
                    consecutive,
                    last,
                    checkpoint: latest_checkpoint(&run_dir)?,
                })
            }
            Err(e) => return Err(e),
        };
        if r.step.is_multiple_of(cfg.log_every) || trainer.is_done() || r.skipped.is_some() {
            log.write(&r)?;
        }
        if r.skipped.is_none() {
            first.get_or_insert(r.loss);
            last = Some(r.loss);
        }
        if cfg.save_every > 0 && r.step.is_multiple_of(cfg.save_every) {
            checkpoint = Some(trainer.save_checkpoint(&run_dir, cfg.keep_checkpoints)?);
            saved_step = Some(r.step);
        }
        if let Some(cb) = opts.on_step.as_deref_mut() {
            cb(&r, trainer.total_steps());
        }
    }
    let train_s = t0.elapsed().as_secs_f64();
    let steps = trainer.steps_done() - start_step;
    if saved_step != Some(trainer.steps_done()) && (stopped_early || !opts.skip_final_checkpoint) {
        checkpoint = Some(trainer.save_checkpoint(&run_dir, cfg.keep_checkpoints)?);
    }
    let memory = trainer.memory_report();
    write_json(&run_dir.join("memory.json"), &memory)?;

    let model = trainer.model();
    let export_dir = run_dir.join("export");
    let (mut after, mut eval_after, mut adapter_dir) = (None, None, None);
    // A stopped run skips what only a finished run needs (evaluation after, export).
    if !stopped_early {
        if !test_enc.is_empty() {
            after = Some(heldout_loss(model, &test_enc, cfg.batch_size, pad_id)?);
        }
        if let Some(e) = opts.evaluator.as_deref_mut().filter(|_| n_eval > 0) {
            let r = e.evaluate(EvalPhase::After, model, &tokenizer, &test_ex[..n_eval], cfg)?;
            eval_after = Some(r);
        }
        if !opts.skip_export {
            crate::export::export_hf(model, Some(&tokenizer), &export_dir, model.dtype())?;
            if model.adapter_config().is_some() {
                let dir = run_dir.join("adapter");
                crate::export::export_adapters(model, &dir, &model_path.display().to_string())?;
                adapter_dir = Some(dir);
            }
        }
    }
    let summary = RunSummary {
        run_dir: run_dir.clone(),
        method: cfg.method,
        model: model_path.display().to_string(),
        task: cfg.task.clone(),
        train_examples: n_train,
        truncated_examples: truncated,
        dropped_examples: dropped,
        start_step,
        steps,
        first_loss: first,
        last_loss: last,
        mean_step_s: mean_step(train_s, steps),
        train_s,
        heldout_loss_before: before,
        heldout_loss_after: after,
        eval_before,
        eval_after,
        memory,
        export_dir,
        adapter_dir,
        checkpoint,
        skipped_steps: trainer.skipped_steps(),
        stopped_early,
    };
    write_json(&run_dir.join("summary.json"), &summary)?;
    Ok(summary)
}

fn mean_step(train_s: f64, steps: usize) -> f64 {
    if steps > 0 {
        train_s / steps as f64
    } else {
        0.0
    }
}
