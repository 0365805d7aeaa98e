//! A bias-free linear layer with its LoRA or DoRA adapter, differentiated by hand.
//!
//! Forward as [`crate::Linear::forward`]: `y = W x`; LoRA adds `s B A x'`; DoRA adds
//! `(m/n - 1) W x' + (m/n) s B A x'` with the detached row norm `n = ||W + s B A||_c`
//! (`x' = dropout(x)`). Backward, with `g = dy` in f32:
//! - base: `dx = dy W`, `dW = dy^T x` (trainable `W` only);
//! - LoRA (`u = A x'`, saved): `dB = s g^T u`, `du = s g B`, `dA = du^T x'`, `dx += (du A) * mask`;
//! - DoRA: the LoRA backward with `g * m/n`, `dm = sum_rows(g (W x' + s B A x')) / n`, and
//!   `g (m/n - 1)` flowing through `W x'`.

use candle_core::{DType, Tensor};

use super::ParamGrad;
use crate::ctx::ForwardCtx;
use crate::dora::Dora;
use crate::error::{ModelError, Result};
use crate::linear::{Adapter, Linear};
use crate::weight::Weight;

/// What a linear layer's backward needs besides its input.
#[derive(Debug, Clone)]
pub struct LinearSaved {
    /// Adapter dropout mask `[rows, in]` (`T`), when active.
    mask: Option<Tensor>,
    /// `A x'`, `[rows, r]` f32 (adapters only).
    u: Option<Tensor>,
    /// DoRA: `m / n` `[out]` f32, `1 / n` `[out]` f32, and `W x'` `[rows, out]` (`T`).
    dora: Option<(Tensor, Tensor, Tensor)>,
}

fn det(w: &Weight) -> Tensor {
    w.tensor().detach()
}

/// `x [rows, in] @ w^T` for `w: [out, in]`.
fn mm_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(x.matmul(&w.t()?)?)
}

/// `x: [rows, in]` (`T`, contiguous) -> `y: [rows, out]` (`T`).
pub(crate) fn forward(lin: &Linear, x: &Tensor, ctx: &ForwardCtx) -> Result<(Tensor, LinearSaved)> {
    let w = det(&lin.weight);
    let base = mm_t(x, &w)?; // [rows, out]
    let Some(lora) = lin.lora() else {
        let saved = LinearSaved {
            mask: None,
            u: None,
            dora: None,
        };
        return Ok((base, saved));
    };
    if lin.weight.var().is_some() {
        return Err(ModelError::Adapter(format!(
            "{}: the fused block does not train a base weight under an adapter",
            lin.name
        )));
    }
    let mask = lin.dropout_mask(x, ctx)?;
    let xd = match &mask {
        Some(m) => x.mul(m)?,
        None => x.clone(),
    };
    let (a, b) = (det(&lora.a), det(&lora.b));
    let u = mm_t(&xd.to_dtype(DType::F32)?, &a)?; // [rows, r]
    let lo = (mm_t(&u, &b)? * lora.scaling)?; // [rows, out] f32
    let (y, dora) = match &lin.adapter {
        Some(Adapter::Dora(d)) => {
            let inv_n = Dora::weight_norm(&w, lora)?.recip()?; // [out]
            let scale = det(&d.magnitude).mul(&inv_n)?; // [out]
            let base_d = match &mask {
                Some(_) => mm_t(&xd, &w)?,
                None => base.clone(),
            };
            let extra = Dora::combine(&scale, &base_d, &lo)?;
            let y = (&base + extra.to_dtype(x.dtype())?)?;
            (y, Some((scale, inv_n, base_d)))
        }
        _ => ((&base + lo.to_dtype(x.dtype())?)?, None),
    };
    Ok((
        y,
        LinearSaved {
            mask,
            u: Some(u),
            dora,
        },
    ))
}

/// Pushes `g` (cast to the parameter's dtype) as the gradient of `w` if `w` is trainable.
pub(super) fn push(grads: &mut Vec<ParamGrad>, name: String, w: &Weight, g: Tensor) -> Result<()> {
    if let Some(v) = w.var() {
        let g = g.to_dtype(v.dtype())?;
        grads.push((name, v.clone(), g));
    }
    Ok(())
}

/// `dy: [rows, out]`, `x`: the forward input. Returns `dx: [rows, in]`; pushes the layer's
/// parameter gradients.
pub(crate) fn backward(
    lin: &Linear,
    dy: &Tensor,
    x: &Tensor,
    saved: &LinearSaved,
    grads: &mut Vec<ParamGrad>,
) -> Result<Tensor> {
    let w = det(&lin.weight);
    let Some(lora) = lin.lora() else {
        if lin.weight.var().is_some() {
            let dw = dy.t()?.matmul(x)?; // [out, in]
            push(grads, format!("{}.weight", lin.name), &lin.weight, dw)?;
        }
        return Ok(dy.matmul(&w)?); // [rows, in]
    };
    let u = saved.u.as_ref().ok_or_else(|| missing(lin))?;
    // [rows, out] f32
    let g = dy.to_dtype(DType::F32)?;
    // The gradient reaching the LoRA output and (DoRA) the extra gradient of `W x'`.
    let (g_lo, dx_base) = match (&lin.adapter, &saved.dora) {
        (Some(Adapter::Dora(d)), Some((scale, inv_n, base_d))) => {
            let lo = (mm_t(u, &det(&lora.b))? * lora.scaling)?; // [rows, out]
            let both = (base_d.to_dtype(DType::F32)? + lo)?;
            let dm = (&g * both)?.sum(0)?.mul(inv_n)?; // [out]
            push(
                grads,
                format!("{}.lora_magnitude_vector", lin.name),
                &d.magnitude,
                dm,
            )?;
            let g_base = g.broadcast_mul(&(scale - 1.0)?)?; // through W x'
            let dx = match &saved.mask {
                None => ((&g + g_base)?.to_dtype(dy.dtype())?).matmul(&w)?,
                Some(m) => (dy.matmul(&w)? + g_base.to_dtype(dy.dtype())?.matmul(&w)?.mul(m)?)?,
            };
            (g.broadcast_mul(scale)?, dx)
        }
        (Some(Adapter::Dora(_)), None) => return Err(missing(lin)),
        _ => {
            let dx = dy.matmul(&w)?;
            (g, dx)
        }
    };
    let xd = match &saved.mask {
        Some(m) => x.mul(m)?,
        None => x.clone(),
    }
    .to_dtype(DType::F32)?;
    let (a, b) = (det(&lora.a), det(&lora.b));
    let s = lora.scaling;
    let db = (g_lo.t()?.matmul(u)? * s)?; // [out, r]
    let du = (g_lo.matmul(&b)? * s)?; // [rows, r]
    let da = du.t()?.matmul(&xd)?; // [r, in]
    let mut dx_ad = du.matmul(&a)?; // [rows, in] f32
    if let Some(m) = &saved.mask {
        dx_ad = dx_ad.mul(&m.to_dtype(DType::F32)?)?;
    }
    push(grads, format!("{}.lora_A.weight", lin.name), &lora.a, da)?;
    push(grads, format!("{}.lora_B.weight", lin.name), &lora.b, db)?;
    Ok((dx_base + dx_ad.to_dtype(dy.dtype())?)?)
}

fn missing(lin: &Linear) -> ModelError {
    ModelError::Adapter(format!(
        "{}: saved activations do not match the adapter (forward and backward ran on different layers)",
        lin.name
    ))
}
