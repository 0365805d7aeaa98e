//! crosslore-optim: AdamW, GaLore and CrossLore optimizers with exact state save/load
//! (DESIGN.md §1, §2).
//!
//! - [`AdamW`](adamw::AdamW): `torch.optim.AdamW`.
//! - [`GaLoreAdamW`](galore::GaLoreAdamW): `galore_torch.GaLoreAdamW` 1.0 (paper Alg. 1 with
//!   exact SVD).
//! - [`CrossLoreAdamW`](crosslore::CrossLoreAdamW): GaLore + randomized subspace iteration +
//!   cross-head projection + sparsely coded residual (paper Sec. 4, Alg. 2; DESIGN.md §1.2).
//!
//! Every optimizer implements [`ParamOptimizer`] (one parameter at a time, for layerwise
//! training loops) and [`candle_nn::Optimizer`] (all registered parameters from a `GradStore`).
//! Optimizer state is f32 on the parameters' device; weights may be f32 or bf16 (updated in f32).

pub mod adamw;
pub mod cross_head;
pub mod crosslore;
pub mod error;
#[cfg(feature = "cuda")]
mod fused;
pub mod galore;
pub mod groups;
pub mod projector;
pub mod residual;
pub mod state;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

pub use adamw::{AdamW, AdamWConfig};
pub use crosslore::{CrossLoreAdamW, CrossLoreConfig};
pub use error::{OptimError, Result};
pub use galore::{GaLoreAdamW, GaLoreConfig};
pub use groups::{GroupRule, ProjSettings};
pub use projector::{ProjSide, ProjType, Projector};

/// What one [`ParamOptimizer::step_param`] did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepInfo {
    /// The parameter's step count after this step (1 after the first step).
    pub step: u64,
    /// The parameter is updated through a low-rank projection.
    pub projected: bool,
    /// The projector was (re)computed in this step.
    pub refreshed: bool,
    /// A sparse residual update was applied in this step (CrossLore after warm-up).
    pub residual_applied: bool,
    /// At a refresh: the new projector's relative residual on this step's gradient,
    /// `||G - P P^T G||_F / ||G||_F` (paper Fig. 2b; 0 for a zero gradient). Costs two thin
    /// products and one scalar transfer per refresh.
    pub refresh_residual: Option<f32>,
}

/// Exact optimizer-state bytes: the sum of the bytes of every stored state tensor (moments,
/// projector factors, residual index/values), per parameter and in total (DESIGN.md §1.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateBytes {
    pub per_param: BTreeMap<String, usize>,
    pub total: usize,
}

impl StateBytes {
    pub(crate) fn from_per_param(per_param: BTreeMap<String, usize>) -> Self {
        let total = per_param.values().sum();
        Self { per_param, total }
    }
}

/// A called back after every projector refresh, before the projector is used: test hook that
/// lets a golden test align the projector's column signs to a reference
/// ([`Projector::align_signs_to`]) or inject a projector. Arguments: parameter name, the step
/// count before increment (0 at the first refresh), the new projector.
pub type RefreshHook = Box<dyn FnMut(&str, u64, &mut Projector) -> Result<()> + Send>;

/// Per-parameter stepping, for training loops that update a layer as soon as its gradients exist.
pub trait ParamOptimizer {
    /// One optimizer step of parameter `name` (`var`) with gradient `grad` (same shape). State
    /// is created on the first call. On any error (NaN/Inf gradient, shape, config) the weight
    /// and the state are left untouched.
    fn step_param(&mut self, name: &str, var: &Var, grad: &Tensor) -> Result<StepInfo>;

    /// Exact state bytes per parameter and in total.
    fn state_bytes(&self) -> StateBytes;

    /// Saves the configuration and the whole state to `dir` (created if missing):
    /// `optimizer.safetensors` (tensors) + `optimizer.json` (config, steps, sides, RNG states),
    /// each written atomically (temp file + rename).
    fn save(&self, dir: &Path) -> Result<()>;

    /// An optimizer rebuilt from a directory written by [`ParamOptimizer::save`], its state on
    /// `device`. Registered parameters (for [`candle_nn::Optimizer::step`]) are not saved:
    /// register them again.
    fn load(dir: &Path, device: &Device) -> Result<Self>
    where
        Self: Sized;

    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);

    /// [`Self::step_param`] for several parameters, in order: `(name, var, grad)` each. The
    /// default is the loop (stops at the first error; the parameters before it are updated).
    /// An optimizer may batch work across the parameters (CrossLore: one device finiteness
    /// synchronisation for all gradients, and all projector refreshes queued together); it then
    /// returns the same results as the loop, and on a NaN/Inf gradient touches no parameter.
    fn step_params(&mut self, items: &[(&str, &Var, &Tensor)]) -> Result<Vec<StepInfo>> {
        items
            .iter()
            .map(|&(name, var, grad)| self.step_param(name, var, grad))
            .collect()
    }

    /// Relative residual `||G - P P^T G||_F / ||G||_F` of the current projector of `name` for
    /// `grad` (paper Fig. 2b), `None` for an unprojected parameter or one without a projector
    /// yet.
    fn projection_residual(&self, name: &str, grad: &Tensor) -> Result<Option<f32>> {
        let _ = (name, grad);
        Ok(None)
    }
}

fn non_finite(name: &str) -> OptimError {
    OptimError::NonFinite {
        param: name.to_string(),
    }
}

/// Checks the gradient shape against the weight and that it is finite, keeping a bf16 gradient
/// in bf16: the low-rank methods project it in its own dtype (`Projector::project`: bf16
/// products with f32 accumulation, as galore-torch), on the CPU and on CUDA alike. Returns the
/// detached gradient: bf16 if it was bf16, else f32.
///
/// On CUDA a contiguous f32/bf16 gradient is checked by one kernel pass. Elsewhere `sum(g - g)`
/// is 0 for a finite gradient and NaN as soon as one entry is NaN or +-Inf (one reduction on the
/// device, one scalar to the host), computed in bf16 for a bf16 gradient (every bf16 value is an
/// f32 value: the same verdict without an f32 copy) and in f32 otherwise.
pub(crate) fn check_grad_raw(name: &str, var: &Var, grad: &Tensor) -> Result<Tensor> {
    if grad.dims() != var.dims() {
        return Err(OptimError::Shape {
            param: name.to_string(),
            expected: format!("gradient of shape {:?}", var.dims()),
            got: format!("{:?}", grad.dims()),
        });
    }
    // Detach: a gradient from candle's backward still carries the forward graph; moments built
    // from it would chain every step's graph and leak (~10x the weights per step).
    let g = grad.detach();
    #[cfg(feature = "cuda")]
    {
        let g = g.contiguous()?;
        if let Some(bad) = crate::fused::any_nonfinite(&g)? {
            return if bad { Err(non_finite(name)) } else { Ok(g) };
        }
    }
    let g = match g.dtype() {
        DType::BF16 => g,
        _ => g.to_dtype(DType::F32)?,
    };
    let z = g.sub(&g)?; // 0 where finite, NaN where NaN or +-Inf
    let z = if z.rank() >= 2 { z.sum_keepdim(0)? } else { z };
    let s = z.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if !s.is_finite() {
        return Err(non_finite(name));
    }
    Ok(g)
}

/// `step_params` of an optimizer whose parameter steps are independent: every gradient checked
/// first ([`check_grads_raw`]: on CUDA one finiteness synchronisation for all of them, so a
/// NaN/Inf gradient anywhere leaves every parameter and state untouched), then `step` (the
/// optimizer's step of a checked gradient) per parameter in order. Same results as the loop of
/// `step_param`.
pub(crate) fn step_all_checked(
    items: &[(&str, &Var, &Tensor)],
    mut step: impl FnMut(&str, &Var, Tensor) -> Result<StepInfo>,
) -> Result<Vec<StepInfo>> {
    let gs = check_grads_raw(items)?;
    items
        .iter()
        .zip(gs)
        .map(|(&(name, var, _), g)| step(name, var, g))
        .collect()
}

/// [`check_grad_raw`] of several gradients. On CUDA, when every gradient is an f32/bf16 tensor
/// of its weight's shape, the finiteness flags of all of them are computed on the device and
/// read in ONE synchronisation (`kernels::any_nonfinite_many`); otherwise (CPU, other dtypes) it
/// is the per-gradient check. The first non-finite gradient (in order) is the error.
pub(crate) fn check_grads_raw(items: &[(&str, &Var, &Tensor)]) -> Result<Vec<Tensor>> {
    #[cfg(feature = "cuda")]
    if !items.is_empty()
        && items
            .iter()
            .all(|&(_, var, grad)| grad.dims() == var.dims() && fused::fusable_dtype_device(grad))
    {
        let gs = items
            .iter()
            .map(|&(_, _, grad)| Ok(grad.detach().contiguous()?))
            .collect::<Result<Vec<Tensor>>>()?;
        let refs: Vec<&Tensor> = gs.iter().collect();
        let flags = crosslore_linalg::kernels::any_nonfinite_many(&refs)?;
        if let Some(i) = flags.iter().position(|&bad| bad) {
            return Err(non_finite(items[i].0));
        }
        return Ok(gs);
    }
    items
        .iter()
        .map(|&(name, var, grad)| check_grad_raw(name, var, grad))
        .collect()
}

/// Writes `w` (f32) into `var` in the var's dtype.
pub(crate) fn commit_weight(var: &Var, w: &Tensor) -> Result<()> {
    var.set(&w.to_dtype(var.dtype())?)?;
    Ok(())
}

/// [`candle_nn::Optimizer::step`] over registered `(name, var)` pairs: steps every registered
/// parameter that has a gradient in `grads`.
#[doc(hidden)]
pub fn step_registered<O: ParamOptimizer>(
    opt: &mut O,
    params: &[(String, Var)],
    grads: &candle_core::backprop::GradStore,
) -> candle_core::Result<()> {
    for (name, var) in params {
        if let Some(g) = grads.get(var) {
            opt.step_param(name, var, g)
                .map_err(candle_core::Error::wrap)?;
        }
    }
    Ok(())
}

/// Names given to unnamed vars by [`candle_nn::Optimizer::new`]: `param.{index}`.
#[doc(hidden)]
pub fn name_vars(vars: Vec<Var>) -> Vec<(String, Var)> {
    vars.into_iter()
        .enumerate()
        .filter(|(_, v)| v.dtype().is_float())
        .map(|(i, v)| (format!("param.{i}"), v))
        .collect()
}

/// Bytes of a tensor.
pub(crate) fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

/// `impl candle_nn::Optimizer` for an optimizer type with `with_params(Vec<(String, Var)>,
/// Config) -> Result<Self>` and a `params: Vec<(String, Var)>` field. Vars passed to
/// `Optimizer::new` are named `param.{index}` (use `with_params` to keep real names, which
/// parameter groups match on).
#[macro_export]
#[doc(hidden)]
macro_rules! impl_candle_optimizer {
    ($ty:ty, $cfg:ty) => {
        impl candle_nn::Optimizer for $ty {
            type Config = $cfg;

            fn new(vars: Vec<candle_core::Var>, config: $cfg) -> candle_core::Result<Self> {
                <$ty>::with_params($crate::name_vars(vars), config)
                    .map_err(candle_core::Error::wrap)
            }

            fn step(
                &mut self,
                grads: &candle_core::backprop::GradStore,
            ) -> candle_core::Result<()> {
                let params = self.params.clone();
                $crate::step_registered(self, &params, grads)
            }

            fn learning_rate(&self) -> f64 {
                $crate::ParamOptimizer::lr(self)
            }

            fn set_learning_rate(&mut self, lr: f64) {
                $crate::ParamOptimizer::set_lr(self, lr)
            }
        }
    };
}
