//! The `crosslore` subcommands, one module each, plus what they share: model loading
//! ([`model_source`]), metric scoring ([`metrics`]), task evaluation ([`task_eval`]) and progress
//! display ([`progress`]).

pub mod eval;
pub mod experiment;
pub mod finetune;
pub mod generate;
pub mod metrics;
pub mod model_source;
pub mod progress;
pub mod score;
pub mod task_eval;
