//! A weight that is either trainable (a candle `Var`, gets a gradient) or frozen (a plain
//! `Tensor`: no op is recorded for it, so it never holds a gradient).

use candle_core::{Tensor, Var};

use crate::error::Result;

#[derive(Debug, Clone)]
pub enum Weight {
    Trainable(Var),
    Frozen(Tensor),
}

impl Weight {
    pub fn new(t: Tensor, trainable: bool) -> Result<Self> {
        Ok(if trainable {
            Weight::Trainable(Var::from_tensor(&t)?)
        } else {
            Weight::Frozen(t.detach())
        })
    }

    pub fn tensor(&self) -> &Tensor {
        match self {
            Weight::Trainable(v) => v.as_tensor(),
            Weight::Frozen(t) => t,
        }
    }

    pub fn var(&self) -> Option<&Var> {
        match self {
            Weight::Trainable(v) => Some(v),
            Weight::Frozen(_) => None,
        }
    }

    /// A frozen handle on the same storage (no copy): ops on it record no graph, so inference
    /// through a trainable model keeps no activations alive ([`crate::Llama::inference_view`]).
    pub fn frozen_view(&self) -> Weight {
        Weight::Frozen(self.tensor().detach())
    }

    /// A trainable weight (a new `Var` from `t`).
    pub fn trainable(t: &Tensor) -> Result<Self> {
        Ok(Weight::Trainable(Var::from_tensor(t)?))
    }
}
