//! `metrics.jsonl`: one JSON object per logged optimizer step (issue 4 item 5): step, loss, lr,
//! grad norm (before clipping), clip coefficient, tokens and tokens/s, the time split
//! forward / backward / clip pass / optimizer / projection refresh / residual measurement, the
//! number of projector refreshes and the mean subspace residual `||G - P P^T G|| / ||G||` of the
//! projected parameters (GaLore / CrossLore).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::trainer::StepReport;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricLine {
    pub step: usize,
    pub epoch: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub clip_coef: f64,
    pub tokens: usize,
    pub target_tokens: usize,
    pub tokens_per_s: f64,
    pub forward_s: f64,
    pub backward_s: f64,
    pub clip_pass_s: f64,
    pub optimizer_s: f64,
    pub refresh_s: f64,
    pub residual_s: f64,
    pub step_s: f64,
    pub refreshed: usize,
    pub subspace_residual: Option<f64>,
}

impl From<&StepReport> for MetricLine {
    fn from(r: &StepReport) -> Self {
        let t = &r.timings;
        MetricLine {
            step: r.step,
            epoch: r.epoch,
            loss: r.loss,
            lr: r.lr,
            grad_norm: r.grad_norm,
            clip_coef: r.clip_coef,
            tokens: r.tokens,
            target_tokens: r.target_tokens,
            tokens_per_s: r.tokens_per_s,
            forward_s: t.forward_s,
            backward_s: t.backward_s,
            clip_pass_s: t.clip_pass_s,
            optimizer_s: t.optimizer_s,
            refresh_s: t.refresh_s,
            residual_s: t.residual_s,
            step_s: t.total_s,
            refreshed: r.refreshed,
            subspace_residual: r.subspace_residual,
        }
    }
}

/// Appends lines to a `metrics.jsonl` (appending, so a resumed run continues the same file).
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, "open", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn write(&mut self, report: &StepReport) -> Result<()> {
        let line = serde_json::to_string(&MetricLine::from(report)).map_err(|e| {
            TrainError::ckpt(&self.path, format!("serialising a metrics line: {e}"))
        })?;
        writeln!(self.file, "{line}").map_err(|e| TrainError::io(&self.path, "write", e))
    }

    /// Reads all lines of a `metrics.jsonl`.
    pub fn read(path: &Path) -> Result<Vec<MetricLine>> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, "read", e))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    TrainError::ckpt(path, format!("line {}: invalid metrics line: {e}", i + 1))
                })
            })
            .collect()
    }
}
