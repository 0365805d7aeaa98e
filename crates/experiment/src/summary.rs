//! The summary of a grid: per cell the numbers of its run folder (`summary.json`,
//! `metrics.jsonl`), per group (method, rank, residual ratio) their mean and spread over seeds
//! ([`crate::stats::Stat`]); written as `summary.json` and `summary.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crosslore_train::{Method, MetricLine, MetricsLog, RunSummary};
use serde::{Deserialize, Serialize};

use crate::error::{ExperimentError, Result};
use crate::grid::{cell_dir, cells, finished, trim_float, Cell};
use crate::spec::{method_name, Experiment};
use crate::stats::Stat;

/// The numbers of one finished cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub id: String,
    pub group: String,
    pub cell: Cell,
    /// Metric key -> value after training (`null` where the metric failed or no evaluation ran).
    pub metrics: BTreeMap<String, Option<f64>>,
    /// Metrics before training (when the run evaluated before).
    pub metrics_before: Option<BTreeMap<String, Option<f64>>>,
    pub steps: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub heldout_loss_before: Option<f64>,
    pub heldout_loss_after: Option<f64>,
    pub mean_step_s: f64,
    pub train_s: f64,
    pub optimizer_state_bytes: usize,
    pub trainable_bytes: usize,
    /// Weights + gradient peak + optimizer state + activations (the run's memory accounting).
    pub estimated_peak_bytes: usize,
    /// Seconds spent in projection refreshes (GaLore SVD / CrossLore RSI + cross-head), summed
    /// over the logged steps.
    pub refresh_s: f64,
    /// (step, loss) of every logged step.
    pub loss_curve: Vec<(usize, f64)>,
}

/// Mean and spread over the seeds of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group: String,
    pub method: Method,
    pub rank: Option<usize>,
    pub residual_ratio: Option<f64>,
    pub learning_rate: f64,
    pub seeds: Vec<u64>,
    pub metrics: BTreeMap<String, Stat>,
    pub last_loss: Option<Stat>,
    pub heldout_loss_after: Option<Stat>,
    pub mean_step_s: Option<Stat>,
    pub refresh_s: Option<Stat>,
    pub optimizer_state_mib: Option<Stat>,
    pub estimated_peak_mib: Option<Stat>,
    /// Mean loss over the seeds at each logged step (steps every seed logged).
    pub loss_curve: Vec<(usize, f64)>,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSummary {
    pub name: String,
    pub task: String,
    pub primary_metric: String,
    pub base: crosslore_train::TrainConfig,
    pub cells: Vec<CellResult>,
    pub groups: Vec<GroupSummary>,
    /// Cells without a finished run folder.
    pub missing: Vec<String>,
}

const MIB: f64 = 1024.0 * 1024.0;

/// The primary metric: the spec's, else `accuracy` when the runs report it, else `bleu`.
fn primary_metric(exp: &Experiment, cells: &[CellResult]) -> String {
    if let Some(m) = &exp.spec.metric {
        return m.clone();
    }
    if cells.iter().any(|c| c.metrics.contains_key("accuracy")) {
        "accuracy".into()
    } else {
        "bleu".into()
    }
}

/// The metrics object of a run's `eval_after` / `eval_before` JSON.
fn metrics_of(v: &Option<serde_json::Value>) -> Option<BTreeMap<String, Option<f64>>> {
    let obj = v.as_ref()?.get("metrics")?.as_object()?;
    Some(obj.iter().map(|(k, v)| (k.clone(), v.as_f64())).collect())
}

/// The numbers of one cell's finished run folder.
pub fn cell_result(cell: &Cell, dir: &Path, run: &RunSummary) -> Result<CellResult> {
    let metrics_path = dir.join("metrics.jsonl");
    let lines: Vec<MetricLine> = if metrics_path.is_file() {
        MetricsLog::read(&metrics_path)?
    } else {
        Vec::new()
    };
    Ok(CellResult {
        id: cell.id(),
        group: cell.group(),
        cell: cell.clone(),
        metrics: metrics_of(&run.eval_after).unwrap_or_default(),
        metrics_before: metrics_of(&run.eval_before),
        steps: run.start_step + run.steps,
        first_loss: run.first_loss,
        last_loss: run.last_loss,
        heldout_loss_before: run.heldout_loss_before,
        heldout_loss_after: run.heldout_loss_after,
        mean_step_s: run.mean_step_s,
        train_s: run.train_s,
        optimizer_state_bytes: run.memory.optimizer_state_bytes,
        trainable_bytes: run.memory.trainable_bytes,
        estimated_peak_bytes: run.memory.estimated_peak_bytes,
        refresh_s: lines.iter().map(|l| l.refresh_s).sum(),
        loss_curve: lines.iter().map(|l| (l.step, l.loss)).collect(),
    })
}

fn stat_of<F: Fn(&CellResult) -> Option<f64>>(cells: &[&CellResult], f: F) -> Option<Stat> {
    let v: Vec<f64> = cells.iter().filter_map(|c| f(c)).collect();
    Stat::of(&v)
}

/// Groups `results` (in first-seen order) and aggregates each over its seeds.
pub fn aggregate(results: &[CellResult]) -> Vec<GroupSummary> {
    let mut order: Vec<String> = Vec::new();
    for r in results {
        if !order.contains(&r.group) {
            order.push(r.group.clone());
        }
    }
    order
        .into_iter()
        .map(|g| {
            let cs: Vec<&CellResult> = results.iter().filter(|r| r.group == g).collect();
            let first = &cs[0].cell;
            let mut keys: Vec<&String> = cs.iter().flat_map(|c| c.metrics.keys()).collect();
            keys.sort();
            keys.dedup();
            let metrics = keys
                .into_iter()
                .filter_map(|k| {
                    stat_of(&cs, |c| c.metrics.get(k).copied().flatten()).map(|s| (k.clone(), s))
                })
                .collect();
            // mean curve over the steps every seed logged
            let mut by_step: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
            for c in &cs {
                for &(s, l) in &c.loss_curve {
                    by_step.entry(s).or_default().push(l);
                }
            }
            let loss_curve = by_step
                .into_iter()
                .filter(|(_, v)| v.len() == cs.len())
                .map(|(s, v)| (s, v.iter().sum::<f64>() / v.len() as f64))
                .collect();
            GroupSummary {
                group: g.clone(),
                method: first.method,
                rank: first.rank,
                residual_ratio: first.residual_ratio,
                learning_rate: first.learning_rate,
                seeds: cs.iter().map(|c| c.cell.seed).collect(),
                metrics,
                last_loss: stat_of(&cs, |c| c.last_loss),
                heldout_loss_after: stat_of(&cs, |c| c.heldout_loss_after),
                mean_step_s: stat_of(&cs, |c| Some(c.mean_step_s)),
                refresh_s: stat_of(&cs, |c| Some(c.refresh_s)),
                optimizer_state_mib: stat_of(&cs, |c| Some(c.optimizer_state_bytes as f64 / MIB)),
                estimated_peak_mib: stat_of(&cs, |c| Some(c.estimated_peak_bytes as f64 / MIB)),
                loss_curve,
            }
        })
        .collect()
}

/// Collects the finished cells of a grid under `out` and aggregates them.
pub fn summarize(exp: &Experiment, out: &Path) -> Result<ExperimentSummary> {
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for cell in cells(exp) {
        let dir = cell_dir(exp, out, &cell);
        match finished(&dir, &cell.config(&exp.base, &dir)) {
            Some(run) => results.push(cell_result(&cell, &dir, &run)?),
            None => missing.push(cell.id()),
        }
    }
    let groups = aggregate(&results);
    Ok(ExperimentSummary {
        name: exp.spec.name.clone(),
        task: exp.spec.task.clone(),
        primary_metric: primary_metric(exp, &results),
        base: exp.base.clone(),
        cells: results,
        groups,
        missing,
    })
}

/// Metric columns of the Markdown table: the primary metric first, then the others in
/// name order (ROUGE: only `rougeL`, as the paper's tables).
fn metric_columns(s: &ExperimentSummary) -> Vec<String> {
    let mut keys: Vec<String> = s
        .groups
        .iter()
        .flat_map(|g| g.metrics.keys().cloned())
        .filter(|k| !["rouge1", "rouge2", "rougeLsum"].contains(&k.as_str()))
        .collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| *k != s.primary_metric);
    keys.insert(0, s.primary_metric.clone());
    keys
}

fn opt_stat(s: &Option<Stat>, digits: usize) -> String {
    s.as_ref().map_or("-".into(), |s| s.display(digits))
}

impl ExperimentSummary {
    /// `summary.md`: one row per group, mean ± sample std over seeds.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Experiment `{}` (task `{}`)\n", self.name, self.task);
        let b = &self.base;
        let _ = writeln!(
            s,
            "Model `{}`, {} steps (epochs {} when 0), batch {} x accum {}, max_len {}, {} \
             schedule, warm-up {}, update_interval {}, scale {}, device {:?}, dtype {:?}. \
             Values: mean ± sample std over seeds (n in the seeds column). Time: mean wall \
             time per optimizer step; refresh s: seconds in projection refreshes per run. \
             Memory: the run's accounting (weights + gradient peak + optimizer state + \
             activation estimate) and the optimizer state alone.\n",
            b.model,
            b.max_steps,
            b.epochs,
            b.batch_size,
            b.grad_accum,
            b.max_len,
            serde_json::to_value(b.lr_scheduler)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            b.warmup_steps,
            b.update_interval,
            b.scale,
            b.device,
            b.dtype,
        );
        let cols = metric_columns(self);
        let _ = write!(s, "| method | rank | residual | lr | seeds |");
        for c in &cols {
            let _ = write!(s, " {c} |");
        }
        let _ = writeln!(
            s,
            " final train loss | held-out loss | s/step | refresh s | optimizer state MiB | \
             est. peak MiB |"
        );
        let _ = writeln!(s, "|{}", "---|".repeat(5 + cols.len() + 6));
        for g in &self.groups {
            let _ = write!(
                s,
                "| {} | {} | {} | {:.1e} | {} |",
                method_name(g.method),
                g.rank.map_or("full".into(), |r| r.to_string()),
                g.residual_ratio
                    .map_or("-".into(), |r| format!("{}%", trim_float(r * 100.0))),
                g.learning_rate,
                g.seeds.len()
            );
            for c in &cols {
                let digits = if c == "bleu" || c == "nist" || c == "cider" {
                    2
                } else {
                    4
                };
                let _ = write!(s, " {} |", opt_stat(&g.metrics.get(c).cloned(), digits));
            }
            let _ = writeln!(
                s,
                " {} | {} | {} | {} | {} | {} |",
                opt_stat(&g.last_loss, 4),
                opt_stat(&g.heldout_loss_after, 4),
                opt_stat(&g.mean_step_s, 4),
                opt_stat(&g.refresh_s, 2),
                opt_stat(&g.optimizer_state_mib, 1),
                opt_stat(&g.estimated_peak_mib, 0),
            );
        }
        if !self.missing.is_empty() {
            let _ = writeln!(
                s,
                "\nNot run (no finished run folder): {}",
                self.missing.join(", ")
            );
        }
        s
    }

    /// Writes `summary.json` and `summary.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, "create", e))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| ExperimentError::BadFile {
            path: dir.join("summary.json"),
            msg: e.to_string(),
        })?;
        let p = dir.join("summary.json");
        std::fs::write(&p, json).map_err(|e| ExperimentError::io(&p, "write", e))?;
        let p = dir.join("summary.md");
        std::fs::write(&p, self.markdown()).map_err(|e| ExperimentError::io(&p, "write", e))?;
        Ok(())
    }
}
