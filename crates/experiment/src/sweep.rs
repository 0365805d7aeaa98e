//! Learning-rate sweep: every method gets the same budget (the base config's steps) for each of
//! its candidate learning rates, trained on the training split minus a validation part carved
//! from it (seeded; whole lines, i.e. whole meaning representations for E2E NLG, so no
//! validation MR is seen in training), and scored on that validation part: token loss (teacher
//! forcing) and, with `select_by = "metric"`, the task's primary metric on generated outputs.
//! The chosen learning rate per method is the best by `select_by`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crosslore_data::{Encoded, Example, ShippedTask, Split};
use crosslore_linalg::Rng;
use crosslore_model::Llama;
use crosslore_train::eval::heldout_loss;
use crosslore_train::run::encoder;
use crosslore_train::{
    run_finetune_with, EvalPhase, Evaluator, Method, RunOptions, TrainConfig, TrainError,
};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{ExperimentError, Result};
use crate::grid::{finished, remove_checkpoints, Cell, TimeBudget};
use crate::plot::{lines, Series};
use crate::spec::{method_name, Experiment, SelectBy};
use crate::task_eval::evaluate_run_phase;

/// One sweep run's validation result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub method: Method,
    pub learning_rate: f64,
    pub val_loss: Option<f64>,
    pub val_metric: Option<f64>,
    pub last_train_loss: Option<f64>,
    pub mean_step_s: f64,
}

/// `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    pub name: String,
    pub task: String,
    pub metric: String,
    pub select_by: SelectBy,
    pub train_lines: usize,
    pub validation_lines: usize,
    pub validation_scored: usize,
    pub points: Vec<SweepPoint>,
    /// Method name -> chosen learning rate.
    pub chosen: BTreeMap<String, f64>,
    /// Whether every (method, learning rate) run finished (grids read `chosen` only then).
    pub complete: bool,
}

/// Splits the lines of `text` (JSONL) into (train, validation) by a seeded permutation;
/// `fraction` of the lines (at least one) go to validation. Order within each part follows the
/// file.
pub fn carve(text: &str, fraction: f64, seed: u64) -> (Vec<String>, Vec<String>) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let n_val = ((lines.len() as f64 * fraction).round() as usize)
        .max(1)
        .min(lines.len().saturating_sub(1));
    let mut rng = Rng::new(seed);
    let mut val_idx = rng.sample_distinct(lines.len(), n_val);
    val_idx.sort_unstable();
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, l) in lines.iter().enumerate() {
        if val_idx.binary_search(&i).is_ok() {
            val.push(l.to_string());
        } else {
            train.push(l.to_string());
        }
    }
    (train, val)
}

/// E2E NLG lines with several references become one line per reference (as the shipped task's
/// training split is expanded), so training on the file sees every reference.
fn expand_e2e(lines: &[String], file: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let v: serde_json::Value =
            serde_json::from_str(l).map_err(|e| ExperimentError::BadFile {
                path: file.to_path_buf(),
                msg: format!("line {}: {e}", i + 1),
            })?;
        match v.get("references").and_then(|r| r.as_array()) {
            Some(refs) if refs.len() > 1 => {
                for r in refs {
                    let mut one = v.clone();
                    one["references"] = serde_json::Value::Array(vec![r.clone()]);
                    out.push(one.to_string());
                }
            }
            _ => out.push(l.clone()),
        }
    }
    Ok(out)
}

/// Scores the trained model on the validation examples (ignores the run's own test examples).
struct ValidationEvaluator<'a> {
    valid: &'a [Example],
    select_by: SelectBy,
    batch_size: usize,
}

impl Evaluator for ValidationEvaluator<'_> {
    fn evaluate(
        &mut self,
        phase: EvalPhase,
        model: &Llama,
        tokenizer: &Tokenizer,
        _test: &[Example],
        cfg: &TrainConfig,
    ) -> crosslore_train::Result<serde_json::Value> {
        if phase == EvalPhase::Before {
            return Ok(serde_json::Value::Null);
        }
        let (enc, pad_id) = encoder(cfg, tokenizer)?;
        let encoded: Vec<Encoded> = enc.encode_all(self.valid)?.examples;
        let loss = heldout_loss(model, &encoded, cfg.batch_size, pad_id)?;
        let mut v = serde_json::json!({ "val_loss": loss });
        if self.select_by == SelectBy::Metric {
            let r = evaluate_run_phase(
                phase,
                model,
                tokenizer,
                self.valid,
                cfg,
                self.batch_size,
                None,
            )?;
            v["metrics"] = serde_json::to_value(&r.metrics).map_err(|e| TrainError::Invalid {
                what: "evaluation",
                msg: e.to_string(),
            })?;
        }
        Ok(v)
    }
}

/// Runs the sweep (module docs); `summarize_only` reads the finished runs only; with
/// `time_budget_s`, runs not started in time are left for the next call. Writes
/// `sweep.json`, `sweep.md` and `plots/sweep.png` into `out`.
pub fn run(
    exp: &Experiment,
    out: &Path,
    summarize_only: bool,
    time_budget_s: Option<f64>,
) -> Result<SweepReport> {
    let mut budget = TimeBudget::new(time_budget_s);
    let spec = exp
        .spec
        .sweep
        .as_ref()
        .ok_or_else(|| ExperimentError::Spec {
            file: exp.file.clone(),
            msg: "kind = \"lr_sweep\" needs a [sweep] table".into(),
        })?;
    let task = ShippedTask::from_str(&exp.spec.task).map_err(|_| ExperimentError::BadValue {
        file: exp.file.clone(),
        key: "task".into(),
        msg: format!(
            "a sweep carves its validation split from a shipped task's training split; `{}` is \
             not one",
            exp.spec.task
        ),
    })?;
    let seed = exp.spec.seeds[0];
    let (train, valid) = carve(task.text(Split::Train), spec.validation_fraction, seed);
    let data = out.join("data");
    std::fs::create_dir_all(&data).map_err(|e| ExperimentError::io(&data, "create", e))?;
    let train_path = data.join("train.jsonl");
    let valid_path = data.join("valid.jsonl");
    let train_lines = if task == ShippedTask::E2eNlg {
        expand_e2e(&train, &train_path)?
    } else {
        train.clone()
    };
    let write = |p: &PathBuf, lines: &[String]| {
        std::fs::write(p, lines.join("\n") + "\n").map_err(|e| ExperimentError::io(p, "write", e))
    };
    write(&train_path, &train_lines)?;
    write(&valid_path, &valid)?;
    let format = task.format();
    let valid_ex: Vec<Example> = format.load(&valid_path)?;
    let valid_ex: Vec<Example> = valid_ex.into_iter().take(spec.validation_samples).collect();
    let mut base = exp.base.clone();
    base.task = train_path.display().to_string();
    base.data_format = format.name().into();
    base.eval_samples = 1; // the run's own held-out loss on its (training) file: minimal
    let metric = exp.spec.metric.clone().unwrap_or_else(|| {
        if task == ShippedTask::Mathqa {
            "accuracy"
        } else {
            "bleu"
        }
        .into()
    });
    let mut points = Vec::new();
    for (method, lrs) in exp.sweep_methods() {
        for lr in lrs {
            let cell = Cell {
                method,
                rank: (method != Method::Adamw).then_some(spec.rank),
                residual_ratio: (method == Method::Crosslore).then_some(base.residual_ratio),
                seed,
                learning_rate: lr,
            };
            let dir = out
                .join("runs")
                .join(format!("{}-lr{}", cell.id(), fmt_lr(lr)));
            let cfg = cell.config(&base, &dir);
            let run = match finished(&dir, &cfg) {
                Some(r) => Some(r),
                None if summarize_only => None,
                None if !budget.allows_another() => None,
                None => {
                    let tr = std::time::Instant::now();
                    if dir.exists() {
                        std::fs::remove_dir_all(&dir)
                            .map_err(|e| ExperimentError::io(&dir, "remove", e))?;
                    }
                    let mut ev = ValidationEvaluator {
                        valid: &valid_ex,
                        select_by: spec.select_by,
                        batch_size: exp.spec.eval.batch_size,
                    };
                    let r = run_finetune_with(
                        &cfg,
                        RunOptions {
                            evaluator: Some(&mut ev),
                            on_step: None,
                            skip_export: true,
                            skip_final_checkpoint: true,
                            ..Default::default()
                        },
                    )
                    .map_err(|source| ExperimentError::Run {
                        cell: dir.display().to_string(),
                        source: Box::new(source),
                    })?;
                    remove_checkpoints(&dir)?;
                    budget.record(tr.elapsed().as_secs_f64());
                    Some(r)
                }
            };
            let Some(run) = run else { continue };
            let ev = run.eval_after.clone().unwrap_or_default();
            let p = SweepPoint {
                method,
                learning_rate: lr,
                val_loss: ev.get("val_loss").and_then(|v| v.as_f64()),
                val_metric: ev
                    .get("metrics")
                    .and_then(|m| m.get(&metric))
                    .and_then(|v| v.as_f64()),
                last_train_loss: run.last_loss,
                mean_step_s: run.mean_step_s,
            };
            eprintln!(
                "sweep {}: {} lr {lr:e}: val loss {:?}, {metric} {:?}",
                exp.spec.name,
                method_name(method),
                p.val_loss,
                p.val_metric
            );
            points.push(p);
        }
    }
    let chosen = choose(&points, spec.select_by);
    let planned: usize = exp.sweep_methods().iter().map(|(_, l)| l.len()).sum();
    let complete = points.len() == planned;
    let report = SweepReport {
        name: exp.spec.name.clone(),
        task: exp.spec.task.clone(),
        metric,
        select_by: spec.select_by,
        train_lines: train.len(),
        validation_lines: valid.len(),
        validation_scored: valid_ex.len(),
        points,
        chosen,
        complete,
    };
    let p = out.join("sweep.json");
    let json = serde_json::to_string_pretty(&report).map_err(|e| ExperimentError::BadFile {
        path: p.clone(),
        msg: e.to_string(),
    })?;
    std::fs::write(&p, json).map_err(|e| ExperimentError::io(&p, "write", e))?;
    let p = out.join("sweep.md");
    std::fs::write(&p, report.markdown()).map_err(|e| ExperimentError::io(&p, "write", e))?;
    report.plot(&out.join("plots"))?;
    Ok(report)
}

fn fmt_lr(lr: f64) -> String {
    format!("{lr:e}")
}

/// The best learning rate per method: lowest validation loss, or highest metric (ties: the
/// smaller learning rate).
pub fn choose(points: &[SweepPoint], by: SelectBy) -> BTreeMap<String, f64> {
    let mut best: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for p in points {
        let score = match by {
            SelectBy::Loss => p.val_loss.map(|l| -l),
            SelectBy::Metric => p.val_metric,
        };
        let Some(score) = score.filter(|s| s.is_finite()) else {
            continue;
        };
        let e = best
            .entry(method_name(p.method).to_string())
            .or_insert((f64::NEG_INFINITY, p.learning_rate));
        if score > e.0 || (score == e.0 && p.learning_rate < e.1) {
            *e = (score, p.learning_rate);
        }
    }
    best.into_iter().map(|(m, (_, lr))| (m, lr)).collect()
}

impl SweepReport {
    /// `sweep.md`.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Learning-rate sweep `{}` (task `{}`)\n\nTrained on {} training lines, scored on {} \
             of the {} validation lines carved from the training split; selection by {:?}.\n",
            self.name,
            self.task,
            self.train_lines,
            self.validation_scored,
            self.validation_lines,
            self.select_by
        );
        let _ = writeln!(
            s,
            "| method | learning rate | validation loss | validation {} | final train loss | s/step | chosen |\n|---|---|---|---|---|---|---|",
            self.metric
        );
        let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.4}"));
        for p in &self.points {
            let m = method_name(p.method);
            let chosen = self.chosen.get(m) == Some(&p.learning_rate);
            let _ = writeln!(
                s,
                "| {m} | {:.0e} | {} | {} | {} | {:.4} | {} |",
                p.learning_rate,
                f(p.val_loss),
                f(p.val_metric),
                f(p.last_train_loss),
                p.mean_step_s,
                if chosen { "**yes**" } else { "" }
            );
        }
        let _ = writeln!(s, "\nChosen: {}", {
            let v: Vec<String> = self
                .chosen
                .iter()
                .map(|(m, lr)| format!("{m} {lr:.0e}"))
                .collect();
            v.join(", ")
        });
        s
    }

    /// `sweep.png`: validation loss against log10(learning rate), one line per method.
    pub fn plot(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, "create", e))?;
        let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for p in &self.points {
            if let Some(l) = p.val_loss {
                by.entry(method_name(p.method).into())
                    .or_default()
                    .push((p.learning_rate.log10(), l));
            }
        }
        let series: Vec<Series> = by
            .into_iter()
            .map(|(label, mut points)| {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series { label, points }
            })
            .collect();
        if series.is_empty() {
            return Ok(());
        }
        lines(
            &dir.join("sweep.png"),
            &format!("{}: validation loss by learning rate", self.name),
            ("log10(learning rate)", "validation loss"),
            &series,
            false,
        )
    }
}
