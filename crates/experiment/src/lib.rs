//! crosslore-experiment: experiments that reproduce the paper's comparison on a real model.
//!
//! - [`spec`]: the TOML experiment spec (grid, projection quality, learning-rate sweep);
//! - [`grid`]: methods x ranks x residual ratios x seeds, one run folder per cell, resumable;
//! - [`summary`] + [`stats`]: per-group mean and spread over seeds, `summary.json` / `.md`;
//! - [`plots`]: the PNG plots of a summary ([`plot`] draws them);
//! - [`projection`]: subspace residual of exact SVD, RSI and cross-head projection on real
//!   gradients over training steps (paper Fig. 2b);
//! - [`sweep`]: learning rates per method on a validation split carved from the training split;
//! - [`task_eval`] + [`scores`]: generation-based task evaluation (shared with the CLI);
//! - [`run_experiment`]: the whole command (`crosslore experiment`, `crosslore-bench experiment`).

pub mod command;
pub mod error;
pub mod grid;
pub mod plot;
pub mod plots;
pub mod projection;
pub mod scores;
pub mod spec;
pub mod stats;
pub mod summary;
pub mod sweep;
pub mod task_eval;

pub use command::{run_experiment, CommandOptions};
pub use error::{ExperimentError, Result};
pub use spec::{Experiment, ExperimentSpec, Kind};
pub use stats::Stat;
pub use summary::ExperimentSummary;
