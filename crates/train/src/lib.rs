//! crosslore-train: the training loop (per-block forward/backward, layerwise updates, gradient
//! accumulation), run configuration, learning-rate schedules, checkpoints and memory accounting.

pub mod config;
pub mod schedule;

pub use config::{ConfigError, Method, TrainConfig};
pub use schedule::{Schedule, SchedulerKind};
