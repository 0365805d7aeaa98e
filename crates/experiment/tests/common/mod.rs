//! The tiny random LLaMA of crosslore-train's tests, saved as a Hugging Face folder with a
//! word-level tokenizer over the E2E words, so that whole runs take well under a second.
#![allow(dead_code)]

#[path = "../../../train/tests/common/mod.rs"]
mod train_common;

use std::path::Path;

pub use train_common::write_tiny_folder;

/// `[base]` settings for the tiny model (TOML lines).
pub fn tiny_base(model: &Path) -> String {
    format!(
        "model = \"{}\"\nmax_steps = 2\nbatch_size = 2\nmax_len = 48\nupdate_interval = 2\n\
         scale = 1.0\nlora_alpha = 8.0\noversample = 2\npower_iters = 1\nmax_grad_norm = 0.0\n\
         warmup_steps = 1\n",
        model.display()
    )
}
