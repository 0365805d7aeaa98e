//! `metrics.jsonl`: one JSON object per logged optimizer step (issue 4 item 5): step, loss, lr,
//! grad norm (before clipping), clip coefficient, tokens and tokens/s, the time split
//! forward / backward / clip pass / optimizer / projection refresh / residual measurement, the
//! number of projector refreshes and the mean subspace residual `||G - P P^T G|| / ||G||` of the
//! projected parameters (GaLore / CrossLore), and the process's resident memory (current,
//! peak). A skipped step (non-finite loss or gradient) is logged with `skipped` saying why; its
//! non-finite numbers are written as JSON `null` and read back as NaN.

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
    #[serde(deserialize_with = "null_as_nan")]
    pub loss: f64,
    pub lr: f64,
    #[serde(deserialize_with = "null_as_nan")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Process resident memory after the step and its peak so far, in bytes.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

/// serde_json writes a non-finite `f64` as `null`; read it back as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
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
            skipped: r.skipped.clone(),
            rss_bytes: r.rss_bytes,
            peak_rss_bytes: r.peak_rss_bytes,
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

    /// Opens `path` for a run that starts at `start_step` (0 = fresh, else resumed from that
    /// checkpoint): lines of later steps (logged by an interrupted run after its checkpoint, and
    /// about to be logged again) and a torn last line (a run killed mid-write) are dropped first,
    /// by rewriting the file atomically, so the log reads as one uninterrupted run.
    pub fn open_at(path: &Path, start_step: usize) -> Result<Self> {
        if path.exists() {
            let text =
                std::fs::read_to_string(path).map_err(|e| TrainError::io(path, "read", e))?;
            let mut kept = String::new();
            for line in text.lines() {
                let keep = serde_json::from_str::<MetricLine>(line)
                    .is_ok_and(|m| start_step > 0 && m.step <= start_step);
                if keep {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
            if kept.len() != text.len() {
                crosslore_model::export::write_atomic(path, kept.as_bytes())?;
            }
        }
        Self::open(path)
    }

    /// Appends one line with a single write (a crash cannot interleave a partial line with a
    /// later one; at worst the last line is torn, which [`MetricsLog::open_at`] drops).
    pub fn write(&mut self, report: &StepReport) -> Result<()> {
        let mut line = serde_json::to_string(&MetricLine::from(report)).map_err(|e| {
            TrainError::ckpt(&self.path, format!("serialising a metrics line: {e}"))
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| TrainError::io(&self.path, "write", e))
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
