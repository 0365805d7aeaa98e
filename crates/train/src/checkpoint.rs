//! Checkpoints (issue 3 item 4): everything needed to continue a run bit-identically.
//!
//! A checkpoint is a folder `ckpt-<step>/` in the run folder:
//! - `trainable.safetensors`: the trainable tensors by name (full weights for adamw / galore /
//!   crosslore, adapter tensors for lora / dora), in their own dtype;
//! - `optimizer/`: the optimizer's own state files ([`crosslore_optim::ParamOptimizer::save`]);
//! - `trainer.json`: step, data position, the trainer's RNG state, schedule, and the config;
//! - `config.toml`: the resolved run configuration (for humans).
//!
//! Atomicity: [`crate::atomic::write_dir_atomic`] (`ckpt-<step>.tmp/`, fsynced, renamed; an
//! existing `ckpt-<step>/` goes through `ckpt-<step>.old/`). A crash leaves at most a `.tmp`
//! folder, which is ignored and removed by the next save, or, between the two renames of a
//! replacement, a `.old` folder, which [`list_checkpoints`] still finds. Only the last `keep`
//! checkpoints are kept. `tests/crash_safety.rs` kills runs with SIGKILL at random moments.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use crosslore_data::DataPosition;
use crosslore_linalg::Rng;
use serde::{Deserialize, Serialize};

use crate::atomic::write_dir_atomic;
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::optimizer::MethodOptimizer;
use crate::schedule::Schedule;
use crate::trainer::Trainer;

/// Version of the checkpoint layout.
pub const CHECKPOINT_VERSION: u32 = 1;
const TRAINABLE_FILE: &str = "trainable.safetensors";
const TRAINER_FILE: &str = "trainer.json";
const OPTIM_DIR: &str = "optimizer";

/// The JSON part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub version: u32,
    /// Optimizer steps completed.
    pub step: usize,
    pub data_position: DataPosition,
    /// The trainer's RNG (dropout seeds).
    pub rng: Rng,
    /// The schedule the run had (for information; resuming uses the current config's).
    pub schedule: Schedule,
    pub grads_peak_bytes: usize,
    /// Skipped (non-finite) steps so far and the current run of consecutive ones.
    #[serde(default)]
    pub skipped_steps: usize,
    #[serde(default)]
    pub consecutive_skipped: usize,
    pub config: TrainConfig,
}

/// `ckpt-<step>` folders of `run_dir`, sorted by step.
pub fn list_checkpoints(run_dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(run_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(TrainError::io(run_dir, "list checkpoints", e)),
    };
    // A complete `ckpt-<n>.old` counts only when the save that replaced it never finished.
    let mut old = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TrainError::io(run_dir, "list checkpoints", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("ckpt-") else {
            continue;
        };
        let (num, is_old) = match rest.strip_suffix(".old") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        if let Ok(n) = num.parse::<usize>() {
            if entry.path().join(TRAINER_FILE).is_file() {
                if is_old {
                    old.push((n, entry.path()));
                } else {
                    out.push((n, entry.path()));
                }
            }
        }
    }
    for (n, p) in old {
        if !out.iter().any(|(m, _)| *m == n) {
            out.push((n, p));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint of `run_dir`, if any.
pub fn latest_checkpoint(run_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(run_dir)?.pop().map(|(_, p)| p))
}

fn fsync(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(path, "fsync", e))
}

impl Trainer {
    /// Writes `ckpt-<step>/` into `run_dir` atomically and keeps the newest `keep` checkpoints
    /// (`keep = 0` keeps all). Returns the folder.
    pub fn save_checkpoint(&self, run_dir: &Path, keep: usize) -> Result<PathBuf> {
        let final_dir = run_dir.join(format!("ckpt-{}", self.step));
        write_dir_atomic(&final_dir, |tmp| self.write_checkpoint_files(tmp))?;
        // Leftovers of a killed run (one writer per run): unfinished writes of other steps
        // (`.tmp`) and unfinished removals (`.del`).
        if let Ok(entries) = fs::read_dir(run_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("ckpt-") && (name.ends_with(".tmp") || name.ends_with(".del")) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        if keep > 0 {
            let all = list_checkpoints(run_dir)?;
            let n = all.len();
            for (_, old) in all.into_iter().take(n.saturating_sub(keep)) {
                // Renamed out of the listing first (atomic), then removed: a kill during the
                // removal left a half-deleted `ckpt-<n>` that still held its trainer.json, which
                // the listing took for a checkpoint and a resume failed on (the crash-safety
                // test's SIGKILLs hit it on 2026-11-29).
                let mut doomed = old.clone().into_os_string();
                doomed.push(".del");
                let doomed = PathBuf::from(doomed);
                fs::rename(&old, &doomed).map_err(|e| TrainError::io(&old, "retire old", e))?;
                fs::remove_dir_all(&doomed)
                    .map_err(|e| TrainError::io(&doomed, "remove old", e))?;
            }
        }
        Ok(final_dir)
    }

    /// The files of a checkpoint, into the (temporary) folder `tmp`.
    fn write_checkpoint_files(&self, tmp: &Path) -> Result<()> {
        let tensors: HashMap<String, Tensor> = self
            .params
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        let tpath = tmp.join(TRAINABLE_FILE);
        candle_core::safetensors::save(&tensors, &tpath)?;
        fsync(&tpath)?;

        self.opt.save(&tmp.join(OPTIM_DIR))?;

        let state = TrainerState {
            version: CHECKPOINT_VERSION,
            step: self.step,
            data_position: self.data.position(),
            rng: self.rng.clone(),
            schedule: self.schedule.clone(),
            grads_peak_bytes: self.grads_peak,
            skipped_steps: self.bad_steps,
            consecutive_skipped: self.consecutive_bad,
            config: self.cfg.clone(),
        };
        let json = serde_json::to_vec_pretty(&state)
            .map_err(|e| TrainError::ckpt(tmp, format!("serialising {TRAINER_FILE}: {e}")))?;
        let jpath = tmp.join(TRAINER_FILE);
        fs::write(&jpath, json).map_err(|e| TrainError::io(&jpath, "write", e))?;
        fsync(&jpath)?;
        let toml = toml::to_string(&self.cfg)
            .map_err(|e| TrainError::ckpt(tmp, format!("serialising config.toml: {e}")))?;
        let cpath = tmp.join("config.toml");
        fs::write(&cpath, toml).map_err(|e| TrainError::io(&cpath, "write", e))?;
        fsync(&cpath)
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] into this trainer (built by
    /// [`Trainer::new`] from the same config, model and data): trainable tensors, optimizer
    /// state, step, data position, RNG. The checkpoint's method must be this run's. The schedule
    /// stays this trainer's (from its config): resuming with a larger `max_steps` extends the
    /// run; with the same config the continuation is bit-identical.
    pub fn resume_from(&mut self, ckpt: &Path) -> Result<()> {
        let jpath = ckpt.join(TRAINER_FILE);
        let bytes = fs::read(&jpath).map_err(|e| TrainError::io(&jpath, "read", e))?;
        let state: TrainerState = serde_json::from_slice(&bytes)
            .map_err(|e| TrainError::ckpt(&jpath, format!("invalid checkpoint state: {e}")))?;
        if state.version != CHECKPOINT_VERSION {
            return Err(TrainError::ckpt(
                &jpath,
                format!("version {} (expected {CHECKPOINT_VERSION})", state.version),
            ));
        }
        if state.config.method != self.cfg.method {
            return Err(TrainError::ckpt(
                &jpath,
                format!(
                    "checkpoint of method {:?}, this run is {:?}",
                    state.config.method, self.cfg.method
                ),
            ));
        }
        let dev = self.model.device().clone();
        load_trainable(ckpt, &self.params)?;
        self.opt = MethodOptimizer::load(self.cfg.method, &ckpt.join(OPTIM_DIR), &dev)?;
        self.data.seek(state.data_position)?;
        self.step = state.step;
        self.rng = state.rng;
        self.grads_peak = state.grads_peak_bytes;
        self.bad_steps = state.skipped_steps;
        self.consecutive_bad = state.consecutive_skipped;
        Ok(())
    }
}

/// Sets `params` (trainable tensors by name, e.g. [`crosslore_model::Llama::params`]) from the
/// checkpoint folder `ckpt`: every name must be present with the same shape and dtype, and the
/// file must hold no other tensor. Used by resuming, and to evaluate a checkpoint.
pub fn load_trainable(ckpt: &Path, params: &[(String, Var)]) -> Result<()> {
    let tpath = ckpt.join(TRAINABLE_FILE);
    let dev = params
        .first()
        .map(|(_, v)| v.device().clone())
        .unwrap_or(Device::Cpu);
    let mut tensors = candle_core::safetensors::load(&tpath, &dev)
        .map_err(|e| TrainError::ckpt(&tpath, format!("cannot load: {e}")))?;
    for (name, var) in params {
        let t = tensors
            .remove(name)
            .ok_or_else(|| TrainError::ckpt(&tpath, format!("tensor `{name}` missing")))?;
        if t.dims() != var.dims() || t.dtype() != var.dtype() {
            return Err(TrainError::ckpt(
                &tpath,
                format!(
                    "tensor `{name}`: {:?} {:?}, expected {:?} {:?}",
                    t.dtype(),
                    t.dims(),
                    var.dtype(),
                    var.dims()
                ),
            ));
        }
        var.set(&t)?;
    }
    if let Some(extra) = tensors.keys().next() {
        return Err(TrainError::ckpt(
            &tpath,
            format!("tensor `{extra}` is not a trainable parameter of this model"),
        ));
    }
    Ok(())
}
