//! `gpu-check`: the device sum of squares of gradients (`crosslore_linalg::kernels::sq_norms_many`,
//! which `crosslore_train::grads::sq_norms` uses on CUDA for the gradient norm and clipping)
//! against the CPU path of the same function, and its time against the candle-op path it
//! replaced (convert to f32, square, row sums, sum) on the gradients of one 7B layer.
//!
//! Tolerance: relative 1e-5. Both sides sum f32 squares (inputs O(1)) in different orders: the
//! device in per-thread runs (<= 2 entries per thread for these sizes), warp shuffles and an f64
//! sum of 1024 partials; the CPU in rows (at most 4097 entries here), then the row sums. The
//! longest sequential f32 run is the CPU's row of 4097: at most 4097 u = 2.4e-4 in the worst
//! order, sqrt(4097) u = 3.8e-6 for rounding errors of random sign (u = 6e-8); 1e-5 is 2.6x the
//! latter. Measured on the H200 (2026-11-29): 9.7e-8 (f32), 1.8e-7 (bf16).
use candle_core::{DType, Device, Tensor, D};
use crosslore_linalg::Rng;
use crosslore_train::grads::sq_norms;

use crate::check::{gaussian, CheckReport};
use crate::timing::median_time;
use crate::Result;

pub(super) fn run(dev: &Device, seed: u64, rep: &mut CheckReport) -> Result<()> {
    let mut rng = Rng::new(seed + 31);
    // tall, wide, square, a vector, a zero matrix, a rank-1 matrix; f32 and bf16
    let mut cases: Vec<Tensor> = Vec::new();
    for (m, n) in [(700usize, 300usize), (300, 700), (512, 512), (1, 4097)] {
        cases.push(gaussian(&mut rng, m, n)?);
    }
    cases.push(Tensor::zeros((64, 96), DType::F32, &Device::Cpu)?);
    let u = gaussian(&mut rng, 200, 1)?;
    let v = gaussian(&mut rng, 1, 150)?;
    cases.push(u.matmul(&v)?);
    for dtype in [DType::F32, DType::BF16] {
        let host: Vec<Tensor> = cases
            .iter()
            .map(|t| t.to_dtype(dtype))
            .collect::<candle_core::Result<_>>()?;
        let devs: Vec<Tensor> = host
            .iter()
            .map(|t| t.to_device(dev))
            .collect::<candle_core::Result<_>>()?;
        let c = sq_norms(&host.iter().collect::<Vec<_>>())?;
        let d = sq_norms(&devs.iter().collect::<Vec<_>>())?;
        let (mut mx, mut worst) = (0f64, 0f64);
        for (x, y) in d.iter().zip(&c) {
            mx = mx.max((x - y).abs());
            worst = worst.max(if *y == 0.0 {
                (x - y).abs()
            } else {
                (x - y).abs() / y
            });
        }
        rep.push(
            &format!(
                "sq_norms {dtype:?} tall/wide/square/vector/zero/rank-1: max |dev - cpu| / cpu"
            ),
            mx,
            worst,
            1e-5,
        );
    }
    // One 7B layer's gradients, bf16: q, k, v, o [4096, 4096], gate, up [11008, 4096], down
    // [4096, 11008]. Device kernel vs the candle-op path; the floor is one read of 2 bytes each.
    let shapes = [
        (4096usize, 4096usize),
        (4096, 4096),
        (4096, 4096),
        (4096, 4096),
        (11008, 4096),
        (11008, 4096),
        (4096, 11008),
    ];
    let grads: Vec<Tensor> = shapes
        .iter()
        .map(|&(m, n)| Ok(Tensor::randn(0f32, 1f32, (m, n), dev)?.to_dtype(DType::BF16)?))
        .collect::<Result<_>>()?;
    let refs: Vec<&Tensor> = grads.iter().collect();
    let (tk, _) = median_time(dev, 1, 5, || Ok(sq_norms(&refs)?))?;
    let (tc, _) = median_time(dev, 1, 5, || {
        let each = refs
            .iter()
            .map(|g| Ok(g.to_dtype(DType::F32)?.sqr()?.sum(D::Minus1)?.sum_all()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&each, 0)?.to_vec1::<f32>()?)
    })?;
    let bytes: usize = grads.iter().map(|g| g.elem_count() * 2).sum();
    println!(
        "TIME sq_norms one 7B layer (7 bf16 gradients, {:.0} MB): kernel {:.3} ms, candle ops {:.3} ms ({:.1}x); floor at 4.8 TB/s {:.3} ms",
        bytes as f64 / 1e6,
        tk * 1e3,
        tc * 1e3,
        tc / tk,
        bytes as f64 / 4.8e12 * 1e3
    );
    Ok(())
}
