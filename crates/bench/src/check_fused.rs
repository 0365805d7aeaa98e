//! The CUDA kernels of `crosslore-fused` against its reference path (candle composite ops in f32
//! on the CPU) on the same seeded inputs (part of `gpu-check`, and alone in `fused-ops`), and
//! per-op timings at the LLaMA-2-7B layer shape (`fused-ops`).
//!
//! Measure: `rel = ||X_dev - X_cpu||_F / ||X_cpu||_F` for every output. Tolerances:
//! - f32: 1e-5. Both sides compute the same f32 formulas; they differ in summation order
//!   (row reductions of length <= 32000 as warp/block trees vs candle's sequential sums), in FMA
//!   contraction on the device and in the online (max, sum) of softmax and cross-entropy, each a
//!   few ulps (u = 6e-8) per entry, far below 1e-5; a wrong index or term gives O(1e-1).
//! - bf16: 4e-3. Outputs are rounded to bf16 once on both sides; the f32 differences above flip
//!   the rounding of a small fraction of entries by one bf16 ulp (2^-8 relative), so `rel` stays
//!   below ~2^-8 = 3.9e-3 even if every entry flipped. dw and the loss are f32 sums of bf16-input
//!   products (a flip of `round(n)` moves one term by 2^-8 of itself). Measured on the H200
//!   (bench/results/2026-11-29-h200-fused, then with a 1e-2 tolerance): at most 1.9e-5.
//!
//! Timing: bf16 at the 7B layer shape (batch 4 x 512, hidden 4096, ffn 11008, 32 heads of 128,
//! vocab 32000). Wall: median over `reps` synchronised runs of 10 back-to-back calls (after 2
//! warm-up runs), divided by 10; it includes the host's launch and allocation overhead, which
//! dominates the smallest ops. GPU: the same 10 calls queued behind ~1.4 ms of matmuls and timed
//! with CUDA events, i.e. the kernels alone. The floor is the op's minimal HBM traffic at the
//! measured device-copy rate; the same call through `crosslore_fused::reference` (candle
//! composite ops on the device) is timed (wall) beside it, except cross-entropy (its reference
//! builds the one-hot on the host).
use candle_core::{DType, Device, Tensor};
use crosslore_fused::{self as fused, reference, AttnMask, IGNORE};
use crosslore_linalg::Rng;
use serde::Serialize;

use crate::check::{rel, CheckReport};
use crate::timing::median_time;
use crate::Result;

const DTYPES: [(DType, f64); 2] = [(DType::F32, 1e-5), (DType::BF16, 4e-3)];

fn randn(rng: &mut Rng, dims: &[usize], scale: f32, shift: f32, dt: DType) -> Result<Tensor> {
    let n = dims.iter().product();
    let v: Vec<f32> = rng
        .normal_vec(n)
        .iter()
        .map(|x| x * scale + shift)
        .collect();
    Ok(Tensor::from_vec(v, dims, &Device::Cpu)?.to_dtype(dt)?)
}

/// `(cos, sin)` of transformers' LLaMA rotary tables (base 10000, halves duplicated), `[s, d]`.
fn rope_tables(s: usize, d: usize, dt: DType) -> Result<(Tensor, Tensor)> {
    let mut cos = Vec::with_capacity(s * d);
    let mut sin = Vec::with_capacity(s * d);
    for p in 0..s {
        for i in 0..d {
            let f = 10000f64.powf(-2.0 * (i % (d / 2)) as f64 / d as f64);
            let a = p as f64 * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    let t = |v: Vec<f32>| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, (s, d), &Device::Cpu)?.to_dtype(dt)?)
    };
    Ok((t(cos)?, t(sin)?))
}

/// The checks of one dtype: inputs drawn from `rng`, results pushed to `rep`.
struct Pass<'a> {
    rng: &'a mut Rng,
    dev: &'a Device,
    dt: DType,
    tol: f64,
    rep: &'a mut CheckReport,
}

impl Pass<'_> {
    /// Host tensor of `dims` in the pass's dtype: `scale * N(0, 1) + shift`.
    fn randn(&mut self, dims: &[usize], scale: f32, shift: f32) -> Result<Tensor> {
        randn(self.rng, dims, scale, shift, self.dt)
    }

    fn on(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.to_device(self.dev)?)
    }

    /// Compares each device output with the CPU one.
    fn compare(&mut self, name: &str, pairs: &[(&str, &Tensor, &Tensor)]) -> Result<()> {
        let ty = format!("{:?}", self.dt).to_lowercase();
        for (what, d, c) in pairs {
            let name = format!("{name} {ty} {what}");
            if d.dims() != c.dims() || d.dtype() != c.dtype() {
                self.rep.push(
                    &format!("{name}: shape/dtype"),
                    0.0,
                    f64::INFINITY,
                    self.tol,
                );
                continue;
            }
            let (mx, r) = rel(d, c, None)?;
            self.rep.push(&name, mx, r, self.tol);
        }
        Ok(())
    }

    /// RMSNorm: 7B rows, odd widths (scalar path), a width past 48 KB of shared memory.
    fn rms_norm(&mut self) -> Result<()> {
        for (rows, h) in [(2048, 4096), (37, 1001), (3, 7), (8, 16384)] {
            let x = self.randn(&[rows, h], 1.0, 0.0)?;
            let w = self.randn(&[h], 0.1, 1.0)?;
            let dy = self.randn(&[rows, h], 1.0, 0.0)?;
            let (xd, wd) = (self.on(&x)?, self.on(&w)?);
            let c = fused::rms_norm_fwd(&x, &w, 1e-5)?;
            let d = fused::rms_norm_fwd(&xd, &wd, 1e-5)?;
            let name = format!("rms_norm_fwd [{rows},{h}]");
            self.compare(&name, &[("y", &d.y, &c.y), ("rstd", &d.rstd, &c.rstd)])?;
            let (dxc, dwc) = fused::rms_norm_bwd(&dy, &x, &w, &c.rstd)?;
            let (dxd, dwd) = fused::rms_norm_bwd(&self.on(&dy)?, &xd, &wd, &self.on(&c.rstd)?)?;
            let name = format!("rms_norm_bwd [{rows},{h}]");
            self.compare(&name, &[("dx", &dxd, &dxc), ("dw", &dwd, &dwc)])?;
        }
        Ok(())
    }

    /// RoPE: 7B q, d = 64, s = 1, an odd half (scalar path).
    fn rope(&mut self) -> Result<()> {
        for (b, s, n, d) in [
            (4, 512, 32, 128),
            (2, 7, 3, 64),
            (1, 1, 2, 64),
            (2, 5, 3, 6),
        ] {
            let (cos, sin) = rope_tables(s, d, self.dt)?;
            let x = self.randn(&[b, s, n, d], 1.0, 0.0)?;
            let dy = self.randn(&[b, n, s, d], 1.0, 0.0)?;
            let (cd, sd) = (self.on(&cos)?, self.on(&sin)?);
            let yc = fused::rope_fwd(&x, &cos, &sin)?;
            let yd = fused::rope_fwd(&self.on(&x)?, &cd, &sd)?;
            let dxc = fused::rope_bwd(&dy, &cos, &sin)?;
            let dxd = fused::rope_bwd(&self.on(&dy)?, &cd, &sd)?;
            let name = format!("rope [b{b},s{s},n{n},d{d}]");
            self.compare(&name, &[("fwd", &yd, &yc), ("bwd", &dxd, &dxc)])?;
        }
        Ok(())
    }

    fn swiglu(&mut self) -> Result<()> {
        for (rows, f) in [(256, 11008), (7, 1001)] {
            let g = self.randn(&[rows, f], 2.0, 0.0)?;
            let u = self.randn(&[rows, f], 1.0, 0.0)?;
            let dh = self.randn(&[rows, f], 1.0, 0.0)?;
            let (gd, ud) = (self.on(&g)?, self.on(&u)?);
            let hc = fused::swiglu_fwd(&g, &u)?;
            let hd = fused::swiglu_fwd(&gd, &ud)?;
            let (dgc, duc) = fused::swiglu_bwd(&dh, &g, &u)?;
            let (dgd, dud) = fused::swiglu_bwd(&self.on(&dh)?, &gd, &ud)?;
            let name = format!("swiglu [{rows},{f}]");
            self.compare(
                &name,
                &[("h", &hd, &hc), ("dg", &dgd, &dgc), ("du", &dud, &duc)],
            )?;
        }
        Ok(())
    }

    /// Causal softmax `(b, n_kv, g, s)`: 7B-like heads, GQA g = 2 (rows held in registers: one
    /// or two vectors per lane), s = 1 with g = 3, an odd s (scalar path); causal alone and with
    /// a key mask.
    fn softmax(&mut self) -> Result<()> {
        for (b, nkv, g, s) in [
            (1, 8, 1, 512),
            (2, 2, 2, 64),
            (1, 2, 2, 256),
            (2, 3, 3, 1),
            (2, 2, 1, 77),
        ] {
            let scores = self.randn(&[b, nkv, g * s, s], 3.0, 0.0)?;
            let dp = self.randn(&[b, nkv, g * s, s], 1.0, 0.0)?;
            // Key mask: batch 0 all ones; batch 1 left-padded by min(5, s) keys (its first rows
            // are fully masked) with one more hole in the middle.
            let mut m = vec![1f32; b * s];
            for j in 0..s.min(5) {
                m[(b - 1) * s + j] = 0.0;
            }
            if s > 10 {
                m[(b - 1) * s + s / 2] = 0.0;
            }
            let mask = Tensor::from_vec(m, (b, s), &Device::Cpu)?;
            let scale = 1.0 / (s as f32).sqrt();
            let (sd, maskd, dpd) = (self.on(&scores)?, self.on(&mask)?, self.on(&dp)?);
            for (label, mc, md) in [
                ("causal", AttnMask::Causal, AttnMask::Causal),
                (
                    "causal+keys",
                    AttnMask::CausalKeys(&mask),
                    AttnMask::CausalKeys(&maskd),
                ),
            ] {
                let pc = fused::causal_softmax_fwd(&scores, mc, scale)?;
                let pd = fused::causal_softmax_fwd(&sd, md, scale)?;
                let dsc = fused::causal_softmax_bwd(&dp, &pc, scale)?;
                let dsd = fused::causal_softmax_bwd(&dpd, &self.on(&pc)?, scale)?;
                let name = format!("causal_softmax {label} [b{b},kv{nkv},g{g},s{s}]");
                self.compare(&name, &[("fwd", &pd, &pc), ("bwd", &dsd, &dsc)])?;
            }
        }
        Ok(())
    }

    /// Cross-entropy: every 10th row ignored, row 3 out of range (treated as ignored); rows held
    /// in registers (32000 bf16, 4104 f32/bf16) and not (32000 f32, odd widths).
    fn xent(&mut self) -> Result<()> {
        for (rows, vocab) in [(256, 32000), (5, 4104), (13, 1001), (1, 7)] {
            let logits = self.randn(&[rows, vocab], 2.0, 0.0)?;
            let t: Vec<u32> = (0..rows)
                .map(|r| match r {
                    _ if r % 10 == 9 => IGNORE,
                    3 => vocab as u32 + 5,
                    _ => self.rng.below(vocab as u64) as u32,
                })
                .collect();
            let targets = Tensor::from_vec(t, rows, &Device::Cpu)?;
            let scale = 1.0 / rows as f32;
            let c = fused::cross_entropy_fwd_bwd(&logits, &targets, scale)?;
            let d = fused::cross_entropy_fwd_bwd(&self.on(&logits)?, &self.on(&targets)?, scale)?;
            self.compare(
                &format!("cross_entropy [{rows},{vocab}]"),
                &[
                    ("loss_sum", &d.loss_sum, &c.loss_sum),
                    ("dlogits", &d.dlogits, &c.dlogits),
                ],
            )?;
        }
        Ok(())
    }
}

/// Every fused op on `dev` (CUDA) vs the CPU reference, f32 and bf16; nothing on other devices.
pub fn run(dev: &Device, seed: u64, rep: &mut CheckReport) -> Result<()> {
    if !dev.is_cuda() {
        return Ok(());
    }
    let mut rng = Rng::new(seed + 23);
    for (dt, tol) in DTYPES {
        let mut p = Pass {
            rng: &mut rng,
            dev,
            dt,
            tol,
            rep: &mut *rep,
        };
        p.rms_norm()?;
        p.rope()?;
        p.swiglu()?;
        p.softmax()?;
        p.xent()?;
    }
    Ok(())
}

/// One op's timing at the 7B layer shape.
#[derive(Debug, Clone, Serialize)]
pub struct OpTime {
    pub op: String,
    pub shape: String,
    /// Fused kernel, wall ms per call (host launch overhead included: back-to-back calls).
    pub fused_ms: f64,
    /// Fused kernel, GPU ms per call with the host out of the way (calls queued behind ~1 ms
    /// of matmuls, CUDA events around them); None without CUDA.
    pub fused_gpu_ms: Option<f64>,
    /// The reference (candle composite ops) on the same device, ms per call; None if not timed.
    pub composite_ms: Option<f64>,
    /// Minimal bytes read + written.
    pub bytes: f64,
    /// `bytes` at the measured device-copy rate, ms.
    pub floor_ms: f64,
}

/// Per-call seconds of `f`: median over `reps` runs of `calls` back-to-back calls.
fn per_call<T, E: Into<crate::BenchError>>(
    dev: &Device,
    reps: usize,
    calls: usize,
    mut f: impl FnMut() -> std::result::Result<T, E>,
) -> Result<f64> {
    let (t, _) = median_time(dev, 2, reps, || {
        for _ in 0..calls {
            f().map_err(Into::into)?;
        }
        Ok(())
    })?;
    Ok(t / calls as f64)
}

/// GPU seconds per call of `f` (median over `reps` runs of `calls` calls): each run first queues
/// 8 bf16 matmuls of 4096^3 (~1.4 ms), so the host has enqueued every call before the GPU
/// reaches them, and times the calls with CUDA events.
#[cfg(feature = "cuda")]
fn gpu_per_call<T, E: Into<crate::BenchError>>(
    dev: &Device,
    reps: usize,
    calls: usize,
    mut f: impl FnMut() -> std::result::Result<T, E>,
) -> Result<Option<f64>> {
    use candle_core::cuda_backend::cudarc::driver::sys::CUevent_flags;
    let Device::Cuda(cd) = dev else {
        return Ok(None);
    };
    let stream = cd.cuda_stream();
    let cuda = |e: candle_core::cuda_backend::cudarc::driver::DriverError| {
        crate::BenchError::Config(format!("CUDA event: {e:?}"))
    };
    let busy = Tensor::ones((4096, 4096), DType::BF16, dev)?;
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        dev.synchronize()?;
        for _ in 0..8 {
            busy.matmul(&busy)?;
        }
        let e0 = stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(cuda)?;
        for _ in 0..calls {
            f().map_err(Into::into)?;
        }
        let e1 = stream
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(cuda)?;
        v.push(e0.elapsed_ms(&e1).map_err(cuda)? as f64 * 1e-3 / calls as f64);
    }
    Ok(Some(crate::timing::median(&v)))
}

#[cfg(not(feature = "cuda"))]
fn gpu_per_call<T, E: Into<crate::BenchError>>(
    _dev: &Device,
    _reps: usize,
    _calls: usize,
    _f: impl FnMut() -> std::result::Result<T, E>,
) -> Result<Option<f64>> {
    Ok(None)
}

/// `(wall, GPU)` seconds per call of a fused op: 10 back-to-back calls per timed run.
fn fused_time<T, E: Into<crate::BenchError>>(
    dev: &Device,
    reps: usize,
    mut f: impl FnMut() -> std::result::Result<T, E>,
) -> Result<(f64, Option<f64>)> {
    let wall = per_call(dev, reps, 10, &mut f)?;
    Ok((wall, gpu_per_call(dev, reps, 10, f)?))
}

/// Times every fused op (bf16, 7B layer shape) and its composite reference on `dev`.
pub fn timings(dev: &Device, reps: usize, seed: u64) -> Result<Vec<OpTime>> {
    let copy = crate::floors::copy_rate(dev, 1 << 28)?;
    let mut rng = Rng::new(seed + 29);
    let dt = DType::BF16;
    let e = dt.size_in_bytes() as f64;
    let mut out = Vec::new();
    let on = |t: Tensor| -> Result<Tensor> { Ok(t.to_device(dev)?) };
    let mut push =
        |op: &str, shape: &str, bytes: f64, fused: (f64, Option<f64>), comp_s: Option<f64>| {
            out.push(OpTime {
                op: op.into(),
                shape: shape.into(),
                fused_ms: fused.0 * 1e3,
                fused_gpu_ms: fused.1.map(|s| s * 1e3),
                composite_ms: comp_s.map(|s| s * 1e3),
                bytes,
                floor_ms: bytes / copy * 1e3,
            });
        };
    let creps = reps.min(5);

    let (rows, h, f) = (2048usize, 4096usize, 11008usize);
    let x = on(randn(&mut rng, &[rows, h], 1.0, 0.0, dt)?)?;
    let w = on(randn(&mut rng, &[h], 0.1, 1.0, dt)?)?;
    let dy = on(randn(&mut rng, &[rows, h], 1.0, 0.0, dt)?)?;
    let rstd = fused::rms_norm_fwd(&x, &w, 1e-5)?.rstd;
    let n = (rows * h) as f64;
    let shape = format!("[{rows},{h}]");
    let a = fused_time(dev, reps, || fused::rms_norm_fwd(&x, &w, 1e-5))?;
    let b = per_call(dev, creps, 2, || reference::rms_norm_fwd(&x, &w, 1e-5))?;
    push("rms_norm_fwd", &shape, 2.0 * n * e, a, Some(b));
    let a = fused_time(dev, reps, || fused::rms_norm_bwd(&dy, &x, &w, &rstd))?;
    let b = per_call(dev, creps, 2, || {
        reference::rms_norm_bwd(&dy, &x, &w, &rstd)
    })?;
    push(
        "rms_norm_bwd",
        &shape,
        3.0 * n * e + 4.0 * h as f64,
        a,
        Some(b),
    );

    let (bb, s, heads, d) = (4usize, 512usize, 32usize, 128usize);
    let (cos, sin) = rope_tables(s, d, dt)?;
    let (cos, sin) = (on(cos)?, on(sin)?);
    let q = on(randn(&mut rng, &[bb, s, heads, d], 1.0, 0.0, dt)?)?;
    let dq = on(randn(&mut rng, &[bb, heads, s, d], 1.0, 0.0, dt)?)?;
    let n = (bb * s * heads * d) as f64;
    let shape = format!("[{bb},{s},{heads},{d}]");
    let a = fused_time(dev, reps, || fused::rope_fwd(&q, &cos, &sin))?;
    let b = per_call(dev, creps, 2, || reference::rope_fwd(&q, &cos, &sin))?;
    push("rope_fwd (+ transpose)", &shape, 2.0 * n * e, a, Some(b));
    let a = fused_time(dev, reps, || fused::rope_bwd(&dq, &cos, &sin))?;
    let b = per_call(dev, creps, 2, || reference::rope_bwd(&dq, &cos, &sin))?;
    push("rope_bwd (+ transpose)", &shape, 2.0 * n * e, a, Some(b));

    let g = on(randn(&mut rng, &[rows, f], 2.0, 0.0, dt)?)?;
    let u = on(randn(&mut rng, &[rows, f], 1.0, 0.0, dt)?)?;
    let dh = on(randn(&mut rng, &[rows, f], 1.0, 0.0, dt)?)?;
    let n = (rows * f) as f64;
    let shape = format!("[{rows},{f}]");
    let a = fused_time(dev, reps, || fused::swiglu_fwd(&g, &u))?;
    let b = per_call(dev, creps, 2, || reference::swiglu_fwd(&g, &u))?;
    push("swiglu_fwd", &shape, 3.0 * n * e, a, Some(b));
    let a = fused_time(dev, reps, || fused::swiglu_bwd(&dh, &g, &u))?;
    let b = per_call(dev, creps, 2, || reference::swiglu_bwd(&dh, &g, &u))?;
    push("swiglu_bwd", &shape, 5.0 * n * e, a, Some(b));

    // Scores of all heads: [b, n_kv, g s, s] with g = 1. Minimal traffic reads the causal
    // triangle (s (s + 1) / 2 per head) and writes the whole matrix.
    let sc = on(randn(&mut rng, &[bb, heads, s, s], 3.0, 0.0, dt)?)?;
    let dp = on(randn(&mut rng, &[bb, heads, s, s], 1.0, 0.0, dt)?)?;
    let scale = 1.0 / (d as f32).sqrt();
    let p = fused::causal_softmax_fwd(&sc, AttnMask::Causal, scale)?;
    let (full, tri) = (
        (bb * heads * s * s) as f64,
        (bb * heads * s * (s + 1) / 2) as f64,
    );
    let shape = format!("[{bb},{heads},{s},{s}]");
    let a = fused_time(dev, reps, || {
        fused::causal_softmax_fwd(&sc, AttnMask::Causal, scale)
    })?;
    let b = per_call(dev, creps, 2, || {
        reference::causal_softmax_fwd(&sc, AttnMask::Causal, scale)
    })?;
    push("causal_softmax_fwd", &shape, (tri + full) * e, a, Some(b));
    let a = fused_time(dev, reps, || fused::causal_softmax_bwd(&dp, &p, scale))?;
    let b = per_call(dev, creps, 2, || {
        reference::causal_softmax_bwd(&dp, &p, scale)
    })?;
    push(
        "causal_softmax_bwd",
        &shape,
        (2.0 * tri + full) * e,
        a,
        Some(b),
    );

    let vocab = 32000usize;
    let logits = on(randn(&mut rng, &[rows, vocab], 2.0, 0.0, dt)?)?;
    let tg: Vec<u32> = (0..rows).map(|_| rng.below(vocab as u64) as u32).collect();
    let targets = on(Tensor::from_vec(tg, rows, &Device::Cpu)?)?;
    let n = (rows * vocab) as f64;
    let a = fused_time(dev, reps, || {
        fused::cross_entropy_fwd_bwd(&logits, &targets, 1.0)
    })?;
    push(
        "cross_entropy_fwd_bwd",
        &format!("[{rows},{vocab}]"),
        2.0 * n * e,
        a,
        None,
    );
    // A/B: the softmax and cross-entropy rows read twice instead of held in registers.
    #[cfg(feature = "cuda")]
    {
        crosslore_fused::cuda::set_row_cache(false);
        let two_pass = (|| -> Result<_> {
            Ok([
                fused_time(dev, reps, || {
                    fused::causal_softmax_fwd(&sc, AttnMask::Causal, scale)
                })?,
                fused_time(dev, reps, || fused::causal_softmax_bwd(&dp, &p, scale))?,
                fused_time(dev, reps, || {
                    fused::cross_entropy_fwd_bwd(&logits, &targets, 1.0)
                })?,
            ])
        })();
        crosslore_fused::cuda::set_row_cache(true);
        let [f, b, x] = two_pass?;
        push(
            "causal_softmax_fwd, rows read twice",
            &shape,
            (tri + full) * e,
            f,
            None,
        );
        push(
            "causal_softmax_bwd, rows read twice",
            &shape,
            (2.0 * tri + full) * e,
            b,
            None,
        );
        let xs = format!("[{rows},{vocab}]");
        push(
            "cross_entropy_fwd_bwd, rows read twice",
            &xs,
            2.0 * n * e,
            x,
            None,
        );
    }
    Ok(out)
}

/// Markdown table of [`timings`]; the ratio is GPU time over the floor (wall time without CUDA).
pub fn table(ts: &[OpTime]) -> String {
    let mut s = String::from(
        "| op (bf16) | shape | fused wall ms | fused GPU ms | candle composite wall ms | MB moved | copy floor ms | fused GPU / floor |\n|---|---|---|---|---|---|---|---|\n",
    );
    let opt = |v: Option<f64>| v.map_or("-".into(), |c| format!("{c:.3}"));
    for t in ts {
        s.push_str(&format!(
            "| {} | {} | {:.3} | {} | {} | {:.1} | {:.3} | {:.2} |\n",
            t.op,
            t.shape,
            t.fused_ms,
            opt(t.fused_gpu_ms),
            opt(t.composite_ms),
            t.bytes / 1e6,
            t.floor_ms,
            t.fused_gpu_ms.unwrap_or(t.fused_ms) / t.floor_ms
        ));
    }
    s
}

/// `fused-ops`: the checks of [`run`] and the [`timings`].
#[derive(Debug, Clone, Serialize)]
pub struct FusedOpsReport {
    pub checks: CheckReport,
    pub timings: Vec<OpTime>,
}

/// Runs the fused-op checks, then the timings (CUDA only).
pub fn fused_ops(dev: &Device, seed: u64, reps: usize) -> Result<FusedOpsReport> {
    if !dev.is_cuda() {
        return Err(crate::BenchError::Config(
            "fused-ops compares CUDA kernels with the CPU: needs --device cuda".into(),
        ));
    }
    let mut checks = CheckReport {
        device: crate::device_name(dev),
        ..Default::default()
    };
    run(dev, seed, &mut checks)?;
    let timings = timings(dev, reps, seed)?;
    Ok(FusedOpsReport { checks, timings })
}
