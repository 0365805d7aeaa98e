//! Projection quality on real gradients (paper Fig. 2b): while the model fine-tunes, the
//! gradient of a fixed probe batch is taken every `every` steps, and for each targeted matrix of
//! the chosen layers the relative subspace residual `||A - A P P^T||_F / ||A||_F` of a rank-r
//! projector `P` is measured for: exact SVD (GaLore), randomized subspace iteration with each of
//! `power_iters` (paper Sec. 4.1.2, HMT Alg. 4.4), and the cross-head projector (paper Sec.
//! 4.1.1, Eq. 3-4: `P` from `ceil(r / d_head)` random heads' rows) for the attention matrices.
//!
//! `A` is the gradient `G: [out, in]` for q/k/v and the MLP; for `o_proj` (whose INPUT
//! dimension is split by head) `A = G^T`, so that heads are rows there too. The projector is on
//! the right side of `A` throughout (`P: [cols, r]`), which is the cross-head projector's side.
//! The training between measurements uses the spec's first method (default AdamW) with its
//! learning rate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Tensor};
use crosslore_data::{pad, Encoded, Split};
use crosslore_linalg::rsi::{rsi_subspace, RsiConfig};
use crosslore_linalg::svd::{subspace_residual, svd_subspace};
use crosslore_linalg::{Rng, Side};
use crosslore_model::causal_lm_loss_sum;
use crosslore_optim::cross_head::{cross_head_projector, HeadLayout};
use crosslore_train::run::{encoder, load_model, load_task};
use crosslore_train::{Method, Trainer};
use serde::{Deserialize, Serialize};

use crate::error::{ExperimentError, Result};
use crate::plot::{lines, Series};
use crate::spec::Experiment;

/// The matrices measured, in table order.
pub const MATRICES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub step: usize,
    pub layer: usize,
    pub matrix: String,
    /// `svd`, `rsi-q1`, `rsi-q2`, ..., `cross-head`.
    pub projector: String,
    pub residual: f64,
    pub seconds: f64,
}

/// `projection.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectionReport {
    pub name: String,
    pub task: String,
    pub rank: usize,
    pub oversample: usize,
    pub method: Method,
    pub layers: Vec<usize>,
    pub steps: Vec<usize>,
    pub losses: Vec<(usize, f64)>,
    pub measurements: Vec<Measurement>,
}

fn matrix_of(name: &str, layers: &[usize]) -> Option<(usize, &'static str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (l, rest) = rest.split_once('.')?;
    let l: usize = l.parse().ok()?;
    if !layers.contains(&l) {
        return None;
    }
    MATRICES
        .iter()
        .find(|m| rest.ends_with(&format!("{m}.weight")))
        .map(|m| (l, *m))
}

/// Runs the experiment (module docs) and writes `projection.json`, `projection.md` and the plots
/// into `out`.
pub fn run(exp: &Experiment, out: &Path) -> Result<ProjectionReport> {
    let spec = exp
        .spec
        .projection
        .as_ref()
        .ok_or_else(|| ExperimentError::Spec {
            file: exp.file.clone(),
            msg: "kind = \"projection\" needs a [projection] table".into(),
        })?;
    let mut cfg = exp.base.clone();
    cfg.method = exp.spec.methods.first().copied().unwrap_or(Method::Adamw);
    cfg.learning_rate = exp.learning_rate(cfg.method);
    if matches!(cfg.method, Method::Lora | Method::Dora) {
        return Err(ExperimentError::BadValue {
            file: exp.file.clone(),
            key: "methods".into(),
            msg:
                "the projection experiment needs full-weight gradients: adamw, galore or crosslore"
                    .into(),
        });
    }
    cfg.seed = exp.spec.seeds[0];
    cfg.max_steps = spec.steps.max(1);
    cfg.output_dir = Some(out.join("run"));
    let (model, tokenizer, _) = load_model(&cfg)?;
    let tokenizer = tokenizer.ok_or_else(|| ExperimentError::Spec {
        file: exp.file.clone(),
        msg: "the model has no tokenizer".into(),
    })?;
    let mc = model.config.clone();
    for &l in &spec.layers {
        if l >= mc.num_hidden_layers {
            return Err(ExperimentError::BadValue {
                file: exp.file.clone(),
                key: "projection.layers".into(),
                msg: format!("layer {l} >= the model's {} layers", mc.num_hidden_layers),
            });
        }
    }
    let train = load_task(&cfg, Split::Train)?;
    let (enc, pad_id) = encoder(&cfg, &tokenizer)?;
    let set = enc.encode_all(&train)?.examples;
    let mut rng = Rng::new(cfg.seed ^ 0x5eed);
    let probe_idx = rng.sample_distinct(set.len(), cfg.batch_size.min(set.len()));
    let probe: Vec<Encoded> = probe_idx.iter().map(|&i| set[i].clone()).collect();
    let mut trainer = Trainer::new(cfg.clone(), model, set, pad_id)?;
    let mut report = ProjectionReport {
        name: exp.spec.name.clone(),
        task: exp.spec.task.clone(),
        rank: spec.rank,
        oversample: spec.oversample,
        method: cfg.method,
        layers: spec.layers.clone(),
        steps: Vec::new(),
        losses: Vec::new(),
        measurements: Vec::new(),
    };
    let mut proj_rng = Rng::new(cfg.seed ^ 0xc0ffee);
    for step in 0..=spec.steps {
        if step % spec.every == 0 || step == spec.steps {
            let t = Instant::now();
            let n0 = report.measurements.len();
            measure(
                &trainer,
                &probe,
                pad_id,
                step,
                spec,
                &mut proj_rng,
                &mut report,
            )?;
            report.steps.push(step);
            eprintln!(
                "projection: step {step}: {} measurements in {:.1} s",
                report.measurements.len() - n0,
                t.elapsed().as_secs_f64()
            );
        }
        if step < spec.steps && !trainer.is_done() {
            let r = trainer.step()?;
            report.losses.push((r.step, r.loss));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| ExperimentError::io(out, "create", e))?;
    let p = out.join("projection.json");
    let json = serde_json::to_string_pretty(&report).map_err(|e| ExperimentError::BadFile {
        path: p.clone(),
        msg: e.to_string(),
    })?;
    std::fs::write(&p, json).map_err(|e| ExperimentError::io(&p, "write", e))?;
    write_views(&report, out)?;
    Ok(report)
}

/// `projection.md` and the plots of `report` into `out`.
fn write_views(report: &ProjectionReport, out: &Path) -> Result<()> {
    let md = out.join("projection.md");
    std::fs::write(&md, report.markdown()).map_err(|e| ExperimentError::io(&md, "write", e))?;
    report.plots(&out.join("plots"))
}

/// Re-reads `out/projection.json` and rewrites `projection.md` and the plots (no training).
pub fn rewrite(out: &Path) -> Result<ProjectionReport> {
    let p = out.join("projection.json");
    let text = std::fs::read_to_string(&p).map_err(|e| ExperimentError::io(&p, "read", e))?;
    let report: ProjectionReport =
        serde_json::from_str(&text).map_err(|e| ExperimentError::BadFile {
            path: p.clone(),
            msg: e.to_string(),
        })?;
    write_views(&report, out)?;
    Ok(report)
}

fn measure(
    trainer: &Trainer,
    probe: &[Encoded],
    pad_id: u32,
    step: usize,
    spec: &crate::spec::ProjectionSpec,
    rng: &mut Rng,
    report: &mut ProjectionReport,
) -> Result<()> {
    let model = trainer.model();
    let dev = model.device().clone();
    let refs: Vec<&Encoded> = probe.iter().collect();
    let (ids, mask, labels) = crosslore_train::eval::batch_tensors(&pad(&refs, pad_id), &dev)?;
    let logits = model.forward(&ids, Some(&mask))?;
    let (sum, n) = causal_lm_loss_sum(&logits, &labels, None)?;
    let loss = (sum / n.max(1) as f64)?;
    let grads = loss.backward()?;
    let c = &model.config;
    for (name, var) in trainer.params() {
        let Some((layer, matrix)) = matrix_of(name, &spec.layers) else {
            continue;
        };
        let Some(g) = grads.get(var.as_tensor()) else {
            continue;
        };
        let g = g.detach().to_dtype(DType::F32)?;
        // heads along the rows of A (module docs)
        let (a, layout) = match matrix {
            "q_proj" => (g, Some(c.num_attention_heads)),
            "k_proj" | "v_proj" => (g, Some(c.num_key_value_heads)),
            "o_proj" => (g.t()?.contiguous()?, Some(c.num_attention_heads)), // [nh*dh, d_model]
            _ => (g, None),
        };
        let (m, ncols) = a.dims2()?;
        let r = spec.rank.min(m).min(ncols);
        let mut push = |projector: String, p: &Tensor, secs: f64| -> Result<()> {
            let res = subspace_residual(&a, p, Side::Right)? as f64;
            report.measurements.push(Measurement {
                step,
                layer,
                matrix: matrix.into(),
                projector,
                residual: res,
                seconds: secs,
            });
            Ok(())
        };
        let t = Instant::now();
        let p = svd_subspace(&a, r, Side::Right)?;
        push("svd".into(), &p, t.elapsed().as_secs_f64())?;
        for &q in &spec.power_iters {
            let cfg = RsiConfig {
                oversample: spec.oversample,
                power_iters: q,
            };
            let t = Instant::now();
            let p = rsi_subspace(&a, r, Side::Right, &cfg, rng, None)?;
            push(format!("rsi-q{q}"), &p, t.elapsed().as_secs_f64())?;
        }
        if let Some(n_heads) = layout {
            let layout = HeadLayout {
                n_heads,
                d_head: c.head_dim,
            };
            let cfg = RsiConfig {
                oversample: spec.oversample,
                power_iters: spec.power_iters.iter().copied().max().unwrap_or(2),
            };
            let t = Instant::now();
            let (p, _) = cross_head_projector(&a, &layout, r, &cfg, rng, None)?;
            push("cross-head".into(), &p, t.elapsed().as_secs_f64())?;
        }
    }
    Ok(())
}

impl ProjectionReport {
    /// Mean residual over layers by (matrix, projector, step).
    pub fn means(&self) -> BTreeMap<(String, String, usize), (f64, f64)> {
        let mut acc: BTreeMap<(String, String, usize), (f64, f64, usize)> = BTreeMap::new();
        for m in &self.measurements {
            let e = acc
                .entry((m.matrix.clone(), m.projector.clone(), m.step))
                .or_default();
            e.0 += m.residual;
            e.1 += m.seconds;
            e.2 += 1;
        }
        acc.into_iter()
            .map(|(k, (r, s, n))| (k, (r / n as f64, s / n as f64)))
            .collect()
    }

    fn projectors(&self) -> Vec<String> {
        let mut p: Vec<String> = Vec::new();
        for m in &self.measurements {
            if !p.contains(&m.projector) {
                p.push(m.projector.clone());
            }
        }
        p
    }

    /// `projection.md`: residual (mean over layers) per matrix and projector at each measured
    /// step, and the mean time of each projector per matrix.
    pub fn markdown(&self) -> String {
        let means = self.means();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Projection quality on real gradients (`{}`, task `{}`, rank {}, oversample {}, \
             training with {:?}, layers {:?})\n\nRelative subspace residual \
             `||A - A P P^T||_F / ||A||_F` of the probe batch's gradient, mean over the \
             layers; last column: mean seconds per projector computation.\n",
            self.name, self.task, self.rank, self.oversample, self.method, self.layers
        );
        let _ = write!(s, "| matrix | projector |");
        for st in &self.steps {
            let _ = write!(s, " step {st} |");
        }
        let _ = writeln!(s, " s/projection |");
        let _ = writeln!(s, "|---|---|{}---|", "---|".repeat(self.steps.len()));
        for matrix in MATRICES {
            for p in self.projectors() {
                let cells: Vec<Option<(f64, f64)>> = self
                    .steps
                    .iter()
                    .map(|&st| means.get(&(matrix.to_string(), p.clone(), st)).copied())
                    .collect();
                if cells.iter().all(Option::is_none) {
                    continue;
                }
                let _ = write!(s, "| {matrix} | {p} |");
                for c in &cells {
                    let _ = write!(s, " {} |", c.map_or("-".into(), |(r, _)| format!("{r:.4}")));
                }
                let secs: Vec<f64> = cells.iter().flatten().map(|c| c.1).collect();
                let mean = secs.iter().sum::<f64>() / secs.len().max(1) as f64;
                let _ = writeln!(s, " {mean:.5} |");
            }
        }
        s
    }

    /// `projection-attention.png` (q/k/v/o) and `projection-mlp.png`: residual over steps, one
    /// line per projector (mean over layers and matrices of the group).
    pub fn plots(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ExperimentError::io(dir, "create", e))?;
        for (file, group) in [
            ("projection-attention.png", &MATRICES[..4]),
            ("projection-mlp.png", &MATRICES[4..]),
        ] {
            let series: Vec<Series> = self
                .projectors()
                .into_iter()
                .map(|p| {
                    let points = self
                        .steps
                        .iter()
                        .filter_map(|&st| {
                            let v: Vec<f64> = self
                                .measurements
                                .iter()
                                .filter(|m| {
                                    m.step == st
                                        && m.projector == p
                                        && group.contains(&m.matrix.as_str())
                                })
                                .map(|m| m.residual)
                                .collect();
                            (!v.is_empty())
                                .then(|| (st as f64, v.iter().sum::<f64>() / v.len() as f64))
                        })
                        .collect();
                    Series { label: p, points }
                })
                .filter(|s: &Series| !s.points.is_empty())
                .collect();
            if series.is_empty() {
                continue;
            }
            lines(
                &dir.join(file),
                &format!(
                    "Subspace residual, rank {} ({}), mean over layers {:?}",
                    self.rank,
                    group.join("/"),
                    self.layers
                ),
                ("training step", "||A - A P P^T|| / ||A||"),
                &series,
                false,
            )?;
        }
        Ok(())
    }
}
