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
}
