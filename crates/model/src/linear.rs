//! A bias-free linear layer with an optional LoRA or DoRA adapter.

use candle_core::{Tensor, Var};
use crosslore_linalg::Rng;

use crate::ctx::ForwardCtx;
use crate::dora::Dora;
use crate::error::{ModelError, Result};
use crate::lora::{AdapterConfig, AdapterKind, Lora};
use crate::ops::{dropout_mask, linear};
use crate::weight::Weight;

#[derive(Debug, Clone)]
pub enum Adapter {
    Lora(Lora),
    Dora(Dora),
}

#[derive(Debug, Clone)]
pub struct Linear {
    /// HF module path, e.g. `model.layers.0.self_attn.q_proj`.
    pub name: String,
    pub weight: Weight,
    pub adapter: Option<Adapter>,
    /// Adapter dropout probability.
    pub dropout: f64,
    /// Stream id of this layer's dropout masks (unique per linear layer of the model).
    pub stream: u64,
}

impl Linear {
    pub fn new(name: String, weight: Weight, stream: u64) -> Self {
        Linear {
            name,
            weight,
            adapter: None,
            dropout: 0.0,
            stream,
        }
    }

    /// Attach a freshly initialised adapter (the base weight should be frozen by the caller).
    pub fn attach_adapter(&mut self, cfg: &AdapterConfig) -> Result<()> {
        let w = self.weight.tensor();
        let (n_out, n_in) = w.dims2()?;
        let mut rng = Rng::derive(cfg.init_seed, self.stream);
        let dev = w.device().clone();
        self.adapter = Some(match cfg.kind {
            AdapterKind::Lora => Adapter::Lora(Lora::init(n_in, n_out, cfg, &mut rng, &dev)?),
            AdapterKind::Dora => Adapter::Dora(Dora::init(w, cfg, &mut rng, &dev)?),
        });
        self.dropout = cfg.dropout;
        Ok(())
    }

    /// The adapter-dropout mask (`0` or `1 / (1 - p)`) of this forward for an input like `x`,
    /// or `None` when dropout is inactive. The same (seed, layer) gives the same mask, so a
    /// recomputed or hand-differentiated forward reproduces it.
    pub fn dropout_mask(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Option<Tensor>> {
        if !ctx.train || self.dropout == 0.0 {
            return Ok(None);
        }
        let mut rng = Rng::derive(ctx.dropout_seed, self.stream);
        let m = dropout_mask(x.dims(), self.dropout, &mut rng, x.device(), x.dtype())?;
        Ok(Some(m))
    }

    fn dropped(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Option<Tensor>> {
        Ok(match self.dropout_mask(x, ctx)? {
            Some(m) => Some(x.mul(&m)?),
            None => None,
        })
    }

    /// `x: [.., in]` -> `[.., out]` in `x`'s dtype.
    pub fn forward(&self, x: &Tensor, ctx: &ForwardCtx) -> Result<Tensor> {
        let w = self.weight.tensor();
        let base = linear(x, w)?;
        let extra = match &self.adapter {
            None => return Ok(base),
            Some(Adapter::Lora(l)) => {
                let xd = self.dropped(x, ctx)?;
                l.forward(xd.as_ref().unwrap_or(x))?
            }
            Some(Adapter::Dora(d)) => match self.dropped(x, ctx)? {
                // peft: without active dropout the base result is reused, else W x' recomputed.
                None => d.forward(w, x, &base)?,
                Some(xd) => d.forward(w, &xd, &linear(&xd, w)?)?,
            },
        };
        Ok((base + extra.to_dtype(x.dtype())?)?)
    }

    /// Trainable tensors with their HF / peft names: the weight if trainable, else the adapter's
    /// `lora_A.weight`, `lora_B.weight` and (DoRA) `lora_magnitude_vector`.
    pub fn params(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        if let Some(v) = self.weight.var() {
            out.push((format!("{}.weight", self.name), v.clone()));
        }
        if let Some(l) = self.lora() {
            for (suffix, w) in [("lora_A.weight", &l.a), ("lora_B.weight", &l.b)] {
                if let Some(v) = w.var() {
                    out.push((format!("{}.{suffix}", self.name), v.clone()));
                }
            }
        }
        if let Some(Adapter::Dora(d)) = &self.adapter {
            if let Some(v) = d.magnitude.var() {
                out.push((format!("{}.lora_magnitude_vector", self.name), v.clone()));
            }
        }
        out
    }

    /// The low-rank pair of the adapter (LoRA's, or DoRA's direction part), if any.
    pub fn lora(&self) -> Option<&Lora> {
        match &self.adapter {
            None => None,
            Some(Adapter::Lora(l)) => Some(l),
            Some(Adapter::Dora(d)) => Some(&d.lora),
        }
    }

    /// The same layer with every weight (adapters included) frozen on the same storage.
    pub fn frozen_view(&self) -> Linear {
        let mut out = self.clone();
        out.weight = self.weight.frozen_view();
        let freeze = |l: &mut crate::lora::Lora| {
            l.a = l.a.frozen_view();
            l.b = l.b.frozen_view();
        };
        match &mut out.adapter {
            None => {}
            Some(Adapter::Lora(l)) => freeze(l),
            Some(Adapter::Dora(d)) => {
                freeze(&mut d.lora);
                d.magnitude = d.magnitude.frozen_view();
            }
        }
        out
    }

    /// The dense weight for export: the base weight with the adapter merged in.
    pub fn merged_weight(&self) -> Result<Tensor> {
        let w = self.weight.tensor();
        match &self.adapter {
            None => Ok(w.clone()),
            Some(Adapter::Lora(l)) => l.merge(w),
            Some(Adapter::Dora(d)) => d.merge(w),
        }
    }

    /// Set an adapter tensor by its full name (as returned by [`Linear::params`]).
    pub fn set_adapter_tensor(&self, name: &str, t: &Tensor) -> Result<bool> {
        for (n, v) in self.params() {
            if n == name && self.weight.var().map(|w| w.id()) != Some(v.id()) {
                if v.dims() != t.dims() {
                    return Err(ModelError::TensorShape {
                        origin: "adapter tensors".into(),
                        name: name.into(),
                        expected: v.dims().to_vec(),
                        got: t.dims().to_vec(),
                    });
                }
                v.set(&t.to_dtype(v.dtype())?.to_device(v.device())?)?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}
