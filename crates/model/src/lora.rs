//! LoRA adapters (Hu et al. 2021) as peft's `lora.Linear`: `y = W x + s * B (A dropout(x))`,
//! `s = alpha / r`, `A: [r, in]` kaiming-uniform(a = sqrt 5) i.e. U(-1/sqrt(in), 1/sqrt(in)),
//! `B: [out, r]` zero. Adapter weights are kept in f32 whatever the base dtype (peft's default
//! `autocast_adapter_dtype=True`); the adapter path computes in f32 and casts its result back.

use candle_core::{DType, Device, Tensor, Var};

use crate::weight::Weight;
use crosslore_linalg::Rng;

use crate::error::{ModelError, Result};
use crate::ops::linear;

/// Which adapter to put on targeted linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    Lora,
    Dora,
}

/// The seven linear projections of a LLaMA decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Proj {
    pub const ALL: [Proj; 7] = [
        Proj::Q,
        Proj::K,
        Proj::V,
        Proj::O,
        Proj::Gate,
        Proj::Up,
        Proj::Down,
    ];

    /// Hugging Face module name (`q_proj`, ...).
    pub fn hf_name(self) -> &'static str {
        match self {
            Proj::Q => "q_proj",
            Proj::K => "k_proj",
            Proj::V => "v_proj",
            Proj::O => "o_proj",
            Proj::Gate => "gate_proj",
            Proj::Up => "up_proj",
            Proj::Down => "down_proj",
        }
    }

    /// Parent module in the HF name (`self_attn` or `mlp`).
    pub fn parent(self) -> &'static str {
        match self {
            Proj::Q | Proj::K | Proj::V | Proj::O => "self_attn",
            Proj::Gate | Proj::Up | Proj::Down => "mlp",
        }
    }

    /// Parse `q_proj`, `q`, `self_attn.q_proj` ... (peft target-module spelling).
    pub fn parse(s: &str) -> Result<Proj> {
        let t = s.rsplit('.').next().unwrap_or(s);
        let t = t.strip_suffix("_proj").unwrap_or(t);
        Ok(match t {
            "q" => Proj::Q,
            "k" => Proj::K,
            "v" => Proj::V,
            "o" => Proj::O,
            "gate" => Proj::Gate,
            "up" => Proj::Up,
            "down" => Proj::Down,
            _ => {
                return Err(ModelError::Adapter(format!(
                    "unknown target module `{s}` (expected one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or all-linear)"
                )))
            }
        })
    }

    pub(crate) fn index(self) -> u64 {
        self as u64
    }
}

/// Target modules: a list, or peft's "all-linear" (the 7 projections; never `lm_head`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetModules {
    AllLinear,
    Only(Vec<Proj>),
}

impl TargetModules {
    /// From names as a user writes them: `["all-linear"]` or `["q_proj", "v_proj"]`.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        if names.iter().any(|n| n.as_ref() == "all-linear") {
            if names.len() != 1 {
                return Err(ModelError::Adapter(
                    "\"all-linear\" cannot be combined with other target modules".into(),
                ));
            }
            return Ok(TargetModules::AllLinear);
        }
        if names.is_empty() {
            return Err(ModelError::Adapter("empty target module list".into()));
        }
        let mut v = names
            .iter()
            .map(|n| Proj::parse(n.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        v.sort();
        v.dedup();
        Ok(TargetModules::Only(v))
    }

    pub fn contains(&self, p: Proj) -> bool {
        match self {
            TargetModules::AllLinear => true,
            TargetModules::Only(v) => v.contains(&p),
        }
    }
}

/// Adapter hyper-parameters (peft `LoraConfig` subset).
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    pub kind: AdapterKind,
    pub rank: usize,
    pub alpha: f64,
    /// Dropout probability on the adapter input, active in training forwards only.
    pub dropout: f64,
    pub targets: TargetModules,
    /// Seed of the `A` initialisation.
    pub init_seed: u64,
}

impl AdapterConfig {
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(ModelError::Adapter("rank must be > 0".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::Adapter(format!(
                "dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if !self.alpha.is_finite() {
            return Err(ModelError::Adapter(format!(
                "alpha must be finite, got {}",
                self.alpha
            )));
        }
        Ok(())
    }

    /// `alpha / rank` (peft without rslora).
    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// The low-rank pair of one adapted linear layer.
#[derive(Debug, Clone)]
pub struct Lora {
    /// `[r, in]`, f32.
    pub a: Weight,
    /// `[out, r]`, f32.
    pub b: Weight,
    pub scaling: f64,
}

impl Lora {
    /// peft init: `A ~ U(-1/sqrt(in), 1/sqrt(in))` (kaiming-uniform with a = sqrt 5), `B = 0`.
    pub fn init(
        n_in: usize,
        n_out: usize,
        cfg: &AdapterConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Self> {
        let bound = 1.0 / (n_in as f64).sqrt();
        let a: Vec<f32> = (0..cfg.rank * n_in)
            .map(|_| ((2.0 * rng.next_f64() - 1.0) * bound) as f32)
            .collect();
        let a = Weight::trainable(&Tensor::from_vec(a, (cfg.rank, n_in), device)?)?;
        let b = Weight::Trainable(Var::zeros((n_out, cfg.rank), DType::F32, device)?);
        Ok(Lora {
            a,
            b,
            scaling: cfg.scaling(),
        })
    }

    /// `s * B (A x)` for `x: [.., in]` (any dtype; computed in f32) -> `[.., out]` f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(DType::F32)?;
        let h = linear(&x, self.a.tensor())?; // [.., r]
        Ok((linear(&h, self.b.tensor())? * self.scaling)?)
    }

    /// `s * B A`, `[out, in]` f32.
    pub fn delta_weight(&self) -> Result<Tensor> {
        Ok((self.b.tensor().matmul(self.a.tensor())? * self.scaling)?)
    }

    /// Dense `W + s B A` in `w`'s dtype (peft `merge`).
    pub fn merge(&self, w: &Tensor) -> Result<Tensor> {
        let merged = (w.to_dtype(DType::F32)? + self.delta_weight()?)?;
        Ok(merged.to_dtype(w.dtype())?)
    }
}
