//! The reference implementation of every fused operation: the same mathematics as the CUDA
//! kernels, written with candle's composite ops in f32 (any device). It is the CPU path of the
//! fused block, what the tests check against autograd, and what the device check compares the
//! kernels with. Callers go through the checked entry points of the other modules.

use candle_core::{DType, Tensor, D};

use crate::attention::AttnMask;
use crate::error::Result;
use crate::rmsnorm::RmsNormOut;
use crate::xent::{XentOut, IGNORE};

fn f32(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F32)?)
}

pub fn rms_norm_fwd(x: &Tensor, w: &Tensor, eps: f32) -> Result<RmsNormOut> {
    let xf = f32(x)?;
    let rstd = (xf.sqr()?.mean_keepdim(1)? + eps as f64)?.sqrt()?.recip()?; // [rows, 1]
    let n = xf.broadcast_mul(&rstd)?.to_dtype(x.dtype())?;
    let y = n.broadcast_mul(w)?; // in T, as transformers
    Ok(RmsNormOut {
        y,
        rstd: rstd.squeeze(1)?,
    })
}

pub fn rms_norm_bwd(
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    rstd: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let r = rstd.unsqueeze(1)?; // [rows, 1]
    let n = f32(x)?.broadcast_mul(&r)?; // [rows, h]
    let dyf = f32(dy)?;
    let n_t = f32(&n.to_dtype(x.dtype())?)?; // the rounded n the forward multiplied by w
    let dw = (&dyf * n_t)?.sum(0)?; // [h]
    let dn = dyf.broadcast_mul(&f32(w)?)?;
    let dot = (&dn * &n)?.mean_keepdim(1)?; // [rows, 1]
    let dx = (dn - n.broadcast_mul(&dot)?)?.broadcast_mul(&r)?;
    Ok((dx.to_dtype(x.dtype())?, dw))
}

/// The two halves of the last dimension.
fn halves(t: &Tensor) -> Result<(Tensor, Tensor)> {
    let d = t.dim(D::Minus1)?;
    Ok((
        t.narrow(D::Minus1, 0, d / 2)?,
        t.narrow(D::Minus1, d / 2, d / 2)?,
    ))
}

fn tables(cos: &Tensor, sin: &Tensor) -> Result<(Tensor, Tensor)> {
    let (s, d) = cos.dims2()?;
    // [s, d] -> [1, 1, s, d]
    Ok((
        f32(cos)?.reshape((1, 1, s, d))?,
        f32(sin)?.reshape((1, 1, s, d))?,
    ))
}

pub fn rope_fwd(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let xt = f32(&x.transpose(1, 2)?)?; // [b, s, n, d] -> [b, n, s, d]
    let (c, s) = tables(cos, sin)?;
    let (x1, x2) = halves(&xt)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?; // rotate_half
    let y = (xt.broadcast_mul(&c)? + rot.broadcast_mul(&s)?)?;
    Ok(y.to_dtype(x.dtype())?.contiguous()?)
}

pub fn rope_bwd(dy: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let g = f32(dy)?; // [b, n, s, d]
    let (c, s) = tables(cos, sin)?;
    let (z1, z2) = halves(&g.broadcast_mul(&s)?)?;
    let rt = Tensor::cat(&[&z2, &z1.neg()?], D::Minus1)?; // rotate_half transposed
    let dx = (g.broadcast_mul(&c)? + rt)?;
    // [b, n, s, d] -> [b, s, n, d]
    Ok(dx.to_dtype(dy.dtype())?.transpose(1, 2)?.contiguous()?)
}

pub fn swiglu_fwd(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    let gf = f32(g)?;
    let h = (candle_core::Tensor::silu(&gf)? * f32(u)?)?;
    Ok(h.to_dtype(g.dtype())?)
}

pub fn swiglu_bwd(dh: &Tensor, g: &Tensor, u: &Tensor) -> Result<(Tensor, Tensor)> {
    let (gf, uf, dhf) = (f32(g)?, f32(u)?, f32(dh)?);
    let sig = (gf.neg()?.exp()? + 1.0)?.recip()?;
    let silu = (&gf * &sig)?;
    // d silu / dg = sig (1 + g (1 - sig))
    let dsilu = (&sig * ((&gf * (1.0 - &sig)?)? + 1.0)?)?;
    let dg = ((&dhf * uf)? * dsilu)?;
    let du = (dhf * silu)?;
    Ok((dg.to_dtype(g.dtype())?, du.to_dtype(g.dtype())?))
}

/// `[b or 1, 1, rows, s]` f32 of 0/1: which (query row, key) pairs are attended.
fn allowed(
    b: usize,
    rows: usize,
    s: usize,
    mask: AttnMask,
    dev: &candle_core::Device,
) -> Result<Tensor> {
    let causal: Vec<f32> = (0..rows)
        .flat_map(|r| (0..s).map(move |j| if j <= r % s { 1.0 } else { 0.0 }))
        .collect();
    let causal = Tensor::from_vec(causal, (1, 1, rows, s), dev)?;
    Ok(match mask {
        AttnMask::Causal => causal,
        // [b, s] -> [b, 1, 1, s]
        AttnMask::CausalKeys(m) => causal.broadcast_mul(&m.reshape((b, 1, 1, s))?)?,
    })
}

pub fn causal_softmax_fwd(scores: &Tensor, mask: AttnMask, scale: f32) -> Result<Tensor> {
    let (b, _, rows, s) = scores.dims4()?;
    let ok = allowed(b, rows, s, mask, scores.device())?;
    let z = (f32(scores)? * scale as f64)?;
    // Disallowed entries get a large negative value before the max; exp() of them is then
    // multiplied by 0, so a row with no allowed key sums to 0 and stays 0.
    let z = z.broadcast_add(&((ok.clone() - 1.0)? * 1e30)?)?;
    let max = z.max_keepdim(D::Minus1)?;
    let e = z.broadcast_sub(&max)?.exp()?.broadcast_mul(&ok)?;
    let sum = e
        .sum_keepdim(D::Minus1)?
        .clamp(f32::MIN_POSITIVE, f32::MAX)?;
    Ok(e.broadcast_div(&sum)?.to_dtype(scores.dtype())?)
}

pub fn causal_softmax_bwd(dp: &Tensor, p: &Tensor, scale: f32) -> Result<Tensor> {
    let (dpf, pf) = (f32(dp)?, f32(p)?);
    let dot = (&dpf * &pf)?.sum_keepdim(D::Minus1)?;
    let ds = ((pf * dpf.broadcast_sub(&dot)?)? * scale as f64)?;
    Ok(ds.to_dtype(p.dtype())?)
}

pub fn cross_entropy_fwd_bwd(
    logits: &Tensor,
    targets: &Tensor,
    grad_scale: f32,
) -> Result<XentOut> {
    let (rows, vocab) = logits.dims2()?;
    let dev = logits.device();
    let t: Vec<u32> = targets.to_vec1()?;
    let ok = |y: u32| y != IGNORE && (y as usize) < vocab;
    let valid: Vec<f32> = t.iter().map(|&y| if ok(y) { 1.0 } else { 0.0 }).collect();
    // An ignored row reads (and writes) column 0, weighted by 0.
    let idx: Vec<u32> = t.iter().map(|&y| if ok(y) { y } else { 0 }).collect();
    let idx = Tensor::from_vec(idx, (rows, 1), dev)?;
    let valid = Tensor::from_vec(valid, (rows, 1), dev)?;
    let z = f32(logits)?;
    let max = z.max_keepdim(1)?;
    let e = z.broadcast_sub(&max)?.exp()?;
    let se = e.sum_keepdim(1)?;
    let lse = (se.log()? + &max)?; // [rows, 1]
    let zt = z.gather(&idx, 1)?; // target logit, [rows, 1]
    let loss_sum = ((lse - zt)? * &valid)?.sum_all()?;
    // grad_scale * (softmax - onehot) on counted rows; `- onehot` is a scatter of -1 into the
    // target column (no [rows, vocab] one-hot is built; same values, same order of operations).
    let p_minus = e.broadcast_div(&se)?.scatter_add(&idx, &valid.neg()?, 1)?;
    let dz = (p_minus.broadcast_mul(&valid)? * grad_scale as f64)?;
    Ok(XentOut {
        loss_sum,
        dlogits: dz.to_dtype(logits.dtype())?,
    })
}
