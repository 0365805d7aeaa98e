//! The experiment spec: one TOML file per experiment (examples under `experiments/`).
//!
//! ```toml
//! name = "e2e_nlg"                 # results folder name (letters, digits, '-', '_', '.')
//! kind = "grid"                    # grid (default) | projection | lr_sweep
//! task = "e2e_nlg"                 # shipped task or data file (with base.data_format)
//! methods = ["adamw", "lora", "dora", "galore", "crosslore"]
//! ranks = [16, 64]                 # adamw has no rank: one cell per seed
//! seeds = [1, 2, 3]
//! residual_ratios = [0.012]        # crosslore only (fractions: 0.012 = 1.2 %); default: base's
//! metric = "bleu"                  # primary metric (default: bleu, or accuracy for answer tasks)
//! learning_rates_from = "runs/experiments/lr-sweep/sweep.json"  # a sweep's chosen rates
//! keep_checkpoints = false         # delete each run's checkpoints once it finished
//! runs_dir = "runs/experiments/e2e-runs"  # run folders (default <out>/runs); shared = reused
//!
//! [learning_rates]                 # per method; default base.learning_rate
//! adamw = 2e-5
//! lora = 2e-4
//!
//! [eval]                           # generation-based evaluation after training
//! samples = 43                     # test examples (0: none)
//! batch_size = 16
//! max_new_tokens = 48
//! before = false                   # also evaluate before training (first cell only)
//!
//! [base]                           # any `crosslore finetune` config key except the grid's own
//! max_steps = 100                  # (task, method, rank, seed, learning_rate, residual_ratio,
//! device = "cuda"                  #  output_dir, eval_samples, eval_max_new_tokens)
//!
//! [sweep]                          # kind = "lr_sweep" only
//! learning_rates = { lora = [1e-4, 3e-4, 1e-3], galore = [...] }
//! validation_fraction = 0.15       # of the training split (by meaning representation for E2E)
//! validation_samples = 32          # validation examples scored after each run
//! rank = 16
//!
//! [projection]                     # kind = "projection" only (paper Fig. 2b)
//! rank = 16
//! steps = 40                       # training steps (base.method drives the training)
//! every = 10                       # measure at step 0 and every N steps
//! layers = [0, 14, 29]
//! power_iters = [1, 2]             # RSI variants
//! ```
//!
//! Unknown keys are errors (the `[base]` table through [`TrainConfig`]'s own check, with a "did
//! you mean"), and every value is validated with an error naming the file and the key.

use std::collections::BTreeMap;
use std::path::Path;

use crosslore_train::{Method, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::error::{ExperimentError, Result};

/// What an experiment does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// methods x ranks x residual ratios x seeds on one task.
    #[default]
    Grid,
    /// Subspace residual of exact SVD, RSI and cross-head projection on real gradients.
    Projection,
    /// Learning-rate sweep per method on a validation split carved from the training split.
    LrSweep,
}

/// Generation-based evaluation of each run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSpec {
    pub samples: usize,
    pub batch_size: usize,
    pub max_new_tokens: usize,
    pub before: bool,
}

impl Default for EvalSpec {
    fn default() -> Self {
        Self {
            samples: 16,
            batch_size: 16,
            max_new_tokens: 48,
            before: false,
        }
    }
}

/// How the validation split is scored in a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SelectBy {
    /// Lowest validation token loss (teacher forcing; cheap and low-noise).
    #[default]
    Loss,
    /// Highest primary metric on generated validation outputs.
    Metric,
}

/// `[sweep]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    pub learning_rates: BTreeMap<String, Vec<f64>>,
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
    #[serde(default = "default_validation_samples")]
    pub validation_samples: usize,
    #[serde(default = "default_rank")]
    pub rank: usize,
    #[serde(default)]
    pub select_by: SelectBy,
}

fn default_validation_fraction() -> f64 {
    0.15
}
fn default_validation_samples() -> usize {
    32
}
fn default_rank() -> usize {
    16
}

/// `[projection]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionSpec {
    #[serde(default = "default_rank")]
    pub rank: usize,
    pub steps: usize,
    pub every: usize,
    pub layers: Vec<usize>,
    #[serde(default = "default_power_iters")]
    pub power_iters: Vec<usize>,
    #[serde(default = "default_oversample")]
    pub oversample: usize,
}

fn default_power_iters() -> Vec<usize> {
    vec![1, 2]
}
fn default_oversample() -> usize {
    8
}

/// An experiment spec (module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub name: String,
    #[serde(default)]
    pub kind: Kind,
    pub task: String,
    #[serde(default)]
    pub methods: Vec<Method>,
    #[serde(default)]
    pub ranks: Vec<usize>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub residual_ratios: Vec<f64>,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub keep_checkpoints: bool,
    /// Folder of the run folders (default `<out>/runs`). Specs that share it reuse each other's
    /// finished cells when the cell's configuration is identical (e.g. the residual ablation
    /// and the main grid at ratio 1.2 %).
    #[serde(default)]
    pub runs_dir: Option<std::path::PathBuf>,
    #[serde(default)]
    pub learning_rates: BTreeMap<String, f64>,
    /// A sweep's `sweep.json`: its chosen learning rates fill in the methods that
    /// `[learning_rates]` does not name.
    #[serde(default)]
    pub learning_rates_from: Option<std::path::PathBuf>,
    #[serde(default)]
    pub eval: EvalSpec,
    #[serde(default)]
    pub base: toml::Table,
    #[serde(default)]
    pub sweep: Option<SweepSpec>,
    #[serde(default)]
    pub projection: Option<ProjectionSpec>,
}

fn default_seeds() -> Vec<u64> {
    vec![42]
}

/// Keys of `[base]` that the grid sets itself.
const GRID_KEYS: [(&str, &str); 9] = [
    ("task", "set `task` at the top level"),
    ("method", "list methods in `methods`"),
    ("rank", "list ranks in `ranks`"),
    ("seed", "list seeds in `seeds`"),
    ("learning_rate", "set it per method in [learning_rates]"),
    ("residual_ratio", "list ratios in `residual_ratios`"),
    (
        "output_dir",
        "each cell gets its own folder under the output folder",
    ),
    ("eval_samples", "set [eval] samples"),
    ("eval_max_new_tokens", "set [eval] max_new_tokens"),
];

/// A parsed and validated spec with its resolved base configuration.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub spec: ExperimentSpec,
    /// The chosen learning rates of `learning_rates_from` (method name -> rate).
    pub swept: BTreeMap<String, f64>,
    /// `[base]` over the defaults, with the task and evaluation settings applied.
    pub base: TrainConfig,
    /// The file it came from (for messages).
    pub file: String,
}

impl Experiment {
    /// Reads and validates a spec file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ExperimentError::io(path, "read", e))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates a spec; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self> {
        let spec: ExperimentSpec = toml::from_str(text).map_err(|e| ExperimentError::Spec {
            file: file.into(),
            msg: e.to_string().trim_end().to_string(),
        })?;
        let bad = |key: &str, msg: String| ExperimentError::BadValue {
            file: file.into(),
            key: key.into(),
            msg,
        };
        for (key, hint) in GRID_KEYS {
            if spec.base.contains_key(key) {
                return Err(bad(
                    &format!("base.{key}"),
                    format!("is set by the experiment: {hint}"),
                ));
            }
        }
        let base_text = toml::to_string(&spec.base).map_err(|e| bad("base", e.to_string()))?;
        let mut base = TrainConfig::from_toml_str(&base_text, &format!("{file} [base]"), &[])
            .map_err(|e| ExperimentError::Spec {
                file: file.into(),
                msg: e.to_string(),
            })?;
        base.task = spec.task.clone();
        base.eval_samples = spec.eval.samples;
        base.eval_max_new_tokens = spec.eval.max_new_tokens;
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(
                "name",
                format!(
                    "`{}`: expected a non-empty folder name of letters, digits, '-', '_', '.'",
                    spec.name
                ),
            ));
        }
        if spec.task.is_empty() {
            return Err(bad(
                "task",
                "must name a shipped task or a data file".into(),
            ));
        }
        if spec.eval.batch_size == 0 {
            return Err(bad("eval.batch_size", "must be at least 1".into()));
        }
        if spec.eval.samples > 0 && spec.eval.max_new_tokens == 0 {
            return Err(bad("eval.max_new_tokens", "must be at least 1".into()));
        }
        if spec.seeds.is_empty() {
            return Err(bad("seeds", "needs at least one seed".into()));
        }
        let mut seeds = spec.seeds.clone();
        seeds.sort_unstable();
        seeds.dedup();
        if seeds.len() != spec.seeds.len() {
            return Err(bad("seeds", format!("has duplicates: {:?}", spec.seeds)));
        }
        if spec.ranks.contains(&0) {
            return Err(bad("ranks", "ranks must be at least 1".into()));
        }
        for (i, r) in spec.residual_ratios.iter().enumerate() {
            if !(0.0..=1.0).contains(r) {
                return Err(bad(
                    &format!("residual_ratios[{i}]"),
                    format!("must be a fraction in [0, 1] (0.012 = 1.2 %), got {r}"),
                ));
            }
        }
        for (m, lr) in &spec.learning_rates {
            parse_method(m).map_err(|msg| bad(&format!("learning_rates.{m}"), msg))?;
            if !(lr.is_finite() && *lr > 0.0) {
                return Err(bad(
                    &format!("learning_rates.{m}"),
                    format!("must be a positive number, got {lr}"),
                ));
            }
        }
        if let Some(metric) = &spec.metric {
            if metric.is_empty() {
                return Err(bad("metric", "must name a metric key (e.g. bleu)".into()));
            }
        }
        let needs_methods = matches!(spec.kind, Kind::Grid);
        if needs_methods && spec.methods.is_empty() {
            return Err(bad("methods", "needs at least one method".into()));
        }
        let ranked = spec.methods.iter().any(|m| *m != Method::Adamw);
        if needs_methods && ranked && spec.ranks.is_empty() {
            return Err(bad(
                "ranks",
                "needs at least one rank for lora, dora, galore and crosslore".into(),
            ));
        }
        match spec.kind {
            Kind::Grid => {}
            Kind::LrSweep => {
                let s = spec.sweep.as_ref().ok_or_else(|| {
                    bad("sweep", "kind = \"lr_sweep\" needs a [sweep] table".into())
                })?;
                if s.learning_rates.is_empty() {
                    return Err(bad(
                        "sweep.learning_rates",
                        "needs at least one method".into(),
                    ));
                }
                for (m, lrs) in &s.learning_rates {
                    let key = format!("sweep.learning_rates.{m}");
                    parse_method(m).map_err(|msg| bad(&key, msg))?;
                    if lrs.is_empty() {
                        return Err(bad(&key, "needs at least one learning rate".into()));
                    }
                    if let Some(lr) = lrs.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                        return Err(bad(&key, format!("must be positive numbers, got {lr}")));
                    }
                }
                if !(s.validation_fraction > 0.0 && s.validation_fraction < 1.0) {
                    return Err(bad(
                        "sweep.validation_fraction",
                        format!("must be in (0, 1), got {}", s.validation_fraction),
                    ));
                }
                if s.validation_samples == 0 || s.rank == 0 {
                    return Err(bad(
                        "sweep",
                        "validation_samples and rank must be at least 1".into(),
                    ));
                }
            }
            Kind::Projection => {
                let p = spec.projection.as_ref().ok_or_else(|| {
                    bad(
                        "projection",
                        "kind = \"projection\" needs a [projection] table".into(),
                    )
                })?;
                if p.rank == 0 || p.every == 0 {
                    return Err(bad(
                        "projection",
                        "rank and every must be at least 1".into(),
                    ));
                }
                if p.layers.is_empty() {
                    return Err(bad("projection.layers", "needs at least one layer".into()));
                }
                if p.power_iters.is_empty() {
                    return Err(bad(
                        "projection.power_iters",
                        "needs at least one value".into(),
                    ));
                }
            }
        }
        if spec.kind != Kind::LrSweep && spec.sweep.is_some() {
            return Err(bad("sweep", "only used with kind = \"lr_sweep\"".into()));
        }
        if spec.kind != Kind::Projection && spec.projection.is_some() {
            return Err(bad(
                "projection",
                "only used with kind = \"projection\"".into(),
            ));
        }
        let swept = match &spec.learning_rates_from {
            None => BTreeMap::new(),
            Some(p) => read_chosen(p).map_err(|msg| {
                bad(
                    "learning_rates_from",
                    format!("{}: {msg} (run the sweep spec first)", p.display()),
                )
            })?,
        };
        Ok(Experiment {
            spec,
            swept,
            base,
            file: file.into(),
        })
    }

    /// The learning rate of `method`: `[learning_rates]`, else the sweep's choice
    /// (`learning_rates_from`), else the base config's.
    pub fn learning_rate(&self, method: Method) -> f64 {
        let name = method_name(method);
        self.spec
            .learning_rates
            .get(name)
            .or_else(|| self.swept.get(name))
            .copied()
            .unwrap_or(self.base.learning_rate)
    }

    /// The sweep's methods with their candidate learning rates (validated at parse time).
    pub fn sweep_methods(&self) -> Vec<(Method, Vec<f64>)> {
        self.spec
            .sweep
            .iter()
            .flat_map(|s| s.learning_rates.iter())
            .filter_map(|(m, lrs)| parse_method(m).ok().map(|m| (m, lrs.clone())))
            .collect()
    }
}

/// The `chosen` table of a sweep's `sweep.json`.
fn read_chosen(path: &Path) -> std::result::Result<BTreeMap<String, f64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if v.get("complete").and_then(|c| c.as_bool()) == Some(false) {
        return Err("the sweep has not finished every run yet".into());
    }
    let chosen = v
        .get("chosen")
        .and_then(|c| c.as_object())
        .ok_or("no `chosen` table")?;
    chosen
        .iter()
        .map(|(k, v)| {
            v.as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(|x| (k.clone(), x))
                .ok_or_else(|| format!("chosen.{k}: expected a positive number"))
        })
        .collect()
}

/// A method from its config name; the error lists the names.
pub fn parse_method(name: &str) -> std::result::Result<Method, String> {
    toml::Value::String(name.to_string())
        .try_into::<Method>()
        .map_err(|_| {
            format!("unknown method `{name}`: expected one of adamw, lora, dora, galore, crosslore")
        })
}

/// The config name of a method (`crosslore`, `galore`, ...).
pub fn method_name(m: Method) -> &'static str {
    match m {
        Method::Crosslore => "crosslore",
        Method::Galore => "galore",
        Method::Lora => "lora",
        Method::Dora => "dora",
        Method::Adamw => "adamw",
    }
}
