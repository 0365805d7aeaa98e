//! Hardware rates measured in the same run, for the floors of P1/P2: device-copy bandwidth
//! (bytes read + written per second by a large device-to-device copy) and matmul rates (f32 and
//! bf16 `2 m n k / t`), each the median of several synchronised runs after a warm-up.
use candle_core::{DType, Device, Tensor};

use crate::timing::median_time;
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rates {
    /// Device copy, read + write, bytes/s.
    pub copy_bytes_per_s: f64,
    /// f32 matmul at the RSI product shape `[4096, 4096] x [4096, 136]`, FLOP/s.
    pub f32_thin_flops: f64,
    /// f32 matmul 8192^3, FLOP/s.
    pub f32_square_flops: f64,
    /// bf16 matmul 8192^3, FLOP/s.
    pub bf16_square_flops: f64,
}

fn matmul_rate(dev: &Device, m: usize, k: usize, n: usize, dt: DType, reps: usize) -> Result<f64> {
    let a = Tensor::randn(0f32, 1f32, (m, k), dev)?.to_dtype(dt)?;
    let b = Tensor::randn(0f32, 1f32, (k, n), dev)?.to_dtype(dt)?;
    let (t, _) = median_time(dev, 2, reps, || Ok(a.matmul(&b)?))?;
    Ok(2.0 * (m * n * k) as f64 / t)
}

/// Measures the rates; `scale` shrinks the problem sizes (1 = full size, for the GPU).
pub fn measure(dev: &Device, scale: usize) -> Result<Rates> {
    let s = scale.max(1);
    let elems = (1usize << 28) / (s * s); // 1 GiB of f32 at full size
    let copy_bytes_per_s = copy_rate(dev, elems)?;
    let big = 8192 / s;
    Ok(Rates {
        copy_bytes_per_s,
        f32_thin_flops: matmul_rate(dev, 4096 / s, 4096 / s, 136, DType::F32, 20)?,
        f32_square_flops: matmul_rate(dev, big, big, big, DType::F32, 5)?,
        bf16_square_flops: matmul_rate(dev, big, big, big, DType::BF16, 5)?,
    })
}

/// Bytes read + written per second by a device-to-device copy of `elems` f32: a raw
/// `cuMemcpyDtoDAsync` between two preallocated buffers on CUDA (candle's `Tensor::copy`
/// allocates and reached ~1.1 TB/s where the raw copy reaches ~4 TB/s), `Tensor::copy` elsewhere.
pub fn copy_rate(dev: &Device, elems: usize) -> Result<f64> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cd) = dev {
        let stream = cd.cuda_stream();
        let err = |e: candle_core::cuda_backend::cudarc::driver::DriverError| {
            crate::BenchError::Config(format!("CUDA copy benchmark: {e:?}"))
        };
        let src = stream.alloc_zeros::<f32>(elems).map_err(err)?;
        let mut dst = stream.alloc_zeros::<f32>(elems).map_err(err)?;
        let (t, _) = median_time(dev, 2, 10, || {
            stream.memcpy_dtod(&src, &mut dst).map_err(err)?;
            Ok(())
        })?;
        return Ok(2.0 * (elems * 4) as f64 / t);
    }
    let x = Tensor::zeros(elems, DType::F32, dev)?;
    let (t, _) = median_time(dev, 2, 10, || Ok(x.copy()?))?;
    Ok(2.0 * (elems * 4) as f64 / t)
}

/// Host-to-device upload time of `Tensor::from_vec` (pageable host memory) for several sizes:
/// `(f32 elements, median seconds with a fresh Vec each time, median seconds re-uploading one
/// Vec)`. RSI uploads its host-drawn Gaussian test matrix (`[n, r + p]`) this way.
pub fn htod_probe(dev: &Device) -> Result<Vec<(usize, f64, f64)>> {
    let mut out = Vec::new();
    for elems in [
        1usize << 10,
        1 << 14,
        1 << 16,
        1 << 18,
        4096 * 136,
        1 << 20,
        1 << 22,
    ] {
        let (fresh, _) = median_time(dev, 1, 5, || {
            let v = vec![1f32; elems];
            Ok(Tensor::from_vec(v, elems, dev)?)
        })?;
        let v = vec![1f32; elems];
        let (reused, _) = median_time(dev, 1, 5, || Ok(Tensor::from_slice(&v, elems, dev)?))?;
        out.push((elems, fresh, reused));
    }
    Ok(out)
}
