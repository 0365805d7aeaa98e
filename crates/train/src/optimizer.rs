//! The optimizer a method uses (issue 3 item 2), built from the run configuration:
//!
//! - `adamw`: `torch.optim.AdamW` over every weight;
//! - `galore`: galore-torch's GaLoreAdamW; projected group = the 7 attention/MLP matrices of each
//!   layer ([`crosslore_optim::groups::LLAMA_LINEAR_PATTERN`]), plain (unprojected) AdamW in
//!   galore-torch's form for embeddings, norms and the head;
//! - `crosslore`: CrossLoreAdamW with the same groups, RSI, cross-head Q/K projection and the
//!   sparse residual (paper Sec. 4);
//! - `lora` / `dora`: `torch.optim.AdamW` over the adapter tensors only (base weights frozen).

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use crosslore_linalg::rsi::RsiConfig;
use crosslore_model::LlamaConfig;
use crosslore_optim::crosslore::{CrossHeadConfig, ModelHeads};
use crosslore_optim::groups::default_rules;
use crosslore_optim::residual::ResidualConfig;
use crosslore_optim::{
    AdamW, AdamWConfig, CrossLoreAdamW, CrossLoreConfig, GaLoreAdamW, GaLoreConfig, ParamOptimizer,
    ProjSettings, ProjType, StateBytes, StepInfo,
};

use crate::config::{Method, ProjTypeKey, TrainConfig};
use crate::error::Result;

/// One of the optimizers of `crosslore-optim`, chosen by [`Method`].
pub enum MethodOptimizer {
    AdamW(AdamW),
    GaLore(GaLoreAdamW),
    CrossLore(CrossLoreAdamW),
}

fn proj_type(k: ProjTypeKey) -> ProjType {
    match k {
        ProjTypeKey::Std => ProjType::Std,
        ProjTypeKey::ReverseStd => ProjType::ReverseStd,
        ProjTypeKey::Left => ProjType::Left,
        ProjTypeKey::Right => ProjType::Right,
        ProjTypeKey::Full => ProjType::Full,
    }
}

/// galore-torch / transformers defaults (eps 1e-6, betas (0.9, 0.999)) with the run's rate,
/// weight decay and projection settings.
pub fn galore_config(cfg: &TrainConfig) -> GaLoreConfig {
    GaLoreConfig {
        lr: cfg.learning_rate,
        weight_decay: cfg.weight_decay,
        groups: default_rules(ProjSettings {
            rank: cfg.rank,
            update_proj_gap: cfg.update_interval,
            scale: cfg.scale,
            proj_type: proj_type(cfg.proj_type),
        }),
        ..GaLoreConfig::default()
    }
}

/// CrossLore configuration of a run; `model` gives the head layout of the Q/K matrices.
pub fn crosslore_config(cfg: &TrainConfig, model: &LlamaConfig) -> CrossLoreConfig {
    CrossLoreConfig {
        galore: galore_config(cfg),
        rsi: RsiConfig {
            oversample: cfg.oversample,
            power_iters: cfg.power_iters,
        },
        warm_start: cfg.warm_start,
        seed: cfg.seed,
        cross_head: CrossHeadConfig {
            heads: Some(ModelHeads {
                n_heads: model.num_attention_heads,
                n_kv_heads: model.num_key_value_heads,
                d_head: model.head_dim,
            }),
            ..CrossHeadConfig::default()
        },
        residual: ResidualConfig {
            ratio: cfg.residual_ratio,
            warmup_steps: (cfg.residual_warmup > 0).then_some(cfg.residual_warmup),
            ..ResidualConfig::default()
        },
        ..CrossLoreConfig::default()
    }
}

/// `torch.optim.AdamW` defaults (eps 1e-8) with the run's rate and weight decay.
pub fn adamw_config(cfg: &TrainConfig) -> AdamWConfig {
    AdamWConfig {
        lr: cfg.learning_rate,
        weight_decay: cfg.weight_decay,
        ..AdamWConfig::default()
    }
}

impl MethodOptimizer {
    /// A fresh optimizer for `params` (checked against the groups: a rank larger than a matrix
    /// is an error naming the parameter).
    pub fn new(cfg: &TrainConfig, model: &LlamaConfig, params: &[(String, Var)]) -> Result<Self> {
        let params = params.to_vec();
        Ok(match cfg.method {
            Method::Adamw | Method::Lora | Method::Dora => {
                Self::AdamW(AdamW::with_params(params, adamw_config(cfg))?)
            }
            Method::Galore => Self::GaLore(GaLoreAdamW::with_params(params, galore_config(cfg))?),
            Method::Crosslore => Self::CrossLore(CrossLoreAdamW::with_params(
                params,
                crosslore_config(cfg, model),
            )?),
        })
    }

    /// The optimizer saved in `dir` by [`ParamOptimizer::save`], for `method`.
    pub fn load(method: Method, dir: &Path, device: &Device) -> Result<Self> {
        Ok(match method {
            Method::Adamw | Method::Lora | Method::Dora => Self::AdamW(AdamW::load(dir, device)?),
            Method::Galore => Self::GaLore(GaLoreAdamW::load(dir, device)?),
            Method::Crosslore => Self::CrossLore(CrossLoreAdamW::load(dir, device)?),
        })
    }

    pub fn as_dyn(&self) -> &dyn ParamOptimizer {
        match self {
            Self::AdamW(o) => o,
            Self::GaLore(o) => o,
            Self::CrossLore(o) => o,
        }
    }

    pub fn as_dyn_mut(&mut self) -> &mut dyn ParamOptimizer {
        match self {
            Self::AdamW(o) => o,
            Self::GaLore(o) => o,
            Self::CrossLore(o) => o,
        }
    }

    pub fn step_param(&mut self, name: &str, var: &Var, grad: &Tensor) -> Result<StepInfo> {
        Ok(self.as_dyn_mut().step_param(name, var, grad)?)
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.as_dyn_mut().set_lr(lr)
    }

    pub fn state_bytes(&self) -> StateBytes {
        self.as_dyn().state_bytes()
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        Ok(self.as_dyn().save(dir)?)
    }

    pub fn projection_residual(&self, name: &str, grad: &Tensor) -> Result<Option<f32>> {
        Ok(self.as_dyn().projection_residual(name, grad)?)
    }
}
