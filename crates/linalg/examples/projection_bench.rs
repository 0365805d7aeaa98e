//! Projection refresh on the CPU: exact SVD (GaLore) vs randomized subspace iteration (CrossLore,
//! DESIGN.md §1.2 item 1) vs cross-head projection from one head's slice (§1.2 item 2), for the
//! LLaMA-2-7B shapes q_proj 4096x4096, up/gate 11008x4096 and down 4096x11008 at r = 128.
//!
//! Run: `cargo run --release -p crosslore-linalg --example projection_bench [-- --quick] [--reps N]`
//! (`--quick`, or env `CROSSLORE_BENCH_QUICK=1`, uses the shapes divided by 4, r = 32, so that the
//! exact SVD does not take minutes on a shared 2-core machine).
//!
//! Test matrices have a decaying spectrum and are cheap to build: the "previous gradient"
//! `A1 = L diag(s) R^T + noise` with Gaussian `L: [m, K]`, `R: [n, K]` scaled to nearly orthonormal
//! columns, `s_i = 1 / (1 + i)`, `K = 512`, and Gaussian noise holding 10% of the energy; the
//! "current gradient" `A2 = A1 + 0.05 L2 diag(s[..64]) R2^T` (a slow drift). Every method computes
//! the projector of `A2` (side as galore-torch's `std`: Right if m >= n else Left), and the table
//! gives its relative residual `||A2 - proj(A2)||_F / ||A2||_F`. The warm start seeds `Omega` with
//! the q = 2 projector of `A1` (not timed). Cross-head takes the first 128 rows (one head of
//! `d_head` = 128) and `gram_subspace`, Right side only (it applies to q_proj/k_proj).
use anyhow::Result;
use candle_core::{Device, Tensor};
use crosslore_linalg::rsi::{gram_subspace, rsi_subspace, sketch_width, RsiConfig};
use crosslore_linalg::svd::{subspace_residual, svd_subspace};
use crosslore_linalg::{Rng, Side};
use std::time::Instant;

fn gaussian(rng: &mut Rng, m: usize, n: usize, scale: f64) -> Result<Tensor> {
    Ok((Tensor::from_vec(rng.normal_vec(m * n), (m, n), &Device::Cpu)? * scale)?)
}

/// `L diag(s) R^T` with nearly orthonormal Gaussian `L`, `R`.
fn low_rank(rng: &mut Rng, m: usize, n: usize, s: &[f32]) -> Result<Tensor> {
    let k = s.len();
    let l = gaussian(rng, m, k, 1.0 / (m as f64).sqrt())?;
    let r = gaussian(rng, n, k, 1.0 / (n as f64).sqrt())?;
    let d = Tensor::from_vec(s.to_vec(), (1, k), &Device::Cpu)?;
    Ok(l.broadcast_mul(&d)?.matmul(&r.t()?)?)
}

fn matrices(rng: &mut Rng, m: usize, n: usize) -> Result<(Tensor, Tensor)> {
    let s: Vec<f32> = (0..512).map(|i| 1.0 / (1.0 + i as f32)).collect();
    let energy: f64 = s.iter().map(|&x| (x as f64) * (x as f64)).sum();
    // noise energy = 0.1 * signal energy, spread over m n entries
    let sigma = (0.1 * energy / (m * n) as f64).sqrt();
    let a1 = (low_rank(rng, m, n, &s)? + gaussian(rng, m, n, sigma)?)?;
    let drift = (low_rank(rng, m, n, &s[..64])? * 0.05)?;
    let a2 = (&a1 + drift)?;
    Ok((a1, a2))
}

/// Best wall time (s) of `reps` runs.
fn best<T>(reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    let mut b = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        b = b.min(t.elapsed().as_secs_f64());
    }
    Ok(b)
}

/// Median wall time (s) of `reps` runs and the last result.
fn time<T>(reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut ts = Vec::with_capacity(reps);
    let mut out = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        out = Some(f()?);
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(|a, b| a.total_cmp(b));
    let out = out.ok_or_else(|| anyhow::anyhow!("no run"))?;
    Ok((ts[ts.len() / 2], out))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("CROSSLORE_BENCH_QUICK").is_ok_and(|v| v == "1");
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse::<usize>())
        .transpose()?
        .unwrap_or(5);
    let (shapes, r, d_head) = if quick {
        (vec![(1024, 1024), (2752, 1024), (1024, 2752)], 32, 32)
    } else {
        (vec![(4096, 4096), (11008, 4096), (4096, 11008)], 128, 128)
    };
    let cfg2 = RsiConfig {
        oversample: 8,
        power_iters: 2,
    };
    let cfg1 = RsiConfig {
        oversample: 8,
        power_iters: 1,
    };
    println!(
        "projection refresh, CPU, r = {r}, p = 8, reps = {reps} (exact SVD: 1 run){}",
        if quick { ", --quick" } else { "" }
    );

    println!("GEMM rate: best of {reps} f32 products [m x n] x [n x (r + p)] timed just before each shape");
    println!();
    println!("| shape (m x n) | side | method | time (s) | FLOP | GFLOP/s | floor at GEMM rate (s) | residual |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut rng = Rng::new(1);
    for &(m, n) in &shapes {
        let t = Instant::now();
        let (a1, a2) = matrices(&mut rng, m, n)?;
        eprintln!("generated {m}x{n} in {:.1} s", t.elapsed().as_secs_f64());
        let side = if m >= n { Side::Right } else { Side::Left };
        let k = sketch_width(r, &cfg2, m, n);
        let x = gaussian(&mut rng, n, k, 1.0)?;
        let t_gemm = best(reps, || Ok(a2.matmul(&x)?))?;
        let gflops = 2.0 * (m * n * k) as f64 / t_gemm / 1e9;
        eprintln!("GEMM [{m}x{n}]x[{n}x{k}]: {t_gemm:.3} s = {gflops:.1} GFLOP/s");
        let row = |name: &str, secs: f64, flop: f64, p: &Tensor| -> Result<()> {
            let res = subspace_residual(&a2, p, side)?;
            let (floor, rate) = (flop / (gflops * 1e9), flop / secs / 1e9);
            let flop = flop / 1e9;
            println!(
                "| {m} x {n} | {side:?} | {name} | {secs:.3} | {flop:.1} G | {rate:.1} | {floor:.3} | {res:.5} |"
            );
            Ok(())
        };
        let (mn, mx) = (m.min(n) as f64, m.max(n) as f64);
        // Golub-Kahan bidiagonalisation alone: 4 mx mn^2 - 4/3 mn^3 (then QR iterations, vectors).
        let svd_flop = 4.0 * mx * mn * mn - 4.0 / 3.0 * mn * mn * mn;
        let (ts, p) = time(1, || Ok(svd_subspace(&a2, r, side)?))?;
        row("exact SVD (faer, f32)", ts, svd_flop, &p)?;
        for (q, cfg) in [(2usize, &cfg2), (1, &cfg1)] {
            let flop = (2 * q + 2) as f64 * 2.0 * (m * n * k) as f64;
            let (t, p) = time(reps, || {
                Ok(rsi_subspace(&a2, r, side, cfg, &mut Rng::new(7), None)?)
            })?;
            row(&format!("RSI q={q}"), t, flop, &p)?;
        }
        let p1 = rsi_subspace(&a1, r, side, &cfg2, &mut Rng::new(3), None)?;
        let flop = 4.0 * 2.0 * (m * n * k) as f64;
        let (t, p) = time(reps, || {
            Ok(rsi_subspace(
                &a2,
                r,
                side,
                &cfg1,
                &mut Rng::new(7),
                Some(&p1),
            )?)
        })?;
        row("RSI q=1 warm", t, flop, &p)?;
        if side == Side::Right {
            let (t, p) = time(reps, || {
                let slice = a2.narrow(0, 0, d_head)?; // [d_head, n]: head 0's rows
                Ok(gram_subspace(&slice, r.min(d_head), Side::Right)?)
            })?;
            // CholeskyQR2 of the [n, d_head] slice: two Grams and two products, 8 n d_head^2.
            let flop = 8.0 * (n * d_head * d_head) as f64;
            row(
                &format!("cross-head ({d_head}x{n} slice, gram)"),
                t,
                flop,
                &p,
            )?;
        }
    }
    println!();
    println!(
        "FLOP: RSI = (2q + 2) * 2 m n (r + p) (products with A only; the QRs add O((m + n) k^2));"
    );
    println!(
        "exact SVD = 4 max(m,n) min(m,n)^2 - 4/3 min(m,n)^3 (Golub-Kahan bidiagonalisation only);"
    );
    println!("cross-head = 8 n d_head^2 (CholeskyQR2 of the [n, d_head] slice).");
    Ok(())
}
