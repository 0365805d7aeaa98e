//! Task evaluation: prompts of a task's examples rendered with the chat template, generated
//! (KV-cached, batched, greedy), answers extracted and corpus metrics computed; a table for the
//! screen and a JSON report. Used by `crosslore eval`, by `crosslore finetune` before and after
//! training, by experiment grids ([`GenerationEvaluator`]) and by `crosslore-bench experiment`.
//!
//! Default metrics by task: accuracy where every example has a gold answer (MathQA: option
//! letter, or the option's value; GSM8k/MAWPS: final number), BLEU, NIST, METEOR, ROUGE and
//! CIDEr against all references of the meaning representation for E2E NLG, ROUGE for XSum and
//! CNN/DailyMail, BLEU and ROUGE otherwise. Each metric is computed on its own: one the reference
//! implementation leaves undefined (NIST on degenerate output, ...) is `null` with its error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Instant;

use crosslore_data::{Answer, Example, Format, ShippedTask, Template};
use crosslore_eval::accuracy::{choice_from_value, numbers_equal};
use crosslore_eval::{answers_match, extract_choice, final_number, Metric, ScoreOptions};
use crosslore_model::generate::{generate, GenerateConfig};
use crosslore_model::Llama;
use crosslore_train::{EvalPhase, Evaluator, TrainConfig, TrainError};
use serde::Serialize;
use tokenizers::Tokenizer;

use crate::error::{ExperimentError, Result};
use crate::scores::score_each;

/// How a task is evaluated.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    pub template: Template,
    /// `None`: the task's defaults ([`default_metrics`]).
    pub metrics: Option<Vec<Metric>>,
    pub max_new_tokens: usize,
    /// Prompts generated together (sorted by length to limit padding).
    pub batch_size: usize,
    /// Generation ends at these ids (the template's end-of-turn marker is added).
    pub eos_ids: Vec<u32>,
}

/// Progress of an evaluation: label, examples done, examples in all, generated tokens per second.
pub type ProgressFn<'a> = &'a mut dyn FnMut(&str, usize, usize, f64);

/// An owned [`ProgressFn`].
pub type BoxedProgress<'a> = Box<dyn FnMut(&str, usize, usize, f64) + 'a>;

/// One evaluated example.
#[derive(Debug, Clone, Serialize)]
pub struct EvalOutput {
    pub id: Option<String>,
    pub output: String,
    pub references: Vec<String>,
    /// Whether the extracted answer is right (tasks with gold answers).
    pub correct: Option<bool>,
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub task: String,
    pub model: String,
    pub template: String,
    pub examples: usize,
    /// Metric key -> value (`null` where the metric failed).
    pub metrics: BTreeMap<String, Option<f64>>,
    pub metric_errors: BTreeMap<String, String>,
    pub generated_tokens: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub outputs: Vec<EvalOutput>,
}

/// The metrics of a task when none are asked for (module docs).
pub fn default_metrics(format: Option<Format>, examples: &[Example]) -> Vec<Metric> {
    if !examples.is_empty() && examples.iter().all(|e| e.answer.is_some()) {
        return vec![Metric::Accuracy];
    }
    match format {
        Some(Format::E2eNlg | Format::E2eCsv) => vec![
            Metric::Bleu,
            Metric::Nist,
            Metric::Meteor,
            Metric::Rouge,
            Metric::Cider,
        ],
        Some(Format::Xsum | Format::CnnDm) => vec![Metric::Rouge],
        _ => vec![Metric::Bleu, Metric::Rouge],
    }
}

/// Whether `output` gives the example's gold answer (`None`: the example has none).
pub fn answer_correct(example: &Example, output: &str) -> Option<bool> {
    Some(match example.answer.as_ref()? {
        Answer::Number(gold) => final_number(output).is_some_and(|p| numbers_equal(p, *gold)),
        Answer::Choice { letter, option } => match extract_choice(output) {
            Some(c) => c == letter.to_ascii_lowercase(),
            // no letter: right if the text states the gold option's value
            None => choice_from_value(output, std::slice::from_ref(option)).is_some(),
        },
    })
}

/// `ids` plus the end-of-turn markers `tok` knows, sorted, without duplicates.
pub fn end_markers(tok: &Tokenizer, mut ids: Vec<u32>) -> Vec<u32> {
    for marker in ["<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>"] {
        if let Some(id) = tok.token_to_id(marker) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The EOS ids of `model`'s config plus the end markers of `tok` ([`end_markers`]).
pub fn eos_ids(model: &Llama, tok: &Tokenizer) -> Vec<u32> {
    let ids = model
        .config
        .eos_token_id
        .as_ref()
        .map(|e| e.ids())
        .unwrap_or_default();
    end_markers(tok, ids)
}

/// Generate for every example and score (module docs). `progress` is called after every batch.
pub fn evaluate(
    model: &Llama,
    tokenizer: &Tokenizer,
    examples: &[Example],
    format: Option<Format>,
    settings: &EvalSettings,
    labels: (&str, &str),
    mut progress: Option<ProgressFn<'_>>,
) -> Result<EvalReport> {
    let (task, model_name) = labels;
    let err = |msg: String| ExperimentError::Eval(msg);
    if examples.is_empty() {
        return Err(err(format!("task {task}: no example to evaluate")));
    }
    let mut eos = settings.eos_ids.clone();
    if let Some(id) = settings
        .template
        .end_of_turn()
        .and_then(|m| tokenizer.token_to_id(m))
    {
        eos.push(id);
    }
    let prompts = examples
        .iter()
        .map(|ex| {
            let text = settings.template.render_prompt(&ex.prompt);
            tokenizer
                .encode(text.as_str(), false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| err(format!("tokenizing a prompt of {task}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    // longest first: similar lengths share a batch, and the ETA starts pessimistic
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
    let cfg = GenerateConfig {
        max_new_tokens: settings.max_new_tokens,
        eos_ids: eos,
        batch_size: 0,
        ..GenerateConfig::default()
    };
    let mut outputs: Vec<Option<(String, usize)>> = vec![None; prompts.len()];
    let t0 = Instant::now();
    let (mut done, mut tokens) = (0, 0);
    let label = format!("eval {task}");
    for chunk in order.chunks(settings.batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let gens = generate(model, &batch, &cfg, Some(tokenizer))
            .map_err(|e| err(format!("generating for {task}: {e}")))?;
        for (&i, g) in chunk.iter().zip(gens) {
            tokens += g.tokens.len();
            let text = g.text.unwrap_or_default().trim().to_string();
            outputs[i] = Some((text, g.tokens.len()));
        }
        done += chunk.len();
        if let Some(p) = progress.as_deref_mut() {
            let rate = tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            p(&label, done, prompts.len(), rate);
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let hyps: Vec<String> = outputs
        .into_iter()
        .map(|o| o.map(|(t, _)| t).unwrap_or_default())
        .collect();
    let metrics = settings
        .metrics
        .clone()
        .unwrap_or_else(|| default_metrics(format, examples));
    let refs: Vec<Vec<String>> = examples.iter().map(|e| e.references.clone()).collect();
    let corpus: Vec<Metric> = metrics
        .iter()
        .copied()
        .filter(|&m| m != Metric::Accuracy)
        .collect();
    let mut scores = score_each(&corpus, &hyps, &refs, &ScoreOptions::default());
    let correct: Vec<Option<bool>> = examples
        .iter()
        .zip(&hyps)
        .map(|(e, h)| answer_correct(e, h))
        .collect();
    if metrics.contains(&Metric::Accuracy) {
        let right = examples
            .iter()
            .zip(&hyps)
            .zip(&correct)
            .filter(|((e, h), c)| match c {
                Some(c) => *c,
                None => e.references.first().is_some_and(|r| answers_match(h, r)),
            })
            .count();
        scores.values.insert(
            "accuracy".into(),
            Some(right as f64 / examples.len() as f64),
        );
    }
    Ok(EvalReport {
        task: task.into(),
        model: model_name.into(),
        template: settings.template.name().into(),
        examples: examples.len(),
        metrics: scores.values,
        metric_errors: scores.errors,
        generated_tokens: tokens,
        seconds,
        tokens_per_second: tokens as f64 / seconds.max(1e-9),
        outputs: examples
            .iter()
            .zip(hyps)
            .zip(correct)
            .map(|((e, output), correct)| EvalOutput {
                id: e.id.clone(),
                output,
                references: e.references.clone(),
                correct,
            })
            .collect(),
    })
}

fn value(v: Option<f64>) -> String {
    v.map_or("null".into(), |x| format!("{x:.4}"))
}

impl EvalReport {
    /// The table shown on screen.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} ({} examples) | model {} | template {} | {} tokens in {:.1} s ({:.1} tokens/s)",
            self.task,
            self.examples,
            self.model,
            self.template,
            self.generated_tokens,
            self.seconds,
            self.tokens_per_second
        );
        let _ = writeln!(s, "  {:<10} {:>10}", "metric", "value");
        for (k, v) in &self.metrics {
            let _ = writeln!(s, "  {k:<10} {:>10}", value(*v));
        }
        for (k, e) in &self.metric_errors {
            let _ = writeln!(s, "  ({k}: {e})");
        }
        s
    }
}

/// Before/after table of a fine-tuning run.
pub fn compare_table(task: &str, before: &EvalReport, after: &EvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{task} ({} examples): before -> after fine-tuning",
        after.examples
    );
    let _ = writeln!(s, "  {:<10} {:>10} {:>10}", "metric", "before", "after");
    let keys: std::collections::BTreeSet<&String> =
        before.metrics.keys().chain(after.metrics.keys()).collect();
    for k in keys {
        let b = before.metrics.get(k).copied().flatten();
        let a = after.metrics.get(k).copied().flatten();
        let _ = writeln!(s, "  {k:<10} {:>10} {:>10}", value(b), value(a));
    }
    s
}

/// The format a task string implies: a shipped task's, else `format` (a file's).
pub fn task_format(task: &str, format: Option<Format>) -> Option<Format> {
    ShippedTask::from_str(task)
        .ok()
        .map(ShippedTask::format)
        .or(format)
}

/// One phase of a run's generation-based evaluation with `cfg`'s template, task format and
/// `eval_max_new_tokens`: the report (the JSON stored in the run's `summary.json` is its
/// serialisation).
pub fn evaluate_run_phase(
    phase: EvalPhase,
    model: &Llama,
    tokenizer: &Tokenizer,
    test: &[Example],
    cfg: &TrainConfig,
    batch_size: usize,
    progress: Option<ProgressFn<'_>>,
) -> crosslore_train::Result<EvalReport> {
    let invalid = |what: &'static str, msg: String| TrainError::Invalid { what, msg };
    let template =
        Template::from_str(&cfg.template).map_err(|e| invalid("template", e.to_string()))?;
    let file_format = Format::from_str(&cfg.data_format).ok();
    let settings = EvalSettings {
        template,
        metrics: None,
        max_new_tokens: cfg.eval_max_new_tokens,
        batch_size,
        eos_ids: eos_ids(model, tokenizer),
    };
    let label = match phase {
        EvalPhase::Before => "before training",
        EvalPhase::After => "after training",
    };
    let task = format!("{} [{label}]", cfg.task);
    evaluate(
        model,
        tokenizer,
        test,
        task_format(&cfg.task, file_format),
        &settings,
        (&task, &cfg.model),
        progress,
    )
    .map_err(|e| invalid("evaluation", e.to_string()))
}

/// The generation-based evaluation of a run (before and/or after training), for
/// [`crosslore_train::run_finetune_with`]; keeps the reports. A skipped phase returns JSON
/// `null`.
pub struct GenerationEvaluator<'a> {
    pub batch_size: usize,
    /// Evaluate before training too (the same for every cell of a grid: usually once is enough).
    pub before: bool,
    /// Print each report's table on stderr.
    pub print_tables: bool,
    pub progress: Option<BoxedProgress<'a>>,
    pub reports: Vec<(EvalPhase, EvalReport)>,
}

impl<'a> GenerationEvaluator<'a> {
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            before: false,
            print_tables: true,
            progress: None,
            reports: Vec::new(),
        }
    }
}

impl Evaluator for GenerationEvaluator<'_> {
    fn evaluate(
        &mut self,
        phase: EvalPhase,
        model: &Llama,
        tokenizer: &Tokenizer,
        test: &[Example],
        cfg: &TrainConfig,
    ) -> crosslore_train::Result<serde_json::Value> {
        if phase == EvalPhase::Before && !self.before {
            return Ok(serde_json::Value::Null);
        }
        let report = evaluate_run_phase(
            phase,
            model,
            tokenizer,
            test,
            cfg,
            self.batch_size,
            // not `as_deref_mut()`: the explicit reborrow shortens the trait object's lifetime
            #[allow(clippy::option_as_ref_deref)]
            self.progress
                .as_mut()
                .map(|f| -> ProgressFn<'_> { &mut **f }),
        )?;
        if self.print_tables {
            eprint!("{}", report.table());
        }
        let json = serde_json::to_value(&report).map_err(|e| TrainError::Invalid {
            what: "evaluation",
            msg: e.to_string(),
        })?;
        self.reports.push((phase, report));
        Ok(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scores::metric_keys;
    use crosslore_data::Prompt;

    fn ex(answer: Option<Answer>) -> Example {
        Example::new(Prompt::user("q"), "t".into(), answer)
    }

    #[test]
    fn answers_are_extracted_per_kind() {
        let choice = ex(Some(Answer::Choice {
            letter: 'b',
            option: "270".into(),
        }));
        assert_eq!(answer_correct(&choice, "The answer is b) 270"), Some(true));
        assert_eq!(answer_correct(&choice, "(c)"), Some(false));
        assert_eq!(answer_correct(&choice, "It has 270 pages"), Some(true));
        assert_eq!(answer_correct(&choice, "It has 271 pages"), Some(false));
        let number = ex(Some(Answer::Number(18.0)));
        assert_eq!(
            answer_correct(&number, "so 9 * 2 = 18\n#### 18"),
            Some(true)
        );
        assert_eq!(answer_correct(&number, "#### 17"), Some(false));
        assert_eq!(answer_correct(&ex(None), "x"), None);
    }

    #[test]
    fn default_metrics_by_task() {
        let with = [ex(Some(Answer::Number(1.0)))];
        let without = [ex(None)];
        assert_eq!(default_metrics(None, &with), vec![Metric::Accuracy]);
        assert_eq!(
            default_metrics(Some(Format::E2eNlg), &without).len(),
            5,
            "E2E: bleu, nist, meteor, rouge, cider"
        );
        assert_eq!(
            default_metrics(Some(Format::Xsum), &without),
            vec![Metric::Rouge]
        );
        assert_eq!(
            default_metrics(Some(Format::Alpaca), &without),
            vec![Metric::Bleu, Metric::Rouge]
        );
        assert_eq!(metric_keys(Metric::Rouge).len(), 4);
    }
}
