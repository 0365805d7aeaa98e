//! The training loop (issue 3 items 2-3; DESIGN.md §3): one optimizer step = `grad_accum`
//! micro-batches, causal-LM loss on the target tokens (prompt masked), gradient accumulation,
//! global-norm clipping, LR schedule with warm-up, seeded dropout, and two backward modes:
//!
//! - **whole-graph**: one autograd graph per micro-batch, `loss.backward()`, then every parameter
//!   is stepped ([`Trainer::step`] with `layerwise = false`);
//! - **layerwise** (segmented backward, [`crate::layerwise`]): blocks are run on detached input
//!   `Var`s and back-propagated one at a time from the last; each block's weights are stepped as
//!   soon as their gradients exist and the gradients are dropped.
//!
//! **Loss scaling.** The micro-batch loss is `sum of token losses / N`, `N` the number of target
//! tokens in all `grad_accum` micro-batches of the step (counted before any forward), so the
//! accumulated gradient equals the gradient of the mean loss of one big batch.
//!
//! **Clipping** is `torch.nn.utils.clip_grad_norm_`: `coef = min(1, max_norm / (norm + 1e-6))`
//! on the global L2 norm of the accumulated gradient, before any update. In layerwise mode that
//! norm is not known when the last block's gradient appears; see [`crate::layerwise`] for the
//! two-pass scheme used and its cost.
//!
//! **Non-finite steps** (issue 7). A NaN/Inf loss or gradient found before any weight of the step
//! is updated makes the step a *skipped* step: weights and optimizer state are untouched, the
//! step counter, the schedule and the data stream advance (the batch is consumed, so a
//! deterministic fault does not repeat forever), and the report says why
//! ([`StepReport::skipped`]). `max_bad_steps` consecutive skipped steps end the run with
//! [`TrainError::TooManyBadSteps`]. Every mode checks before the first update: whole-graph mode
//! and layerwise mode with clipping have the global norm first; layerwise mode without clipping
//! checks the loss before its first update and each gradient just before its own update, and a
//! bad gradient after some blocks were updated stops the run
//! ([`TrainError::NonFiniteAfterUpdate`]) instead of skipping a half-applied step.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use crosslore_data::{BatchConfig, BatchIter, Collate, DataPosition, Encoded, IGNORE_INDEX};
use crosslore_linalg::Rng;
use crosslore_model::fused::shifted_targets;
use crosslore_model::{causal_lm_loss_sum, Llama};
use serde::{Deserialize, Serialize};

use crate::config::{BlockBackward, Method, TrainConfig};
use crate::error::{Result, TrainError};
use crate::grads::{
    clip_coef, global_norm, scale, sq_norms, tensor_bytes, GradBuffers, PeakCounter,
};
use crate::memory::{self, MemoryReport};
use crate::optimizer::MethodOptimizer;
use crate::profile::{PhaseTime, Profiler};
use crate::schedule::Schedule;

/// Stream of the trainer's own RNG (dropout seeds), derived from the run seed.
const DROPOUT_STREAM: u64 = 0x64_726f_706f_7574;

/// Wall-clock split of one optimizer step, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Forward passes, including recomputation during the backward (`recompute`).
    pub forward_s: f64,
    /// Backward passes (first sweep).
    pub backward_s: f64,
    /// Layerwise with clipping: the extra backward sweep that computes the global norm first.
    pub clip_pass_s: f64,
    /// Optimizer steps without a projection refresh.
    pub optimizer_s: f64,
    /// Optimizer steps that refreshed a projector (SVD / RSI included).
    pub refresh_s: f64,
    /// Subspace-residual measurement for the log.
    pub residual_s: f64,
    pub total_s: f64,
}

/// What one optimizer step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// 1-based index of the step just taken.
    pub step: usize,
    /// Mean token loss over the step's micro-batches (the big-batch loss).
    pub loss: f64,
    pub lr: f64,
    /// Global L2 norm of the accumulated gradient before clipping.
    pub grad_norm: f64,
    /// Clipping coefficient applied (1 = not clipped).
    pub clip_coef: f64,
    /// Target (loss) tokens in the step.
    pub target_tokens: usize,
    /// Real (non-padding) tokens processed.
    pub tokens: usize,
    pub tokens_per_s: f64,
    pub timings: Timings,
    /// Parameters whose projector was refreshed in this step.
    pub refreshed: usize,
    /// Mean relative residual `||G - P P^T G|| / ||G||` over projected parameters (log steps
    /// of GaLore/CrossLore only).
    pub subspace_residual: Option<f64>,
    pub epoch: u64,
    /// Why the step was skipped (non-finite loss or gradient; weights and optimizer state
    /// untouched), `None` for a step that updated the weights.
    pub skipped: Option<String>,
    /// Resident memory of the process after the step and its peak so far (Linux `VmRSS` /
    /// `VmHWM`; `None` elsewhere), in bytes.
    pub rss_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
}

/// Parameters per optimizer call in whole-model mode ([`Trainer::apply_buffers`]).
const APPLY_BATCH: usize = 16;

/// One micro-batch on the device.
pub(crate) struct Micro {
    pub ids: Tensor,
    pub mask: Tensor,
    pub labels: Tensor,
    pub batch: usize,
    pub seq: usize,
    pub tokens: usize,
    pub dropout_seed: u64,
    /// Shifted targets `[b * s]` u32 for the fused head (`block_backward = fused` only).
    pub targets: Option<Tensor>,
}

/// Accumulated per-step state passed to the optimizer delivery.
pub(crate) struct StepAcc {
    pub refreshed: usize,
    pub residuals: Vec<f64>,
    pub measure_residual: bool,
    pub timings: Timings,
    pub sq: BTreeMap<String, f64>,
    pub peak: PeakCounter,
    /// Parameters updated so far in this step (0 = the step can still be skipped).
    pub applied: usize,
    /// The step's loss over the micro-batches seen so far.
    pub loss: f64,
    /// The step's learning rate, handed to the optimizer at the first update.
    pub lr: f64,
}

/// The trainer: model, optimizer, schedule, data stream and step counter.
pub struct Trainer {
    pub(crate) cfg: TrainConfig,
    pub(crate) model: Llama,
    pub(crate) params: Vec<(String, Var)>,
    pub(crate) opt: MethodOptimizer,
    pub(crate) schedule: Schedule,
    pub(crate) data: BatchIter,
    pub(crate) step: usize,
    pub(crate) rng: Rng,
    pub(crate) grads_peak: usize,
    pub(crate) last_shape: (usize, usize),
    /// Skipped (non-finite) steps so far, and how many of the latest were consecutive.
    pub(crate) bad_steps: usize,
    pub(crate) consecutive_bad: usize,
    /// Per-phase profile, off unless [`Trainer::set_profiling`] (crate::profile).
    pub(crate) prof: Profiler,
}

/// Number of labels the loss counts: positions `t >= 1` whose label is not ignored (what
/// [`causal_lm_loss_sum`] counts, so the scaling is exact).
fn counted_targets(labels: &[i64], seq: usize) -> usize {
    labels
        .chunks(seq.max(1))
        .map(|row| row.iter().skip(1).filter(|&&l| l != IGNORE_INDEX).count())
        .sum()
}

impl Trainer {
    /// A trainer at step 0. `model` must have been loaded for the method
    /// ([`crate::run::load_options`]): every weight trainable for adamw/galore/crosslore,
    /// adapters only for lora/dora. `train` is the encoded training set; `pad_id` pads batches.
    pub fn new(cfg: TrainConfig, model: Llama, train: Vec<Encoded>, pad_id: u32) -> Result<Self> {
        // Freed activations stay in the CUDA pool between steps (no-op on the CPU).
        crosslore_model::fused::keep_memory_pool(model.device())
            .map_err(crosslore_model::ModelError::from)?;
        cfg.validate("config")?;
        let params = model.params();
        if params.is_empty() {
            return Err(TrainError::Invalid {
                what: "model",
                msg: "has no trainable parameter (loaded frozen?)".into(),
            });
        }
        let adapters = model.adapter_config().is_some();
        let wants_adapters = matches!(cfg.method, Method::Lora | Method::Dora);
        if adapters != wants_adapters {
            return Err(TrainError::Invalid {
                what: "model",
                msg: format!(
                    "method {:?} needs {} but the model was loaded {}",
                    cfg.method,
                    if wants_adapters {
                        "adapters"
                    } else {
                        "trainable base weights"
                    },
                    if adapters {
                        "with adapters"
                    } else {
                        "without adapters"
                    }
                ),
            });
        }
        let opt = MethodOptimizer::new(&cfg, &model.config, &params)?;
        let data = BatchIter::new(
            train,
            BatchConfig {
                batch_size: cfg.batch_size,
                collate: Collate::Pad,
                max_len: cfg.max_len,
                pad_id,
                shuffle: true,
                seed: cfg.seed,
                drop_last: false,
            },
        )?;
        let total_steps = if cfg.max_steps > 0 {
            cfg.max_steps
        } else {
            let per_epoch = data.batches_per_epoch().unwrap_or(1);
            (cfg.epochs * per_epoch).div_ceil(cfg.grad_accum).max(1)
        };
        let schedule = Schedule {
            kind: cfg.lr_scheduler,
            peak_lr: cfg.learning_rate,
            warmup_steps: cfg.warmup_steps,
            total_steps,
        };
        let rng = Rng::derive(cfg.seed, DROPOUT_STREAM);
        let prof = Profiler::new(model.device(), false);
        Ok(Self {
            cfg,
            model,
            params,
            opt,
            schedule,
            data,
            step: 0,
            rng,
            grads_peak: 0,
            last_shape: (0, 0),
            bad_steps: 0,
            consecutive_bad: 0,
            prof,
        })
    }

    /// Turns the per-phase profile of the following steps on or off ([`crate::profile`]: on,
    /// every phase boundary synchronises the device) and forgets the phases so far.
    pub fn set_profiling(&mut self, on: bool) {
        self.prof = Profiler::new(self.model.device(), on);
    }

    /// The per-phase profile of the steps since [`Trainer::set_profiling`] (empty when off).
    pub fn profile(&self) -> Vec<PhaseTime> {
        self.prof.report()
    }

    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// Trainable parameters by name, each once.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    pub fn optimizer(&self) -> &MethodOptimizer {
        &self.opt
    }

    /// Optimizer steps taken.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    pub fn total_steps(&self) -> usize {
        self.schedule.total_steps
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn data_position(&self) -> DataPosition {
        self.data.position()
    }

    /// Steps skipped so far because of a non-finite loss or gradient.
    pub fn skipped_steps(&self) -> usize {
        self.bad_steps
    }

    pub fn is_done(&self) -> bool {
        self.step >= self.schedule.total_steps
    }

    /// Largest number of weight-gradient bytes held at once so far (accumulation buffers, the
    /// gradients of the block being stepped or the whole gradient store), from the loop's own
    /// bookkeeping.
    pub fn grads_peak_bytes(&self) -> usize {
        self.grads_peak
    }

    fn micro(&mut self, batch: &crosslore_data::Batch, dev: &Device) -> Result<Micro> {
        let (b, s) = (batch.batch_size, batch.seq_len);
        let (ids, mask, labels) = crate::eval::batch_tensors(batch, dev)?; // [b, s] each
        let targets = match self.cfg.block_backward {
            BlockBackward::Fused => {
                let vocab = self.model.config.vocab_size;
                Some(shifted_targets(&batch.labels, b, s, vocab, dev)?.0) // [b * s]
            }
            BlockBackward::Autograd => None,
        };
        Ok(Micro {
            targets,
            ids,
            mask,
            labels,
            batch: b,
            seq: s,
            tokens: batch.attention_mask.iter().filter(|&&m| m == 1).count(),
            dropout_seed: self.rng.next_u64(),
        })
    }

    /// Token-loss sum of `logits` scaled by `1 / n_total`, and its value.
    pub(crate) fn scaled_loss(logits: &Tensor, m: &Micro, n_total: usize) -> Result<Tensor> {
        let (sum, _) = causal_lm_loss_sum(logits, &m.labels, None)?;
        Ok((sum / n_total as f64)?)
    }

    /// Steps the parameters `items` (`name`, `var`, total gradient already clipped) with one
    /// batched optimizer call ([`crosslore_optim::ParamOptimizer::step_params`]: CrossLore and
    /// GaLore check every gradient's finiteness in one device synchronisation and queue the
    /// refreshes together), recording times, refreshes and (log steps) subspace residuals. A
    /// batch that refreshed any projector counts its time as refresh time.
    pub(crate) fn apply_many(
        &mut self,
        items: &[(String, Var, Tensor)],
        acc: &mut StepAcc,
    ) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        if acc.applied == 0 {
            // The optimizer is not touched before the step's first update (a skipped step
            // leaves its state exactly as it was, learning rate included).
            self.opt.set_lr(acc.lr);
        }
        let refs: Vec<(&str, &Var, &Tensor)> =
            items.iter().map(|(n, v, g)| (n.as_str(), v, g)).collect();
        let infos = self.opt.as_dyn_mut().step_params(&refs)?;
        acc.applied += items.len();
        let dt = t.elapsed().as_secs_f64();
        let refreshed = infos.iter().filter(|i| i.refreshed).count();
        acc.refreshed += refreshed;
        if refreshed > 0 {
            acc.timings.refresh_s += dt;
        } else {
            acc.timings.optimizer_s += dt;
        }
        if acc.measure_residual {
            let t = Instant::now();
            for ((name, _, g), info) in items.iter().zip(&infos) {
                if !info.projected {
                    continue;
                }
                if let Some(r) = self.opt.projection_residual(name, g)? {
                    acc.residuals.push(r as f64);
                }
            }
            acc.timings.residual_s += t.elapsed().as_secs_f64();
        }
        Ok(())
    }

    /// One optimizer step over `grad_accum` micro-batches.
    pub fn step(&mut self) -> Result<StepReport> {
        let t0 = Instant::now();
        self.prof.begin()?;
        let dev = self.model.device().clone();
        let k = self.cfg.grad_accum;
        let epoch = self.data.position().epoch;
        let mut micros = Vec::with_capacity(k);
        let mut n_total = 0usize;
        for _ in 0..k {
            let batch = self.data.next_batch();
            n_total += counted_targets(&batch.labels, batch.seq_len);
            micros.push(self.micro(&batch, &dev)?);
        }
        self.prof.lap("batch upload")?;
        if n_total == 0 {
            return Err(TrainError::Invalid {
                what: "batch",
                msg: format!(
                    "step {}: no target token in {k} micro-batch(es) (every label masked)",
                    self.step + 1
                ),
            });
        }
        self.last_shape = micros
            .iter()
            .map(|m| (m.batch, m.seq))
            .max_by_key(|&(b, s)| b * s)
            .unwrap_or((0, 0));
        let lr = self.schedule.lr(self.step);
        let measure_residual = matches!(self.cfg.method, Method::Galore | Method::Crosslore)
            && (self.step + 1).is_multiple_of(self.cfg.log_every);
        let mut acc = StepAcc {
            refreshed: 0,
            residuals: Vec::new(),
            measure_residual,
            timings: Timings::default(),
            sq: BTreeMap::new(),
            peak: PeakCounter::default(),
            applied: 0,
            loss: 0.0,
            lr,
        };
        let outcome = match (self.cfg.block_backward, self.cfg.layerwise) {
            (BlockBackward::Autograd, false) => self.step_whole(&micros, n_total, &mut acc),
            // The fused blocks always run as a block sweep; without `layerwise` the sweep only
            // accumulates and the whole model is stepped at the end.
            _ => self.step_layerwise(&micros, n_total, &mut acc),
        };
        self.prof.lap("step end")?;
        self.grads_peak = self.grads_peak.max(acc.peak.peak);
        self.step += 1;
        let (loss, norm, coef, skipped) = match outcome {
            Ok((loss, norm, coef)) => {
                self.consecutive_bad = 0;
                (loss, norm, coef, None)
            }
            Err(TrainError::NonFinite { what, value, .. }) if acc.applied == 0 => {
                self.bad_steps += 1;
                self.consecutive_bad += 1;
                let reason = format!("{what} is {value}");
                if self.consecutive_bad >= self.cfg.max_bad_steps {
                    return Err(TrainError::TooManyBadSteps {
                        step: self.step,
                        consecutive: self.consecutive_bad,
                        last: reason,
                        checkpoint: None,
                    });
                }
                let norm = if acc.sq.is_empty() {
                    f64::NAN
                } else {
                    global_norm(&acc.sq)
                };
                (acc.loss, norm, 1.0, Some(reason))
            }
            Err(TrainError::NonFinite { what, value, step }) => {
                return Err(TrainError::NonFiniteAfterUpdate {
                    step,
                    what,
                    value,
                    applied: acc.applied,
                })
            }
            Err(e) => return Err(e),
        };
        let mut timings = acc.timings;
        timings.total_s = t0.elapsed().as_secs_f64();
        let tokens: usize = micros.iter().map(|m| m.tokens).sum();
        let subspace_residual = (!acc.residuals.is_empty())
            .then(|| acc.residuals.iter().sum::<f64>() / acc.residuals.len() as f64);
        Ok(StepReport {
            step: self.step,
            loss,
            lr,
            grad_norm: norm,
            clip_coef: coef,
            target_tokens: n_total,
            tokens,
            tokens_per_s: tokens as f64 / timings.total_s.max(1e-9),
            timings,
            refreshed: acc.refreshed,
            subspace_residual,
            epoch,
            skipped,
            rss_bytes: memory::current_rss_bytes(),
            peak_rss_bytes: memory::peak_rss_bytes(),
        })
    }

    /// `Err(NonFinite)` naming `what` unless `v` is finite.
    pub(crate) fn check_finite(&self, what: &str, v: f64) -> Result<()> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(TrainError::NonFinite {
                step: self.step + 1,
                what: what.to_string(),
                value: v,
            })
        }
    }

    /// Whole-graph mode: returns (loss, grad norm, clip coefficient).
    fn step_whole(
        &mut self,
        micros: &[Micro],
        n_total: usize,
        acc: &mut StepAcc,
    ) -> Result<(f64, f64, f64)> {
        let mut bufs = GradBuffers::default();
        let mut loss_v = 0.0;
        for m in micros {
            let t = Instant::now();
            let ctx = self
                .model
                .context(m.batch, m.seq, Some(&m.mask), true, m.dropout_seed)?;
            let logits = self.model.forward_with(&m.ids, &ctx)?;
            let loss = Self::scaled_loss(&logits, m, n_total)?;
            loss_v += loss.to_scalar::<f32>()? as f64;
            acc.timings.forward_s += t.elapsed().as_secs_f64();
            // A non-finite micro-batch loss skips the step: no backward needed.
            acc.loss = loss_v;
            self.check_finite("loss", loss_v)?;
            let t = Instant::now();
            let grads = loss.backward()?;
            acc.timings.backward_s += t.elapsed().as_secs_f64();
            let store: usize = self
                .params
                .iter()
                .filter_map(|(_, v)| grads.get(v).map(tensor_bytes))
                .sum();
            acc.peak.observe(bufs.bytes() + store);
            for (name, var) in &self.params {
                // Detached: see `layerwise::sweep` (leaf gradients keep the graph alive).
                if let Some(g) = grads.get(var).map(Tensor::detach) {
                    bufs.add(name, &g)?;
                }
            }
        }
        let (norm, coef) = self.apply_buffers(bufs, acc)?;
        Ok((loss_v, norm, coef))
    }

    /// The end of a whole-model step: global norm of the accumulated gradients, clipping, and
    /// the update of every parameter. Returns (grad norm, clip coefficient).
    pub(crate) fn apply_buffers(
        &mut self,
        mut bufs: GradBuffers,
        acc: &mut StepAcc,
    ) -> Result<(f64, f64)> {
        let params = self.params.clone();
        let totals: Vec<(String, Var, Tensor)> = params
            .iter()
            .filter_map(|(name, var)| bufs.take(name).map(|g| (name.clone(), var.clone(), g)))
            .collect();
        let sq = sq_norms(&totals.iter().map(|(_, _, g)| g).collect::<Vec<_>>())?;
        for ((name, _, _), v) in totals.iter().zip(sq) {
            acc.sq.insert(name.clone(), v);
        }
        self.prof.lap("grad sq_norms + host read")?;
        let norm = global_norm(&acc.sq);
        self.check_finite("gradient norm", norm)?;
        let coef = clip_coef(norm, self.cfg.max_grad_norm);
        // Batches of APPLY_BATCH parameters: one optimizer call (one finiteness read) each,
        // while at most that many clipped copies exist besides the gradients.
        for chunk in totals.chunks(APPLY_BATCH) {
            let items = chunk
                .iter()
                .map(|(name, var, g)| Ok((name.clone(), var.clone(), scale(g, coef)?)))
                .collect::<Result<Vec<_>>>()?;
            self.prof.lap("clip scale")?;
            self.apply_many(&items, acc)?;
            self.prof.lap("optimizer step_params")?;
        }
        Ok((norm, coef))
    }

    /// The memory report of the run so far: exact optimizer-state bytes, measured gradient
    /// peak, activation estimate from the largest micro-batch shape, process peak RSS.
    pub fn memory_report(&self) -> MemoryReport {
        let (b, s) = self.last_shape;
        let weights = self
            .model
            .merged_weights_bytes_estimate()
            .unwrap_or_default();
        let trainable: usize = self
            .params
            .iter()
            .map(|(_, v)| tensor_bytes(v.as_tensor()))
            .sum();
        memory::report(memory::ReportInputs {
            layerwise: self.cfg.layerwise,
            fused: self.cfg.block_backward == BlockBackward::Fused,
            recompute: self.cfg.recompute,
            grad_accum: self.cfg.grad_accum,
            weights_bytes: weights,
            trainable_bytes: trainable,
            block_grad_bytes: memory::largest_block_bytes(&self.model),
            grads_peak_measured: self.grads_peak,
            optimizer_state_bytes: self.opt.state_bytes().total,
            activations: match self.cfg.block_backward {
                BlockBackward::Autograd => memory::activation_bytes(
                    &self.model.config,
                    b,
                    s,
                    self.model.dtype().size_in_bytes(),
                    self.cfg.layerwise && self.cfg.recompute,
                ),
                BlockBackward::Fused => memory::fused_activation_bytes(
                    &self.model.config,
                    b,
                    s,
                    self.model.dtype().size_in_bytes(),
                    self.cfg.recompute,
                ),
            },
        })
    }
}

/// Bytes of all weights of a model (trainable and frozen, adapters included).
pub trait WeightBytes {
    fn merged_weights_bytes_estimate(&self) -> Result<usize>;
}

impl WeightBytes for Llama {
    fn merged_weights_bytes_estimate(&self) -> Result<usize> {
        let base: usize = self
            .config
            .expected_tensors()
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum::<usize>()
            * self.dtype().size_in_bytes();
        let adapters: usize = if self.adapter_config().is_some() {
            self.params()
                .iter()
                .map(|(_, v)| tensor_bytes(v.as_tensor()))
                .sum()
        } else {
            0
        };
        Ok(base + adapters)
    }
}

/// f32 copy of a tensor on the host (for comparisons and checkpoints).
pub fn host_f32(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)
}
