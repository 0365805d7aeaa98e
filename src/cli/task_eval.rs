//! Task evaluation for the CLI: the generation-based evaluator lives in the library
//! ([`crosslore_experiment::task_eval`], shared with experiment grids and `crosslore-bench`); this
//! module adds the progress display. Used by `crosslore eval` and, through
//! [`crosslore_train::Evaluator`], by `crosslore finetune` before and after training.

use anyhow::Result;
use crosslore_data::{Example, Format};
use crosslore_experiment::task_eval as lib;
use crosslore_model::Llama;
use crosslore_train::{EvalPhase, Evaluator, TrainConfig, TrainError};
use tokenizers::Tokenizer;

pub use crosslore_experiment::task_eval::{compare_table, task_format, EvalReport, EvalSettings};

use super::progress::Progress;

/// A progress display fed by the library's per-batch callback (created at the first batch).
fn progress_display() -> impl FnMut(&str, usize, usize, f64) {
    let mut bar: Option<Progress> = None;
    move |label, done, total, rate| {
        bar.get_or_insert_with(|| Progress::new(label, total))
            .update(done, &format!("{rate:.1} tokens/s"));
    }
}

/// Generate for every example and score ([`lib::evaluate`]), with progress when asked.
pub fn evaluate(
    model: &Llama,
    tokenizer: &Tokenizer,
    examples: &[Example],
    format: Option<Format>,
    settings: &EvalSettings,
    progress: bool,
    labels: (&str, &str),
) -> Result<EvalReport> {
    let mut show = progress_display();
    let progress: Option<lib::ProgressFn> = if progress { Some(&mut show) } else { None };
    Ok(lib::evaluate(
        model, tokenizer, examples, format, settings, labels, progress,
    )?)
}

/// The generation-based evaluation of `crosslore finetune` (before and after training); keeps
/// the reports for the final comparison table.
pub struct RunEvaluator {
    pub batch_size: usize,
    pub progress: bool,
    pub reports: Vec<(EvalPhase, EvalReport)>,
}

impl Evaluator for RunEvaluator {
    fn evaluate(
        &mut self,
        phase: EvalPhase,
        model: &Llama,
        tokenizer: &Tokenizer,
        test: &[Example],
        cfg: &TrainConfig,
    ) -> crosslore_train::Result<serde_json::Value> {
        let mut show = progress_display();
        let progress: Option<lib::ProgressFn> = if self.progress { Some(&mut show) } else { None };
        let report = lib::evaluate_run_phase(
            phase,
            model,
            tokenizer,
            test,
            cfg,
            self.batch_size,
            progress,
        )?;
        eprint!("{}", report.table());
        let json = serde_json::to_value(&report).map_err(|e| TrainError::Invalid {
            what: "evaluation",
            msg: e.to_string(),
        })?;
        self.reports.push((phase, report));
        Ok(json)
    }
}
