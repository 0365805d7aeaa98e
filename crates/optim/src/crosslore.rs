//! CrossLore AdamW: GaLore ([`crate::galore`]) with three changes (paper Sec. 4; DESIGN.md §1.2):
//!
//! 1. **Randomized subspace iteration** (paper Sec. 4.1.2; Halko et al. 2011, Alg. 4.4) replaces
//!    the exact SVD for every projected matrix ([`crosslore_linalg::rsi::rsi_subspace`]; seeded
//!    per parameter, the RNG state is part of the saved state).
//! 2. **Cross-head projection** (paper Sec. 4.1.1, Eq. 3-4) for the attention query/key weights:
//!    the right projector `P: [d_model, r]` is the top-r row space of a few randomly drawn heads'
//!    gradient rows ([`crate::cross_head`]); it serves every head (`R = G P`).
//! 3. **Sparsely coded residual** (paper Sec. 4.2, Alg. 2) on the query/key weights: after a
//!    warm-up, `dM`, `dV` are tracked at a fixed sparse index set `L` and
//!    `W[L] -= lr * scale * delta` is applied on top of the low-rank update
//!    ([`crate::residual`]). The low-rank part is exactly galore-torch's form, so a residual ratio
//!    of 0 gives GaLore with RSI; the residual uses the same `scale` as the low-rank part so that
//!    the sum approximates the full-rank Adam update. The residual update comes before the
//!    decoupled weight decay (which then acts on the fully updated `W`, as in galore-torch).
//!
//! Options beyond the paper, off by default: warm-start RSI from the previous projector
//! ([`CrossLoreConfig::warm_start`]), residual index re-selection at each projection refresh
//! ([`ResidualConfig::refresh_index_on_projection`]), moment re-projection on refresh
//! ([`GaLoreConfig::reproject_moments`]).
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use crosslore_linalg::rsi::{rsi_many, rsi_subspace, RsiConfig, RsiJob};
use crosslore_linalg::{Rng, Side};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::cross_head::{cross_head_projector, infer_layout_with, CrossHeadTarget, HeadLayout};
use crate::error::{OptimError, Result};
use crate::galore::{GaLoreConfig, LowRankMeta, LowRankState};
use crate::groups::ParamGroups;
use crate::projector::{ProjSide, Projector};
use crate::residual::{AdamHyper, LowRank, ResidualConfig, ResidualState, SparseResidual};
use crate::state::{self, OptimizerKind, SavedMeta};
use crate::{check_grad_raw, check_grads_raw};
use crate::{ParamOptimizer, RefreshHook, StateBytes, StepInfo};

/// Default regex of the parameters that get the sparse residual: attention query and key.
pub const RESIDUAL_TARGET_PATTERN: &str = r"self_attn\.(q|k)_proj\.weight$";

/// Attention shape of the model, for inferring head layouts from parameter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelHeads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_head: usize,
}

/// Cross-head projection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossHeadConfig {
    /// Parameter-name suffixes that get the cross-head projection (default: `q_proj`, `k_proj`).
    pub targets: Vec<CrossHeadTarget>,
    /// Model attention shape; required as soon as a projected parameter matches a target
    /// (unless an override names it).
    pub heads: Option<ModelHeads>,
    /// Per-parameter layout overrides (exact parameter name -> layout).
    #[serde(default)]
    pub overrides: BTreeMap<String, HeadLayout>,
}

impl Default for CrossHeadConfig {
    fn default() -> Self {
        Self {
            targets: crate::cross_head::default_targets(),
            heads: None,
            overrides: BTreeMap::new(),
        }
    }
}

/// Configuration of [`CrossLoreAdamW`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossLoreConfig {
    /// Adam hyper-parameters, parameter groups (rank / gap / scale / proj type) and moment
    /// re-projection, as for GaLore.
    pub galore: GaLoreConfig,
    /// RSI oversampling and power iterations (defaults p = 8, q = 2).
    pub rsi: RsiConfig,
    /// Warm-start RSI from the previous projector (beyond the paper; off by default).
    #[serde(default)]
    pub warm_start: bool,
    /// Power iterations used for a warm-started refresh (default 1).
    #[serde(default = "one")]
    pub warm_start_power_iters: usize,
    /// Seed of the per-parameter random streams (RSI test matrices, head draws).
    pub seed: u64,
    pub cross_head: CrossHeadConfig,
    /// Sparse residual settings (ratio 1.2 %, warm-up = update_proj_gap).
    pub residual: ResidualConfig,
    /// Regexes of the parameters that get the residual (default: q_proj, k_proj weights).
    pub residual_targets: Vec<String>,
}

fn one() -> usize {
    1
}

impl Default for CrossLoreConfig {
    fn default() -> Self {
        Self {
            galore: GaLoreConfig::default(),
            rsi: RsiConfig::default(),
            warm_start: false,
            warm_start_power_iters: 1,
            seed: 0,
            cross_head: CrossHeadConfig::default(),
            residual: ResidualConfig::default(),
            residual_targets: vec![RESIDUAL_TARGET_PATTERN.to_string()],
        }
    }
}

/// Stable 64-bit FNV-1a hash of a parameter name: the RNG stream of that parameter.
fn name_stream(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[derive(Debug, Clone)]
struct CrossState {
    low: LowRankState,
    rng: Rng,
    layout: Option<HeadLayout>,
    /// Heads drawn at the last cross-head refresh.
    heads: Vec<usize>,
    residual: Option<ResidualState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CrossParamMeta {
    #[serde(flatten)]
    low_rank: LowRankMeta,
    rng: Rng,
    layout: Option<HeadLayout>,
    heads: Vec<usize>,
    residual: bool,
}

/// CrossLore AdamW (module docs).
pub struct CrossLoreAdamW {
    cfg: CrossLoreConfig,
    groups: ParamGroups,
    residual_targets: Vec<Regex>,
    params: Vec<(String, Var)>,
    states: BTreeMap<String, CrossState>,
    shapes: BTreeMap<String, Vec<usize>>,
    hook: Option<RefreshHook>,
}

impl CrossLoreAdamW {
    /// An optimizer with no registered parameters.
    pub fn new(cfg: CrossLoreConfig) -> Result<Self> {
        cfg.galore.validate()?;
        cfg.residual.validate()?;
        let groups = ParamGroups::new(cfg.galore.groups.clone())?;
        let residual_targets = cfg
            .residual_targets
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| OptimError::Config {
                    param: format!("residual_targets `{p}`"),
                    msg: format!("invalid regex: {e}"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg,
            groups,
            residual_targets,
            params: Vec::new(),
            states: BTreeMap::new(),
            shapes: BTreeMap::new(),
            hook: None,
        })
    }

    /// An optimizer over named parameters; every parameter's configuration (rank, head layout,
    /// residual with a one-sided projection) is checked here.
    pub fn with_params(params: Vec<(String, Var)>, cfg: CrossLoreConfig) -> Result<Self> {
        let mut o = Self::new(cfg)?;
        o.register(params)?;
        Ok(o)
    }

    /// Registers (and validates) more named parameters.
    pub fn register(&mut self, params: Vec<(String, Var)>) -> Result<()> {
        for (name, var) in &params {
            self.new_state(name, var.dims())?;
        }
        self.params.extend(params);
        Ok(())
    }

    pub fn config(&self) -> &CrossLoreConfig {
        &self.cfg
    }

    /// Installs a hook called after each projector refresh ([`RefreshHook`]).
    pub fn set_refresh_hook(&mut self, hook: Option<RefreshHook>) {
        self.hook = hook;
    }

    pub fn projector(&self, name: &str) -> Option<&Projector> {
        self.states.get(name).and_then(|s| s.low.projector.as_ref())
    }

    /// `M'`, `V'` of `name`.
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        let s = &self.states.get(name)?.low;
        Some((s.exp_avg.as_ref()?, s.exp_avg_sq.as_ref()?))
    }

    /// The sparse residual of `name` (after warm-up).
    pub fn residual(&self, name: &str) -> Option<&SparseResidual> {
        self.states.get(name)?.residual.as_ref()?.sparse()
    }

    /// Heads drawn at the last cross-head refresh of `name` (empty if not cross-head).
    pub fn heads(&self, name: &str) -> Option<&[usize]> {
        self.states.get(name).map(|s| s.heads.as_slice())
    }

    pub fn head_layout(&self, name: &str) -> Option<HeadLayout> {
        self.states.get(name)?.layout
    }

    fn new_state(&self, name: &str, dims: &[usize]) -> Result<CrossState> {
        let low = LowRankState::new(
            self.groups.resolve(name, dims)?,
            self.cfg.galore.weight_decay,
        );
        let (layout, residual) = match &low.projection {
            None => (None, None),
            Some(s) => {
                let ch = &self.cfg.cross_head;
                let layout = match ch.overrides.get(name) {
                    Some(l) => Some(*l),
                    None => match ch.heads {
                        Some(h) => {
                            infer_layout_with(name, &ch.targets, h.n_heads, h.n_kv_heads, h.d_head)
                        }
                        None if infer_layout_with(name, &ch.targets, 1, 1, 1).is_some() => {
                            return Err(OptimError::Config {
                                param: name.to_string(),
                                msg: "a cross-head target, but the model's n_heads / n_kv_heads / \
                                      d_head are not set (cross_head.heads) and no override \
                                      names it"
                                    .into(),
                            })
                        }
                        None => None,
                    },
                };
                if let Some(l) = layout {
                    if l.n_heads * l.d_head != dims[0] || l.d_head == 0 {
                        return Err(OptimError::Config {
                            param: name.to_string(),
                            msg: format!(
                                "head layout {} x {} does not match the {} rows of {dims:?}",
                                l.n_heads, l.d_head, dims[0]
                            ),
                        });
                    }
                }
                let residual = if self.cfg.residual.ratio > 0.0
                    && self.residual_targets.iter().any(|re| re.is_match(name))
                {
                    let two_sided = layout.is_none()
                        && s.proj_type.side_for(dims[0], dims[1]) == ProjSide::Both;
                    self.cfg.residual.check_projection(name, two_sided)?;
                    Some(ResidualState::new(&self.cfg.residual, s.update_proj_gap)?)
                } else {
                    None
                };
                (layout, residual)
            }
        };
        Ok(CrossState {
            low,
            rng: Rng::derive(self.cfg.seed, name_stream(name)),
            layout,
            heads: Vec::new(),
            residual,
        })
    }

    /// A new projector for `g` by RSI (cross-head for head-structured targets).
    fn refresh(&self, st: &mut CrossState, g: &Tensor) -> Result<Projector> {
        let s = st.low.projection.clone().ok_or_else(|| OptimError::State {
            msg: "refresh of an unprojected parameter".into(),
        })?;
        let warm = self.warm_started(st);
        let rsi = self.rsi_cfg(warm);
        let old = st.low.projector.as_ref().filter(|_| warm);
        if let Some(layout) = &st.layout {
            let warm = old.and_then(|p| p.right());
            let (p, heads) = cross_head_projector(g, layout, s.rank, &rsi, &mut st.rng, warm)?;
            st.heads = heads;
            return Projector::one_sided(Side::Right, p);
        }
        let (m, n) = g.dims2()?;
        let side = s.proj_type.side_for(m, n);
        let left = match side {
            ProjSide::Left | ProjSide::Both => {
                let warm = old.and_then(|p| p.left());
                Some(rsi_subspace(
                    g,
                    s.rank,
                    Side::Left,
                    &rsi,
                    &mut st.rng,
                    warm,
                )?)
            }
            ProjSide::Right => None,
        };
        let right = match side {
            ProjSide::Right | ProjSide::Both => {
                let warm = old.and_then(|p| p.right());
                Some(rsi_subspace(
                    g,
                    s.rank,
                    Side::Right,
                    &rsi,
                    &mut st.rng,
                    warm,
                )?)
            }
            ProjSide::Left => None,
        };
        Projector::from_parts(side, left, right)
    }

    /// The state of `name` to step from (a clone: the stored one is replaced only at commit).
    fn state_for(&self, name: &str, var: &Var) -> Result<CrossState> {
        match self.states.get(name) {
            Some(s) => Ok(s.clone()),
            None => self.new_state(name, var.dims()),
        }
    }

    /// Runs the refresh hook (if any) on a new projector of `name` and checks its shape.
    fn hooked(&mut self, name: &str, step: u64, g: &Tensor, mut p: Projector) -> Result<Projector> {
        if let Some(hook) = self.hook.as_mut() {
            hook(name, step, &mut p)?;
            let (m, n) = g.dims2()?;
            p.check_fits(name, m, n)?;
        }
        Ok(p)
    }

    /// Whether a refresh of `st` is warm-started from its current projector.
    fn warm_started(&self, st: &CrossState) -> bool {
        self.cfg.warm_start && st.low.projector.is_some()
    }

    /// The RSI settings of a cold or a warm-started refresh (fewer power iterations).
    fn rsi_cfg(&self, warm: bool) -> RsiConfig {
        if warm {
            RsiConfig {
                power_iters: self.cfg.warm_start_power_iters,
                ..self.cfg.rsi.clone()
            }
        } else {
            self.cfg.rsi.clone()
        }
    }

    /// New projectors for every `sts[i]` that needs a refresh (`None` for the others), equal to
    /// [`Self::refresh`] on each in turn: the one-sided RSI refreshes (all but the cross-head
    /// targets and two-sided projections) go through ONE [`rsi_many`] call per RSI setting, which
    /// on CUDA queues all matrices' device work before their synchronisations and runs the small
    /// host SVDs in parallel; each parameter keeps its own generator, so the draws are the same.
    fn refresh_many(
        &mut self,
        names: &[&str],
        sts: &mut [CrossState],
        gs: &[Tensor],
    ) -> Result<Vec<Option<Projector>>> {
        let mut out: Vec<Option<Projector>> = (0..sts.len()).map(|_| None).collect();
        // (index, rank, side) of the batched refreshes, per RSI setting (cold, warm).
        let mut batch: [Vec<(usize, usize, Side)>; 2] = [Vec::new(), Vec::new()];
        for (i, st) in sts.iter_mut().enumerate() {
            if !st.low.needs_refresh() {
                continue;
            }
            let Some(s) = st.low.projection.clone() else {
                continue;
            };
            let (m, n) = gs[i].dims2()?;
            let side = match s.proj_type.side_for(m, n) {
                ProjSide::Left => Some(Side::Left),
                ProjSide::Right => Some(Side::Right),
                ProjSide::Both => None,
            };
            match (side, st.layout.is_some()) {
                (Some(side), false) => {
                    batch[usize::from(self.warm_started(st))].push((i, s.rank, side));
                }
                _ => {
                    let p = self.refresh(st, &gs[i].to_dtype(DType::F32)?)?;
                    out[i] = Some(p);
                }
            }
        }
        for (warm, jobs_ix) in batch.iter().enumerate() {
            if jobs_ix.is_empty() {
                continue;
            }
            let cfg = self.rsi_cfg(warm == 1);
            let warms: Vec<Option<Tensor>> = jobs_ix
                .iter()
                .map(|&(i, _, side)| {
                    let old = sts[i].low.projector.as_ref().filter(|_| warm == 1);
                    match side {
                        Side::Left => old.and_then(|p| p.left()).cloned(),
                        Side::Right => old.and_then(|p| p.right()).cloned(),
                    }
                })
                .collect();
            let jobs: Vec<RsiJob<'_>> = jobs_ix
                .iter()
                .zip(&warms)
                .map(|(&(i, rank, side), w)| (&gs[i], rank, side, w.as_ref()))
                .collect();
            let mut rngs: Vec<Rng> = jobs_ix
                .iter()
                .map(|&(i, _, _)| sts[i].rng.clone())
                .collect();
            let ps = rsi_many(&jobs, &cfg, &mut rngs)?;
            for ((&(i, _, side), p), rng) in jobs_ix.iter().zip(ps).zip(rngs) {
                sts[i].rng = rng;
                out[i] = Some(Projector::one_sided(side, p)?);
            }
        }
        for (i, p) in out.iter_mut().enumerate() {
            if let Some(pr) = p.take() {
                *p = Some(self.hooked(names[i], sts[i].low.step, &gs[i], pr)?);
            }
        }
        Ok(out)
    }

    /// The rest of a step after the refresh: low-rank Adam, residual, commit (module docs).
    fn finish_step(
        &mut self,
        name: &str,
        var: &Var,
        g: &Tensor,
        mut st: CrossState,
        new_proj: Option<Projector>,
    ) -> Result<StepInfo> {
        let gc = &self.cfg.galore;
        let adv = st
            .low
            .advance(name, g, new_proj, &gc.hyper(), gc.reproject_moments)?;
        let mut residual_delta = None;
        if let (Some(res), Some(p), Some(s)) = (
            st.residual.as_mut(),
            &adv.state.projector,
            &adv.state.projection,
        ) {
            let (side, pf) = match (p.side(), p.left(), p.right()) {
                (ProjSide::Left, Some(l), _) => (Side::Left, l),
                (ProjSide::Right, _, Some(r)) => (Side::Right, r),
                _ => {
                    return Err(OptimError::Config {
                        param: name.to_string(),
                        msg: "the sparse residual needs a one-sided projection".into(),
                    })
                }
            };
            let (m, v) = match (&adv.state.exp_avg, &adv.state.exp_avg_sq) {
                (Some(m), Some(v)) => (m, v),
                _ => {
                    return Err(OptimError::State {
                        msg: "moments missing after a step".into(),
                    })
                }
            };
            let lr = LowRank {
                side,
                p: pf,
                r: &adv.r,
                m,
                v,
            };
            let h = AdamHyper {
                beta1: gc.beta1,
                beta2: gc.beta2,
                eps: gc.eps,
                t: adv.state.step,
            };
            if let Some(delta) = res.step(g, &lr, &h, adv.refreshed)? {
                // W[L] -= lr * scale * delta, applied by the commit before the weight decay
                residual_delta = Some((delta, gc.lr * s.scale));
            }
        }
        let residual_applied = residual_delta.is_some();
        let info = StepInfo {
            step: adv.state.step,
            projected: adv.state.projection.is_some(),
            refreshed: adv.refreshed,
            refresh_residual: match (&adv.state.projector, adv.refreshed) {
                (Some(p), true) => Some(p.residual(&g.to_dtype(DType::F32)?)?),
                _ => None,
            },
            residual_applied,
        };
        // commit last: every fallible computation is done
        let residual = match (st.residual.as_ref(), &residual_delta) {
            (Some(res), Some((delta, coef))) => Some((res, delta, *coef)),
            _ => None,
        };
        adv.commit(var, gc.lr, residual)?;
        st.low = adv.state;
        self.shapes.insert(name.to_string(), var.dims().to_vec());
        self.states.insert(name.to_string(), st);
        Ok(info)
    }
}

impl ParamOptimizer for CrossLoreAdamW {
    fn step_param(&mut self, name: &str, var: &Var, grad: &Tensor) -> Result<StepInfo> {
        let g = check_grad_raw(name, var, grad)?;
        let mut st = self.state_for(name, var)?;
        let new_proj = if st.low.needs_refresh() {
            let p = self.refresh(&mut st, &g.to_dtype(DType::F32)?)?;
            Some(self.hooked(name, st.low.step, &g, p)?)
        } else {
            None
        };
        self.finish_step(name, var, &g, st, new_proj)
    }

    /// Batched: one finiteness synchronisation for all gradients on CUDA (a NaN/Inf gradient
    /// leaves every parameter untouched), the refreshes through [`Self::refresh_many`], then each
    /// parameter's low-rank step and commit in order. Same results as the loop of
    /// [`Self::step_param`] (the CPU path is bit-identical: same generators, same products).
    fn step_params(&mut self, items: &[(&str, &Var, &Tensor)]) -> Result<Vec<StepInfo>> {
        let gs = check_grads_raw(items)?;
        let mut sts = items
            .iter()
            .map(|&(name, var, _)| self.state_for(name, var))
            .collect::<Result<Vec<_>>>()?;
        let names: Vec<&str> = items.iter().map(|i| i.0).collect();
        let projs = self.refresh_many(&names, &mut sts, &gs)?;
        let mut infos = Vec::with_capacity(items.len());
        for (((&(name, var, _), g), st), p) in items.iter().zip(&gs).zip(sts).zip(projs) {
            infos.push(self.finish_step(name, var, g, st, p)?);
        }
        Ok(infos)
    }

    fn state_bytes(&self) -> StateBytes {
        StateBytes::from_per_param(
            self.states
                .iter()
                .map(|(k, s)| {
                    let res = s.residual.as_ref().map_or(0, ResidualState::state_bytes);
                    (k.clone(), s.low.bytes() + res)
                })
                .collect(),
        )
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        let mut params = BTreeMap::new();
        for (name, s) in &self.states {
            s.low.to_tensors(name, &mut tensors);
            let sparse = s.residual.as_ref().and_then(|r| r.sparse());
            if let Some(sp) = sparse {
                tensors.extend(sp.to_tensors(&format!("{name}/")));
            }
            let shape = self.shapes.get(name).cloned().unwrap_or_default();
            params.insert(
                name.clone(),
                CrossParamMeta {
                    low_rank: s.low.meta(shape),
                    rng: s.rng.clone(),
                    layout: s.layout,
                    heads: s.heads.clone(),
                    residual: sparse.is_some(),
                },
            );
        }
        let meta = SavedMeta {
            format_version: state::FORMAT_VERSION,
            kind: OptimizerKind::CrossLore,
            config: self.cfg.clone(),
            params,
        };
        state::write_state(dir, tensors, &meta)
    }

    fn load(dir: &Path, device: &Device) -> Result<Self> {
        let (mut tensors, meta) = state::read_state::<CrossLoreConfig, CrossParamMeta>(
            dir,
            device,
            OptimizerKind::CrossLore,
        )?;
        let mut o = Self::new(meta.config)?;
        for (name, p) in meta.params {
            let low = LowRankState::from_saved(&name, &p.low_rank, &mut tensors)?;
            let residual = match &low.projection {
                Some(s)
                    if o.cfg.residual.ratio > 0.0
                        && o.residual_targets.iter().any(|re| re.is_match(&name)) =>
                {
                    let mut r = ResidualState::new(&o.cfg.residual, s.update_proj_gap)?;
                    if p.residual {
                        let (rows, cols) = match p.low_rank.shape.as_slice() {
                            &[m, n] => (m, n),
                            other => {
                                return Err(OptimError::State {
                                    msg: format!(
                                    "`{name}`: residual state for a parameter of shape {other:?}"
                                ),
                                })
                            }
                        };
                        let sp = SparseResidual::from_tensors(
                            &tensors,
                            &format!("{name}/"),
                            rows,
                            cols,
                            device,
                        )?
                        .ok_or_else(|| OptimError::State {
                            msg: format!("`{name}`: residual tensors missing"),
                        })?;
                        r.set_sparse(Some(sp));
                    }
                    Some(r)
                }
                _ => None,
            };
            o.shapes.insert(name.clone(), p.low_rank.shape.clone());
            o.states.insert(
                name,
                CrossState {
                    low,
                    rng: p.rng,
                    layout: p.layout,
                    heads: p.heads,
                    residual,
                },
            );
        }
        Ok(o)
    }

    fn lr(&self) -> f64 {
        self.cfg.galore.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.cfg.galore.lr = lr;
    }

    fn projection_residual(&self, name: &str, grad: &Tensor) -> Result<Option<f32>> {
        match self.projector(name) {
            Some(p) => Ok(Some(p.residual(grad)?)),
            None => Ok(None),
        }
    }
}

crate::impl_candle_optimizer!(CrossLoreAdamW, CrossLoreConfig);
