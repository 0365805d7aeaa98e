//! GaLore AdamW exactly as `galore_torch.GaLoreAdamW` 1.0 (paper Alg. 1; DESIGN.md §1.1).
//!
//! Per projected parameter `W: [m, n]` with gradient `G`, `t` counted before the increment:
//! - refresh when no projector exists or `t % update_proj_gap == 0`: exact SVD of `G`
//!   ([`Projector::exact`]); the moments are kept as they are (galore-torch), or re-projected
//!   into the new basis with [`GaLoreConfig::reproject_moments`] (off by default);
//! - `R = project(G)`; `t += 1`; `M' = b1 M' + (1-b1) R`; `V' = b2 V' + (1-b2) R*R`;
//!   `N = M' / (sqrt(V') + eps)`; `step_size = lr * sqrt(1-b2^t) / (1-b1^t)`;
//!   `W -= step_size * (scale * project_back(N))`; then `W -= lr * wd * W` (decoupled weight
//!   decay on the already updated `W`, galore-torch's order).
//!
//! Unprojected parameters (embeddings, norms, head) take the same formula with `R = G` and no
//! scale (transformers-style AdamW, which differs from [`crate::adamw::AdamW`] in where eps and
//! the bias correction enter and in the weight-decay order).
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::adamw::validate_hyper;
use crate::error::{OptimError, Result};
use crate::groups::{default_rules, GroupRule, ParamGroups, ProjSettings, Resolved};
use crate::projector::{ProjSide, Projector};
use crate::residual::ResidualState;
use crate::state::{self, OptimizerKind, SavedMeta};
use crate::{check_grad_raw, commit_weight, step_all_checked, tensor_bytes};
use crate::{ParamOptimizer, RefreshHook, StateBytes, StepInfo};

/// Configuration of [`GaLoreAdamW`]; defaults are galore-torch's / transformers' (lr 1e-3,
/// betas (0.9, 0.999), eps 1e-6, weight decay 0) with the LLaMA linear layers projected at rank
/// 128, gap 200, scale 0.25, proj type `std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GaLoreConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Parameter groups, first match wins ([`crate::groups`]).
    pub groups: Vec<GroupRule>,
    /// On refresh, express the moments in the new basis (`M' <- M' P_old^T P_new` for the right
    /// side; [`Projector::reproject_moments`]) instead of keeping them (galore-torch). Off by
    /// default.
    #[serde(default)]
    pub reproject_moments: bool,
}

impl Default for GaLoreConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: 0.0,
            groups: default_rules(ProjSettings::default()),
            reproject_moments: false,
        }
    }
}

impl GaLoreConfig {
    pub fn validate(&self) -> Result<()> {
        validate_hyper(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)
    }

    pub(crate) fn hyper(&self) -> Hyper {
        Hyper {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
        }
    }
}

/// Adam hyper-parameters of one step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

/// Per-parameter state of the low-rank Adam in galore-torch's form; shared by GaLore and
/// CrossLore.
#[derive(Debug, Clone)]
pub(crate) struct LowRankState {
    /// Steps taken (galore-torch's `state["step"]`).
    pub step: u64,
    /// `Some` for a projected parameter.
    pub projection: Option<ProjSettings>,
    pub weight_decay: f64,
    pub projector: Option<Projector>,
    /// `M'` (projected shape), created at the first step.
    pub exp_avg: Option<Tensor>,
    /// `V'`.
    pub exp_avg_sq: Option<Tensor>,
}

/// The low-rank Adam part of one step, computed but not committed.
pub(crate) struct Advanced {
    /// The state after the step.
    pub state: LowRankState,
    pub refreshed: bool,
    /// `R` (the gradient itself when unprojected).
    pub r: Tensor,
    /// The normalized low-rank direction `N = M' / (sqrt(V') + eps)` (projected shape).
    pub n: Tensor,
    /// `lr * sqrt(1 - b2^t) / (1 - b1^t)`.
    pub step_size: f64,
}

impl Advanced {
    /// `step_size * scale * project_back(N)` (dense f32), or `step_size * N` when unprojected.
    pub fn dense_update(&self) -> Result<Tensor> {
        let upd = match (&self.state.projector, &self.state.projection) {
            (Some(p), Some(s)) => p.project_back(&self.n)?.affine(s.scale, 0.0)?,
            _ => self.n.clone(),
        };
        Ok(upd.affine(self.step_size, 0.0)?)
    }

    /// Writes the step into `var`: `W <- decay(W - dense_update)`, with the sparse residual
    /// `W[L] -= coef * delta` applied before the weight decay when given (`lr`: for the decay
    /// `1 - lr * weight_decay`). On CUDA a fused path (`crate::fused`) avoids the dense f32
    /// temporaries. Call last: every fallible computation of the step must be done.
    pub fn commit(
        &self,
        var: &Var,
        lr: f64,
        residual: Option<(&ResidualState, &Tensor, f64)>,
    ) -> Result<()> {
        #[cfg(feature = "cuda")]
        if crate::fused::commit_lowrank(var, self, lr, residual)? {
            return Ok(());
        }
        let w = var.as_tensor().to_dtype(DType::F32)?;
        let w = (w - self.dense_update()?)?;
        if let Some((res, delta, coef)) = residual {
            res.apply(&w, delta, coef)?;
        }
        let w = decay_after(w, lr, self.state.weight_decay)?;
        commit_weight(var, &w)
    }
}

/// `M' = b1 M' + (1-b1) R`, `V' = b2 V' + (1-b2) R^2`, `N = M' / (sqrt(V') + eps)` (new
/// tensors). On CUDA one fused kernel (`crosslore_linalg::kernels::lowrank_adam`) instead of ten
/// candle ops: this step is launch-bound at the 7B shapes (docs/BENCHMARKS.md, P2).
fn lowrank_moments(
    r: &Tensor,
    m: &Tensor,
    v: &Tensor,
    h: &Hyper,
) -> Result<(Tensor, Tensor, Tensor)> {
    #[cfg(feature = "cuda")]
    if r.device().is_cuda()
        && [r, m, v]
            .iter()
            .all(|t| t.dtype() == DType::F32 && t.is_contiguous())
    {
        return Ok(crosslore_linalg::kernels::lowrank_adam(
            r,
            m,
            v,
            h.beta1 as f32,
            h.beta2 as f32,
            h.eps as f32,
        )?);
    }
    let m = (m.affine(h.beta1, 0.0)? + r.affine(1.0 - h.beta1, 0.0)?)?;
    let v = (v.affine(h.beta2, 0.0)? + r.sqr()?.affine(1.0 - h.beta2, 0.0)?)?;
    let n = m.div(&v.sqrt()?.affine(1.0, h.eps)?)?;
    Ok((m, v, n))
}

/// The JSON part of a [`LowRankState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LowRankMeta {
    pub step: u64,
    /// Parameter shape.
    pub shape: Vec<usize>,
    pub projection: Option<ProjSettings>,
    pub weight_decay: f64,
    pub side: Option<ProjSide>,
    /// Shape of `M'`/`V'` (absent before the first step).
    pub moment_shape: Option<Vec<usize>>,
}

impl LowRankState {
    pub fn new(resolved: Resolved, default_wd: f64) -> Self {
        Self {
            step: 0,
            weight_decay: resolved.weight_decay.unwrap_or(default_wd),
            projection: resolved.projection,
            projector: None,
            exp_avg: None,
            exp_avg_sq: None,
        }
    }

    /// galore-torch's refresh rule: projected, and no projector yet or `step % gap == 0`.
    pub fn needs_refresh(&self) -> bool {
        match &self.projection {
            Some(s) => {
                self.projector.is_none() || self.step.is_multiple_of(s.update_proj_gap as u64)
            }
            None => false,
        }
    }

    /// One step of the low-rank Adam (module docs) given the gradient `g` and, when
    /// [`Self::needs_refresh`], the new projector. Pure: `self` is not modified; the weight
    /// update is applied by [`Advanced::commit`].
    pub fn advance(
        &self,
        name: &str,
        g: &Tensor,
        new_proj: Option<Projector>,
        h: &Hyper,
        reproject: bool,
    ) -> Result<Advanced> {
        let mut st = self.clone();
        let refreshed = new_proj.is_some();
        if let Some(p) = new_proj {
            if let (true, Some(old), Some(m), Some(v)) =
                (reproject, &st.projector, &st.exp_avg, &st.exp_avg_sq)
            {
                let (m, v) = old.reproject_moments(&p, m, v)?;
                st.exp_avg = Some(m);
                st.exp_avg_sq = Some(v);
            }
            st.projector = Some(p);
        }
        let r = match &st.projector {
            Some(p) => p.project(g)?,
            None => g.to_dtype(DType::F32)?,
        };
        let (m, v) = match (&st.exp_avg, &st.exp_avg_sq) {
            (Some(m), Some(v)) => (m.clone(), v.clone()),
            _ => (r.zeros_like()?, r.zeros_like()?),
        };
        if m.dims() != r.dims() {
            return Err(OptimError::Shape {
                param: name.to_string(),
                expected: format!("projected gradient of the moments' shape {:?}", m.dims()),
                got: format!("{:?}", r.dims()),
            });
        }
        st.step += 1;
        let t = st.step as i32;
        let step_size = h.lr * (1.0 - h.beta2.powi(t)).sqrt() / (1.0 - h.beta1.powi(t));
        let (m, v, n) = lowrank_moments(&r, &m, &v, h)?;
        st.exp_avg = Some(m);
        st.exp_avg_sq = Some(v);
        Ok(Advanced {
            state: st,
            refreshed,
            r,
            n,
            step_size,
        })
    }

    /// Exact bytes of the moments and projector factors.
    pub fn bytes(&self) -> usize {
        self.exp_avg
            .iter()
            .chain(self.exp_avg_sq.iter())
            .map(tensor_bytes)
            .sum::<usize>()
            + self.projector.as_ref().map_or(0, Projector::bytes)
    }

    pub fn to_tensors(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        if let (Some(m), Some(v)) = (&self.exp_avg, &self.exp_avg_sq) {
            out.push((format!("{name}/exp_avg"), m.clone()));
            out.push((format!("{name}/exp_avg_sq"), v.clone()));
        }
        if let Some(p) = &self.projector {
            if let Some(l) = p.left() {
                out.push((format!("{name}/proj_left"), l.clone()));
            }
            if let Some(r) = p.right() {
                out.push((format!("{name}/proj_right"), r.clone()));
            }
        }
    }

    pub fn meta(&self, shape: Vec<usize>) -> LowRankMeta {
        LowRankMeta {
            step: self.step,
            shape,
            projection: self.projection.clone(),
            weight_decay: self.weight_decay,
            side: self.projector.as_ref().map(Projector::side),
            moment_shape: self.exp_avg.as_ref().map(|m| m.dims().to_vec()),
        }
    }

    pub fn from_saved(
        name: &str,
        meta: &LowRankMeta,
        tensors: &mut HashMap<String, Tensor>,
    ) -> Result<Self> {
        let (exp_avg, exp_avg_sq) = match &meta.moment_shape {
            Some(s) => (
                Some(state::take(tensors, &format!("{name}/exp_avg"), Some(s))?),
                Some(state::take(
                    tensors,
                    &format!("{name}/exp_avg_sq"),
                    Some(s),
                )?),
            ),
            None => (None, None),
        };
        let projector = match meta.side {
            Some(side) => {
                let left = state::take_opt(tensors, &format!("{name}/proj_left"));
                let right = state::take_opt(tensors, &format!("{name}/proj_right"));
                let p = Projector::from_parts(side, left, right)?;
                if let &[m, n] = meta.shape.as_slice() {
                    p.check_fits(name, m, n)?;
                }
                Some(p)
            }
            None => None,
        };
        Ok(Self {
            step: meta.step,
            projection: meta.projection.clone(),
            weight_decay: meta.weight_decay,
            projector,
            exp_avg,
            exp_avg_sq,
        })
    }
}

/// Decoupled weight decay after the update, galore-torch's order: `W -= lr * wd * W`.
pub(crate) fn decay_after(w: Tensor, lr: f64, wd: f64) -> Result<Tensor> {
    if wd > 0.0 {
        Ok(w.affine(1.0 - lr * wd, 0.0)?)
    } else {
        Ok(w)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GaLoreParamMeta {
    #[serde(flatten)]
    low_rank: LowRankMeta,
}

/// `galore_torch.GaLoreAdamW` 1.0.
pub struct GaLoreAdamW {
    cfg: GaLoreConfig,
    groups: ParamGroups,
    params: Vec<(String, Var)>,
    states: BTreeMap<String, LowRankState>,
    shapes: BTreeMap<String, Vec<usize>>,
    hook: Option<RefreshHook>,
}

impl GaLoreAdamW {
    /// An optimizer with no registered parameters (use [`ParamOptimizer::step_param`]; the
    /// rank of a parameter is checked at its first step).
    pub fn new(cfg: GaLoreConfig) -> Result<Self> {
        cfg.validate()?;
        let groups = ParamGroups::new(cfg.groups.clone())?;
        Ok(Self {
            cfg,
            groups,
            params: Vec::new(),
            states: BTreeMap::new(),
            shapes: BTreeMap::new(),
            hook: None,
        })
    }

    /// An optimizer over named parameters; ranks are checked here (a rank above `min(m, n)` is a
    /// [`OptimError::Config`] naming the parameter).
    pub fn with_params(params: Vec<(String, Var)>, cfg: GaLoreConfig) -> Result<Self> {
        let mut o = Self::new(cfg)?;
        o.register(params)?;
        Ok(o)
    }

    /// Registers (and validates) more named parameters.
    pub fn register(&mut self, params: Vec<(String, Var)>) -> Result<()> {
        for (name, var) in &params {
            self.groups.resolve(name, var.dims())?;
        }
        self.params.extend(params);
        Ok(())
    }

    pub fn config(&self) -> &GaLoreConfig {
        &self.cfg
    }

    /// Installs a hook called after each projector refresh ([`RefreshHook`]; test hook).
    pub fn set_refresh_hook(&mut self, hook: Option<RefreshHook>) {
        self.hook = hook;
    }

    /// Current projector of `name`.
    pub fn projector(&self, name: &str) -> Option<&Projector> {
        self.states.get(name).and_then(|s| s.projector.as_ref())
    }

    /// `M'`, `V'` of `name` (projected shape for projected parameters).
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        let s = self.states.get(name)?;
        Some((s.exp_avg.as_ref()?, s.exp_avg_sq.as_ref()?))
    }

    /// Steps taken by `name`.
    pub fn step_count(&self, name: &str) -> Option<u64> {
        self.states.get(name).map(|s| s.step)
    }
}

impl GaLoreAdamW {
    /// One step of `name` with its checked, detached gradient `g` (see [`check_grad_raw`]).
    fn step_checked(&mut self, name: &str, var: &Var, g: Tensor) -> Result<StepInfo> {
        let st = match self.states.get(name) {
            Some(s) => s.clone(),
            None => LowRankState::new(
                self.groups.resolve(name, var.dims())?,
                self.cfg.weight_decay,
            ),
        };
        let new_proj = match (&st.projection, st.needs_refresh()) {
            (Some(s), true) => {
                let (m, n) = g.dims2()?;
                let g32 = g.to_dtype(DType::F32)?;
                let mut p = Projector::exact(&g32, s.rank, s.proj_type.side_for(m, n))?;
                if let Some(hook) = self.hook.as_mut() {
                    hook(name, st.step, &mut p)?;
                    p.check_fits(name, m, n)?;
                }
                Some(p)
            }
            _ => None,
        };
        let adv = st.advance(
            name,
            &g,
            new_proj,
            &self.cfg.hyper(),
            self.cfg.reproject_moments,
        )?;
        let info = StepInfo {
            step: adv.state.step,
            projected: adv.state.projection.is_some(),
            refreshed: adv.refreshed,
            refresh_residual: match (&adv.state.projector, adv.refreshed) {
                (Some(p), true) => Some(p.residual(&g.to_dtype(DType::F32)?)?),
                _ => None,
            },
            residual_applied: false,
        };
        // commit last: every fallible computation is done
        adv.commit(var, self.cfg.lr, None)?;
        self.shapes.insert(name.to_string(), var.dims().to_vec());
        self.states.insert(name.to_string(), adv.state);
        Ok(info)
    }
}

impl ParamOptimizer for GaLoreAdamW {
    fn step_param(&mut self, name: &str, var: &Var, grad: &Tensor) -> Result<StepInfo> {
        let g = check_grad_raw(name, var, grad)?;
        self.step_checked(name, var, g)
    }

    /// Batched: every gradient checked first (one finiteness synchronisation on CUDA), then each
    /// step ([`step_all_checked`]; the exact SVD refreshes stay one at a time).
    fn step_params(&mut self, items: &[(&str, &Var, &Tensor)]) -> Result<Vec<StepInfo>> {
        step_all_checked(items, |name, var, g| self.step_checked(name, var, g))
    }

    fn state_bytes(&self) -> StateBytes {
        StateBytes::from_per_param(
            self.states
                .iter()
                .map(|(k, s)| (k.clone(), s.bytes()))
                .collect(),
        )
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        let mut params = BTreeMap::new();
        for (name, s) in &self.states {
            s.to_tensors(name, &mut tensors);
            let shape = self.shapes.get(name).cloned().unwrap_or_default();
            params.insert(
                name.clone(),
                GaLoreParamMeta {
                    low_rank: s.meta(shape),
                },
            );
        }
        let meta = SavedMeta {
            format_version: state::FORMAT_VERSION,
            kind: OptimizerKind::GaLore,
            config: self.cfg.clone(),
            params,
        };
        state::write_state(dir, tensors, &meta)
    }

    fn load(dir: &Path, device: &Device) -> Result<Self> {
        let (mut tensors, meta) =
            state::read_state::<GaLoreConfig, GaLoreParamMeta>(dir, device, OptimizerKind::GaLore)?;
        let mut o = Self::new(meta.config)?;
        for (name, p) in meta.params {
            let st = LowRankState::from_saved(&name, &p.low_rank, &mut tensors)?;
            o.shapes.insert(name.clone(), p.low_rank.shape.clone());
            o.states.insert(name, st);
        }
        Ok(o)
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn projection_residual(&self, name: &str, grad: &Tensor) -> Result<Option<f32>> {
        match self.projector(name) {
            Some(p) => Ok(Some(p.residual(grad)?)),
            None => Ok(None),
        }
    }
}

crate::impl_candle_optimizer!(GaLoreAdamW, GaLoreConfig);
