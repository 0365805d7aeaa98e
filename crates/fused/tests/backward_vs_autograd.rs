//! Each hand-written backward of the reference path against candle's autograd of the plain
//! forward formula (written here independently of the crate), in f32 on the CPU, on seeded
//! random inputs; and each forward against that formula.
//!
//! Tolerance 1e-5 relative to the largest entry: both sides compute in f32 with reductions of
//! length <= 64 (a few ulps, ~1e-7); a wrong formula (a sign in the RoPE transpose, a missing
//! term of the RMSNorm or softmax Jacobian, a wrong causal row index) gives errors of order 1e-1.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var, D};
use crosslore_fused::{
    causal_softmax_bwd, causal_softmax_fwd, cross_entropy_fwd_bwd, rms_norm_bwd, rms_norm_fwd,
    rope_bwd, rope_fwd, swiglu_bwd, swiglu_fwd, AttnMask, IGNORE,
};

const TOL: f32 = 1e-5;

/// Deterministic normal-ish values (sum of uniforms from an LCG), no extra dependency.
fn randn(shape: &[usize], seed: u64) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f32) / (1u64 << 31) as f32
    };
    let v: Vec<f32> = (0..n)
        .map(|_| (0..4).map(|_| next()).sum::<f32>() - 2.0)
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) -> Result<()> {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let g = got.to_dtype(DType::F32)?;
    let w = want.to_dtype(DType::F32)?;
    let scale = w.abs()?.max_all()?.to_scalar::<f32>()?.max(1e-20);
    let err = (g - w)?.abs()?.max_all()?.to_scalar::<f32>()? / scale;
    assert!(err <= TOL, "{what}: relative error {err:e} > {TOL:e}");
    Ok(())
}

/// Gradient of `sum(f(vars) * dy)` with respect to each var.
fn autograd(vars: &[&Var], out: &Tensor, dy: &Tensor) -> Result<Vec<Tensor>> {
    let g = (out * dy)?.sum_all()?.backward()?;
    Ok(vars
        .iter()
        .map(|v| g.get(v.as_tensor()).expect("gradient").clone())
        .collect())
}

#[test]
fn rms_norm_matches_autograd() -> Result<()> {
    for (rows, h, seed) in [(7, 64, 1), (1, 8, 2), (33, 24, 3)] {
        let x = Var::from_tensor(&randn(&[rows, h], seed)?)?;
        let w = Var::from_tensor(&randn(&[h], seed + 10)?)?;
        let dy = randn(&[rows, h], seed + 20)?;
        let eps = 1e-5;
        let var = x.sqr()?.mean_keepdim(D::Minus1)?;
        let want = x.broadcast_div(&(var + eps)?.sqrt()?)?.broadcast_mul(&w)?;
        let out = rms_norm_fwd(&x, &w, eps as f32)?;
        assert_close("rms_norm y", &out.y, &want)?;
        let g = autograd(&[&x, &w], &want, &dy)?;
        let (dx, dw) = rms_norm_bwd(&dy, &x, &w, &out.rstd)?;
        assert_close("rms_norm dx", &dx, &g[0])?;
        assert_close("rms_norm dw", &dw, &g[1])?;
    }
    Ok(())
}

fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    Ok(Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?)
}

#[test]
fn rope_matches_autograd() -> Result<()> {
    let (b, s, n, d) = (2, 5, 3, 8);
    let x = Var::from_tensor(&randn(&[b, s, n, d], 4)?)?;
    // Real tables: angle = position * inv_freq, halves duplicated.
    let mut cos = Vec::new();
    let mut sin = Vec::new();
    for p in 0..s {
        for i in 0..d {
            let f = 1.0 / 10000f32.powf((2 * (i % (d / 2))) as f32 / d as f32);
            cos.push((p as f32 * f).cos());
            sin.push((p as f32 * f).sin());
        }
    }
    let cos = Tensor::from_vec(cos, (s, d), &Device::Cpu)?;
    let sin = Tensor::from_vec(sin, (s, d), &Device::Cpu)?;
    let xt = x.transpose(1, 2)?; // [b, n, s, d]
    let c = cos.reshape((1, 1, s, d))?;
    let sn = sin.reshape((1, 1, s, d))?;
    let want = (xt.broadcast_mul(&c)? + rotate_half(&xt)?.broadcast_mul(&sn)?)?;
    let y = rope_fwd(&x, &cos, &sin)?;
    assert_eq!(y.dims(), [b, n, s, d]);
    assert_close("rope y", &y, &want)?;
    let dy = randn(&[b, n, s, d], 5)?;
    let g = autograd(&[&x], &want, &dy)?;
    let dx = rope_bwd(&dy, &cos, &sin)?;
    assert_eq!(dx.dims(), [b, s, n, d]);
    assert_close("rope dx", &dx, &g[0])?;
    Ok(())
}

#[test]
fn swiglu_matches_autograd() -> Result<()> {
    let g = Var::from_tensor(&(randn(&[6, 40], 6)? * 3.0)?)?;
    let u = Var::from_tensor(&randn(&[6, 40], 7)?)?;
    let dh = randn(&[6, 40], 8)?;
    let want = (g.silu()? * u.as_tensor())?;
    assert_close("swiglu h", &swiglu_fwd(&g, &u)?, &want)?;
    let ga = autograd(&[&g, &u], &want, &dh)?;
    let (dg, du) = swiglu_bwd(&dh, &g, &u)?;
    assert_close("swiglu dg", &dg, &ga[0])?;
    assert_close("swiglu du", &du, &ga[1])?;
    Ok(())
}

/// Softmax over the allowed keys by masking with -inf after scaling: the textbook form.
fn softmax_masked(z: &Tensor, allowed: &Tensor) -> Result<Tensor> {
    let neg = ((allowed.ones_like()? - allowed)? * -1e30)?;
    let z = z.broadcast_add(&neg)?;
    let max = z.max_keepdim(D::Minus1)?.detach();
    let e = z.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

#[test]
fn causal_softmax_matches_autograd_with_gqa_rows_and_key_mask() -> Result<()> {
    // [b, n_kv, g * s, s] with g = 3 query heads per key/value head.
    let (b, hk, g, s) = (2, 2, 3, 6);
    let rows = g * s;
    let scores = Var::from_tensor(&randn(&[b, hk, rows, s], 9)?)?;
    let scale = 0.37f32;
    // Key mask: batch 1 has its first two keys padded (left padding).
    let km: Vec<f32> = (0..b * s)
        .map(|i| if i / s == 1 && i % s < 2 { 0.0 } else { 1.0 })
        .collect();
    let km = Tensor::from_vec(km, (b, s), &Device::Cpu)?;
    let mut allowed = vec![0f32; b * rows * s];
    for bi in 0..b {
        for r in 0..rows {
            for j in 0..s {
                let ok = j <= r % s && km.get(bi)?.get(j)?.to_scalar::<f32>()? == 1.0;
                allowed[(bi * rows + r) * s + j] = if ok { 1.0 } else { 0.0 };
            }
        }
    }
    let allowed = Tensor::from_vec(allowed, (b, 1, rows, s), &Device::Cpu)?;
    let z = (scores.as_tensor() * scale as f64)?;
    let want = softmax_masked(&z, &allowed)?;
    // Rows with no allowed key: the textbook form is uniform there, ours is zero; compare the
    // rows that have at least one key, and check the others are zero.
    let live = allowed.max_keepdim(D::Minus1)?; // [b, 1, rows, 1]
    let want = want.broadcast_mul(&live)?;
    let p = causal_softmax_fwd(&scores, AttnMask::CausalKeys(&km), scale)?;
    assert_close("softmax P", &p, &want)?;
    let dp = randn(&[b, hk, rows, s], 10)?;
    let ga = autograd(&[&scores], &want, &dp)?;
    let ds = causal_softmax_bwd(&dp, &p, scale)?;
    assert_close("softmax dS", &ds, &ga[0])?;
    // Causal only: query row r sees keys 0..=r % s.
    let p = causal_softmax_fwd(&scores, AttnMask::Causal, scale)?;
    let row = p.get(0)?.get(1)?.get(s + 2)?.to_vec1::<f32>()?; // head group 1, position 2
    assert!(row[3..].iter().all(|&v| v == 0.0) && (row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    Ok(())
}

#[test]
fn cross_entropy_matches_autograd() -> Result<()> {
    let (rows, vocab) = (9, 50);
    let z = Var::from_tensor(&(randn(&[rows, vocab], 11)? * 4.0)?)?;
    let targets: Vec<u32> = (0..rows as u32)
        .map(|r| {
            if r == 3 {
                IGNORE
            } else {
                (r * 7) % vocab as u32
            }
        })
        .collect();
    let t = Tensor::from_vec(targets.clone(), rows, &Device::Cpu)?;
    let scale = 1.0 / 8.0;
    // Textbook: log_softmax, pick the target, sum over counted rows.
    let max = z.max_keepdim(1)?.detach();
    let lse = (z.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + max)?;
    let logp = z.broadcast_sub(&lse)?;
    let mut pick = vec![0f32; rows * vocab];
    for (r, &y) in targets.iter().enumerate() {
        if y != IGNORE {
            pick[r * vocab + y as usize] = 1.0;
        }
    }
    let pick = Tensor::from_vec(pick, (rows, vocab), &Device::Cpu)?;
    let loss = (logp * pick)?.sum_all()?.neg()?;
    let out = cross_entropy_fwd_bwd(&z, &t, scale)?;
    assert_close("xent loss", &out.loss_sum, &loss)?;
    let g = loss.backward()?;
    let want = (g.get(z.as_tensor()).expect("grad") * scale as f64)?;
    assert_close("xent dlogits", &out.dlogits, &want)?;
    Ok(())
}

#[test]
fn bad_shapes_are_named() {
    let x = Tensor::zeros((4, 8), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap();
    let e = rms_norm_fwd(&x, &w, 1e-5).unwrap_err().to_string();
    assert!(
        e.contains("rms_norm_fwd") && e.contains("`w`") && e.contains("[8]"),
        "{e}"
    );
    let t = Tensor::zeros(3, DType::U32, &Device::Cpu).unwrap();
    let e = cross_entropy_fwd_bwd(&x, &t, 1.0).unwrap_err().to_string();
    assert!(e.contains("targets") && e.contains("[4]"), "{e}");
    let s = Tensor::zeros((1, 1, 5, 3), DType::F32, &Device::Cpu).unwrap();
    let e = causal_softmax_fwd(&s, AttnMask::Causal, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiple"), "{e}");
}
