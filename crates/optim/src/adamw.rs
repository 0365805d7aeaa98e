//! AdamW exactly as `torch.optim.AdamW` (Loshchilov & Hutter 2019; single-tensor path):
//! `W *= 1 - lr*wd`; `M = lerp(M, G, 1-b1)`; `V = b2 V + (1-b2) G*G`;
//! `W -= lr/(1-b1^t) * M / (sqrt(V)/sqrt(1-b2^t) + eps)`.
//! Note the differences from galore-torch's form ([`crate::galore`]): weight decay first, eps
//! added after the bias correction of `sqrt(V)`.
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{OptimError, Result};
use crate::state::{self, OptimizerKind, SavedMeta};
use crate::{check_grad_raw, commit_weight, step_all_checked, tensor_bytes};
use crate::{ParamOptimizer, StateBytes, StepInfo};

/// Hyper-parameters; defaults are `torch.optim.AdamW`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

impl AdamWConfig {
    /// Checks ranges as torch does (lr >= 0, betas in [0, 1), eps >= 0, all finite).
    pub fn validate(&self) -> Result<()> {
        validate_hyper(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)
    }
}

/// Range checks shared by all optimizers.
pub(crate) fn validate_hyper(lr: f64, b1: f64, b2: f64, eps: f64, wd: f64) -> Result<()> {
    let bad = |field: &str, msg: String| OptimError::Config {
        param: field.to_string(),
        msg,
    };
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(bad("lr", format!("expected a finite value >= 0, got {lr}")));
    }
    for (f, b) in [("beta1", b1), ("beta2", b2)] {
        if !(0.0..1.0).contains(&b) {
            return Err(bad(f, format!("expected a value in [0, 1), got {b}")));
        }
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(bad(
            "eps",
            format!("expected a finite value >= 0, got {eps}"),
        ));
    }
    if !wd.is_finite() {
        return Err(bad(
            "weight_decay",
            format!("expected a finite value, got {wd}"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct AdamWState {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AdamWParamMeta {
    step: u64,
    shape: Vec<usize>,
}

/// `torch.optim.AdamW`.
pub struct AdamW {
    cfg: AdamWConfig,
    params: Vec<(String, Var)>,
    states: BTreeMap<String, AdamWState>,
}

impl AdamW {
    /// An optimizer with no registered parameters (use [`ParamOptimizer::step_param`]).
    pub fn new(cfg: AdamWConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            params: Vec::new(),
            states: BTreeMap::new(),
        })
    }

    /// An optimizer over named parameters (for [`candle_nn::Optimizer::step`]).
    pub fn with_params(params: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let mut o = Self::new(cfg)?;
        o.params = params;
        Ok(o)
    }

    /// Registers more named parameters.
    pub fn register(&mut self, params: Vec<(String, Var)>) {
        self.params.extend(params);
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// Stores the state of `name` after its step `t` (moments `m`, `v`).
    fn record(&mut self, name: &str, t: u64, m: Tensor, v: Tensor) -> StepInfo {
        self.states.insert(
            name.to_string(),
            AdamWState {
                step: t,
                exp_avg: m,
                exp_avg_sq: v,
            },
        );
        StepInfo {
            step: t,
            ..Default::default()
        }
    }

    /// First and second moments of `name` (after its last step).
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        self.states.get(name).map(|s| (&s.exp_avg, &s.exp_avg_sq))
    }
}

#[cfg(feature = "cuda")]
impl AdamW {
    /// The fused CUDA step (`crosslore_linalg::kernels::adamw`: one pass over `W`, `G`, `M`, `V`,
    /// 22 bytes per bf16 element, plus a 2-byte finiteness pass over `G`), for a contiguous f32 or
    /// bf16 weight on CUDA with a gradient of the same dtype. `None`: not applicable, the caller
    /// runs the candle-op path (same formula; CPU twin checked by `crosslore-bench gpu-check`).
    /// `g`: the gradient as [`crate::check_grad_raw`] returns it (checked, detached).
    fn step_fused(&mut self, name: &str, var: &Var, g: &Tensor) -> Result<Option<StepInfo>> {
        use crosslore_linalg::kernels;
        let w = var.as_tensor();
        if !w.device().is_cuda()
            || !w.is_contiguous()
            || !g.is_contiguous()
            || g.dtype() != w.dtype()
            || !matches!(w.dtype(), DType::F32 | DType::BF16)
        {
            return Ok(None);
        }
        let (step, m, v) = match self.states.get(name) {
            Some(s) => (s.step, s.exp_avg.clone(), s.exp_avg_sq.clone()),
            None => {
                let z = || Tensor::zeros(g.dims(), DType::F32, g.device());
                (0, z()?, z()?)
            }
        };
        if m.dims() != g.dims() || m.dtype() != DType::F32 || !m.is_contiguous() {
            return Ok(None);
        }
        let c = &self.cfg;
        let t = step + 1;
        let bc1 = 1.0 - c.beta1.powi(t as i32);
        let bc2 = 1.0 - c.beta2.powi(t as i32);
        let s = kernels::AdamWScalars {
            decay: (1.0 - c.lr * c.weight_decay) as f32,
            beta1: c.beta1 as f32,
            beta2: c.beta2 as f32,
            step: (c.lr / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            eps: c.eps as f32,
        };
        kernels::adamw(w, g, &m, &v, &s)?;
        Ok(Some(self.record(name, t, m, v)))
    }
}

impl AdamW {
    /// The step of `name` with a gradient already checked by [`check_grad_raw`] (shape,
    /// finiteness; detached, f32 or bf16): the fused CUDA step where it applies, else the
    /// candle-op path in f32.
    fn step_checked(&mut self, name: &str, var: &Var, g: Tensor) -> Result<StepInfo> {
        #[cfg(feature = "cuda")]
        if let Some(info) = self.step_fused(name, var, &g)? {
            return Ok(info);
        }
        let g = g.to_dtype(DType::F32)?;
        let c = &self.cfg;
        let (step, m, v) = match self.states.get(name) {
            Some(s) => (s.step, s.exp_avg.clone(), s.exp_avg_sq.clone()),
            None => (0, g.zeros_like()?, g.zeros_like()?),
        };
        if m.dims() != g.dims() {
            return Err(OptimError::Shape {
                param: name.to_string(),
                expected: format!("gradient of the state's shape {:?}", m.dims()),
                got: format!("{:?}", g.dims()),
            });
        }
        let t = step + 1;
        let w = var.as_tensor().to_dtype(DType::F32)?;
        let w = w.affine(1.0 - c.lr * c.weight_decay, 0.0)?;
        let m = (&m + (&g - &m)?.affine(1.0 - c.beta1, 0.0)?)?; // lerp(M, G, 1-b1)
        let v = (v.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
        let bc1 = 1.0 - c.beta1.powi(t as i32);
        let bc2 = 1.0 - c.beta2.powi(t as i32);
        let denom = (v.sqrt()? / bc2.sqrt())?.affine(1.0, c.eps)?;
        let w = (w - m.div(&denom)?.affine(c.lr / bc1, 0.0)?)?;
        commit_weight(var, &w)?;
        Ok(self.record(name, t, m, v))
    }
}

impl ParamOptimizer for AdamW {
    fn step_param(&mut self, name: &str, var: &Var, grad: &Tensor) -> Result<StepInfo> {
        let g = check_grad_raw(name, var, grad)?;
        self.step_checked(name, var, g)
    }

    /// Batched: every gradient checked first (one finiteness synchronisation on CUDA; the loop
    /// synchronises once per parameter), then each step ([`step_all_checked`]).
    fn step_params(&mut self, items: &[(&str, &Var, &Tensor)]) -> Result<Vec<StepInfo>> {
        step_all_checked(items, |name, var, g| self.step_checked(name, var, g))
    }

    fn state_bytes(&self) -> StateBytes {
        StateBytes::from_per_param(
            self.states
                .iter()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        tensor_bytes(&s.exp_avg) + tensor_bytes(&s.exp_avg_sq),
                    )
                })
                .collect(),
        )
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        let mut params = BTreeMap::new();
        for (name, s) in &self.states {
            tensors.push((format!("{name}/exp_avg"), s.exp_avg.clone()));
            tensors.push((format!("{name}/exp_avg_sq"), s.exp_avg_sq.clone()));
            params.insert(
                name.clone(),
                AdamWParamMeta {
                    step: s.step,
                    shape: s.exp_avg.dims().to_vec(),
                },
            );
        }
        let meta = SavedMeta {
            format_version: state::FORMAT_VERSION,
            kind: OptimizerKind::AdamW,
            config: self.cfg.clone(),
            params,
        };
        state::write_state(dir, tensors, &meta)
    }

    fn load(dir: &Path, device: &Device) -> Result<Self> {
        let (mut tensors, meta) =
            state::read_state::<AdamWConfig, AdamWParamMeta>(dir, device, OptimizerKind::AdamW)?;
        let mut o = Self::new(meta.config)?;
        for (name, p) in meta.params {
            let exp_avg = state::take(&mut tensors, &format!("{name}/exp_avg"), Some(&p.shape))?;
            let exp_avg_sq =
                state::take(&mut tensors, &format!("{name}/exp_avg_sq"), Some(&p.shape))?;
            o.states.insert(
                name,
                AdamWState {
                    step: p.step,
                    exp_avg,
                    exp_avg_sq,
                },
            );
        }
        Ok(o)
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }
}

crate::impl_candle_optimizer!(AdamW, AdamWConfig);
