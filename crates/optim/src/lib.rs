//! crosslore-optim: AdamW, GaLore and CrossLore optimizers with exact state save/load
//! (DESIGN.md §1, §2).

pub mod cross_head;
pub mod error;
pub mod residual;

pub use error::{OptimError, Result};
