//! crosslore-train: the training loop (per-block forward/backward, layerwise updates, gradient
//! accumulation, clipping), run configuration, learning-rate schedules, checkpoints, metrics
//! log, memory accounting, export, and [`run::run_finetune`], the job the CLI runs.
//!
//! Module map: [`trainer`] (step, whole-graph mode), [`layerwise`] (segmented backward),
//! [`grads`] (accumulation buffers, global norm, clipping), [`optimizer`] (method -> optimizer),
//! [`checkpoint`], [`metrics`], [`memory`], [`export`], [`eval`] (evaluation hook + held-out
//! loss), [`run`].

pub mod atomic;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod eval;
pub mod export;
mod fused_sweep;
pub mod grads;
pub mod layerwise;
pub mod memory;
pub mod metrics;
pub mod optimizer;
pub mod profile;
pub mod run;
pub mod schedule;
pub mod trainer;

pub use config::{BlockBackward, ConfigError, Method, TrainConfig};
pub use error::{Result, TrainError};
pub use eval::{EvalPhase, Evaluator};
pub use memory::MemoryReport;
pub use metrics::{MetricLine, MetricsLog};
pub use optimizer::MethodOptimizer;
pub use profile::{PhaseTime, Profiler};
pub use run::{run_finetune, run_finetune_with, RunOptions, RunSummary};
pub use schedule::{Schedule, SchedulerKind};
pub use trainer::{StepReport, Timings, Trainer};
