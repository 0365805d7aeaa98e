//! A grid experiment: every cell (method x rank x residual ratio x seed) is one
//! [`crosslore_train::run_finetune_with`] run in its own folder `<runs_dir>/<cell id>/`
//! ([`cell_dir`]). A cell whose folder already holds a finished `summary.json` and an equal
//! `config.toml` is skipped, so a grid can be resumed or split across calls ([`TimeBudget`]
//! stops starting new cells after a while) or processes (`shard`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crosslore_train::{run_finetune_with, Method, RunOptions, RunSummary, StepReport, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::error::{ExperimentError, Result};
use crate::spec::{method_name, Experiment};
use crate::task_eval::GenerationEvaluator;

/// One run of a grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub method: Method,
    /// `None` for AdamW (full rank).
    pub rank: Option<usize>,
    /// CrossLore's residual ratio (`None` for the other methods).
    pub residual_ratio: Option<f64>,
    pub seed: u64,
    pub learning_rate: f64,
}

impl Cell {
    /// The group this cell belongs to (everything but the seed), e.g. `crosslore-r16-rho1.2%`.
    pub fn group(&self) -> String {
        let mut s = method_name(self.method).to_string();
        if let Some(r) = self.rank {
            s.push_str(&format!("-r{r}"));
        }
        if let Some(rho) = self.residual_ratio {
            s.push_str(&format!("-rho{}%", trim_float(rho * 100.0)));
        }
        s
    }

    /// Folder name, e.g. `crosslore-r16-rho1.2pct-s1` (no `%` in paths).
    pub fn id(&self) -> String {
        format!("{}-s{}", self.group().replace('%', "pct"), self.seed)
    }

    /// The run configuration of this cell.
    pub fn config(&self, base: &TrainConfig, dir: &Path) -> TrainConfig {
        let mut c = base.clone();
        c.method = self.method;
        if let Some(r) = self.rank {
            c.rank = r;
        }
        if let Some(rho) = self.residual_ratio {
            c.residual_ratio = rho;
        }
        c.seed = self.seed;
        c.learning_rate = self.learning_rate;
        c.output_dir = Some(dir.to_path_buf());
        c
    }
}

/// `1.2`, `0`, `0.6` (no trailing zeros; at most 4 decimals).
pub fn trim_float(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The cells of a grid in run order: by seed, then method (spec order), rank, ratio.
pub fn cells(exp: &Experiment) -> Vec<Cell> {
    let spec = &exp.spec;
    let mut out = Vec::new();
    // seeds outermost: a grid cut short by a time budget still has every group's first seeds
    for &seed in &spec.seeds {
        for &method in &spec.methods {
            let ranks: Vec<Option<usize>> = if method == Method::Adamw {
                vec![None]
            } else {
                spec.ranks.iter().map(|&r| Some(r)).collect()
            };
            let ratios: Vec<Option<f64>> = if method == Method::Crosslore {
                if spec.residual_ratios.is_empty() {
                    vec![Some(exp.base.residual_ratio)]
                } else {
                    spec.residual_ratios.iter().map(|&r| Some(r)).collect()
                }
            } else {
                vec![None]
            };
            for &rank in &ranks {
                for &residual_ratio in &ratios {
                    out.push(Cell {
                        method,
                        rank,
                        residual_ratio,
                        seed,
                        learning_rate: exp.learning_rate(method),
                    });
                }
            }
        }
    }
    out
}

/// The finished run of a cell folder, if any: a readable `summary.json` with at least one step,
/// and a `config.toml` equal to `cfg` (a changed spec re-runs the cell).
pub fn finished(dir: &Path, cfg: &TrainConfig) -> Option<RunSummary> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    let s: RunSummary = serde_json::from_str(&text).ok()?;
    let done: TrainConfig =
        toml::from_str(&std::fs::read_to_string(dir.join("config.toml")).ok()?).ok()?;
    (s.steps + s.start_step > 0 && done == *cfg).then_some(s)
}

/// Shard `(index, count)` of a cell: FNV-1a of its id modulo `count`, so that the same cell id
/// falls in the same shard in every spec (grids that share run folders never run one cell in two
/// processes at once).
pub fn shard_of(cell: &Cell, count: usize) -> usize {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in cell.id().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % count.max(1) as u64) as usize
}

/// The time budget of one call of a grid or sweep: at least one run per call (so that repeated
/// calls always progress), then none that would likely end after the budget (elapsed + the
/// longest run so far).
pub(crate) struct TimeBudget {
    t0: Instant,
    limit_s: Option<f64>,
    longest_s: f64,
    ran: usize,
}

impl TimeBudget {
    pub(crate) fn new(limit_s: Option<f64>) -> Self {
        TimeBudget {
            t0: Instant::now(),
            limit_s,
            longest_s: 0.0,
            ran: 0,
        }
    }

    /// Whether another run may start now.
    pub(crate) fn allows_another(&self) -> bool {
        self.ran == 0
            || self
                .limit_s
                .is_none_or(|b| self.t0.elapsed().as_secs_f64() + self.longest_s <= b)
    }

    /// A run that took `secs` finished.
    pub(crate) fn record(&mut self, secs: f64) {
        self.ran += 1;
        self.longest_s = self.longest_s.max(secs);
    }
}

/// How [`run_grid`] runs.
pub struct GridOptions<'a> {
    /// Run only the cells of shard `(index, count)` ([`shard_of`]); other processes run the rest.
    pub shard: Option<(usize, usize)>,
    /// Do not start a cell that would likely end after this many seconds (elapsed + the
    /// longest cell so far); at least one cell runs per call. `None`: run all.
    pub time_budget_s: Option<f64>,
    /// Called with a line of progress text.
    pub log: &'a mut dyn FnMut(&str),
}

/// What [`run_grid`] did.
#[derive(Debug, Clone, Default)]
pub struct GridOutcome {
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
    /// Cells not started (time budget).
    pub pending: Vec<String>,
}

/// The run folder of a cell: `<runs_dir>/<cell id>`, `runs_dir` defaulting to `<out>/runs`.
pub fn cell_dir(exp: &Experiment, out: &Path, cell: &Cell) -> PathBuf {
    exp.spec
        .runs_dir
        .clone()
        .unwrap_or_else(|| out.join("runs"))
        .join(cell.id())
}

/// Runs every unfinished cell (module docs).
pub fn run_grid(exp: &Experiment, out: &Path, opts: GridOptions<'_>) -> Result<GridOutcome> {
    let mut budget = TimeBudget::new(opts.time_budget_s);
    let all = cells(exp);
    let mut outcome = GridOutcome::default();
    let mut evaluated_before = false;
    for (i, cell) in all.iter().enumerate() {
        if let Some((index, count)) = opts.shard {
            if shard_of(cell, count) != index {
                continue;
            }
        }
        let dir = cell_dir(exp, out, cell);
        let id = cell.id();
        let cfg = cell.config(&exp.base, &dir);
        if finished(&dir, &cfg).is_some() {
            (opts.log)(&format!(
                "[{}/{}] {id}: finished earlier, skipped",
                i + 1,
                all.len()
            ));
            outcome.skipped.push(id);
            continue;
        }
        if !budget.allows_another() {
            outcome.pending.push(id);
            continue;
        }
        if dir.exists() {
            // an unfinished earlier attempt: start over (metrics.jsonl appends)
            std::fs::remove_dir_all(&dir).map_err(|e| ExperimentError::io(&dir, "remove", e))?;
        }
        let mut eval = GenerationEvaluator::new(exp.spec.eval.batch_size);
        eval.before = exp.spec.eval.before && !evaluated_before;
        eval.print_tables = false;
        evaluated_before |= eval.before;
        let tc = Instant::now();
        let mut on_step = |r: &StepReport, total: usize| {
            if r.step == 1 || r.step == total || r.step.is_multiple_of(50) {
                eprintln!("  {id} step {}/{total} loss {:.4}", r.step, r.loss);
            }
        };
        let summary = run_finetune_with(
            &cfg,
            RunOptions {
                evaluator: Some(&mut eval),
                on_step: Some(&mut on_step),
                skip_export: true,
                skip_final_checkpoint: !exp.spec.keep_checkpoints,
                ..Default::default()
            },
        )
        .map_err(|source| ExperimentError::Run {
            cell: id.clone(),
            source: Box::new(source),
        })?;
        if !exp.spec.keep_checkpoints {
            remove_checkpoints(&dir)?;
        }
        let secs = tc.elapsed().as_secs_f64();
        budget.record(secs);
        let metric = eval
            .reports
            .last()
            .map(|(_, r)| {
                r.metrics
                    .iter()
                    .map(|(k, v)| format!("{k} {}", v.map_or("null".into(), |x| format!("{x:.4}"))))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        (opts.log)(&format!(
            "[{}/{}] {id}: {} steps, {:.3} s/step, loss {} -> {}, {secs:.1} s in all; {metric}",
            i + 1,
            all.len(),
            summary.steps,
            summary.mean_step_s,
            summary.first_loss.map_or("-".into(), |l| format!("{l:.4}")),
            summary.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
        ));
        outcome.ran.push(id);
    }
    Ok(outcome)
}

/// Deletes `ckpt-*` folders of a finished run (model + optimizer state: hundreds of MB each).
pub(crate) fn remove_checkpoints(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| ExperimentError::io(dir, "list", e))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir()
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ckpt-"))
        {
            std::fs::remove_dir_all(&p).map_err(|e| ExperimentError::io(&p, "remove", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(method: Method, rank: Option<usize>, seed: u64) -> Cell {
        Cell {
            method,
            rank,
            residual_ratio: (method == Method::Crosslore).then_some(0.012),
            seed,
            learning_rate: 1e-3,
        }
    }

    #[test]
    fn shards_partition_the_cells_by_id() {
        let cells: Vec<Cell> = [Method::Adamw, Method::Lora, Method::Crosslore]
            .into_iter()
            .flat_map(|m| (1..=5).map(move |s| cell(m, Some(16), s)))
            .collect();
        for n in [1, 2, 3, 8] {
            let mut counts = vec![0; n];
            for c in &cells {
                let s = shard_of(c, n);
                counts[s] += 1;
                // the same id (e.g. from another spec sharing the run folders) maps the same way
                let twin = Cell {
                    learning_rate: 5.0,
                    ..c.clone()
                };
                assert_eq!(shard_of(&twin, n), s);
            }
            // 15 cells over at most 3 shards: each shard gets work (a constant hash would not)
            if n <= 3 {
                assert!(counts.iter().all(|&c| c > 0), "n = {n}: {counts:?}");
            }
        }
        assert_eq!(
            cell(Method::Crosslore, Some(16), 2).id(),
            "crosslore-r16-rho1.2pct-s2"
        );
        assert_eq!(cell(Method::Adamw, None, 1).group(), "adamw");
        assert_eq!(trim_float(0.6000000001), "0.6");
        assert_eq!(trim_float(0.0), "0");
    }
}
