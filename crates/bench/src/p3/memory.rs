//! Device memory of a P3 arm: the CUDA memory pool that candle/cudarc allocate from (high-water
//! marks, trimming, free memory), the arm's peak ([`PoolPeak`]) and the largest-batch search's
//! budget ([`memory_budget`]). Off CUDA every figure is `None`.
use candle_core::Device;

use crate::Result;

/// The CUDA memory pool that `cuMemAllocAsync` (candle/cudarc) allocates from.
#[cfg(feature = "cuda")]
pub(super) mod pool {
    use candle_core::cuda_backend::cudarc::driver::sys;
    use candle_core::Device;

    use crate::{BenchError, Result};

    fn check(what: &str, r: sys::CUresult) -> Result<()> {
        if r == sys::CUresult::CUDA_SUCCESS {
            Ok(())
        } else {
            Err(BenchError::Config(format!("{what}: {r:?}")))
        }
    }

    /// (current pool of the device, whether it is the default pool).
    pub fn current(dev: &Device) -> Result<Option<(sys::CUmemoryPool, bool)>> {
        let Device::Cuda(cd) = dev else {
            return Ok(None);
        };
        let stream = cd.cuda_stream();
        let ctx = stream.context();
        ctx.bind_to_thread()
            .map_err(|e| BenchError::Config(format!("binding the CUDA context: {e:?}")))?;
        let d = ctx.cu_device();
        let mut cur: sys::CUmemoryPool = std::ptr::null_mut();
        let mut def: sys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: out-pointers to locals; `d` is the context's device.
        unsafe {
            check("cuDeviceGetMemPool", sys::cuDeviceGetMemPool(&mut cur, d))?;
            check(
                "cuDeviceGetDefaultMemPool",
                sys::cuDeviceGetDefaultMemPool(&mut def, d),
            )?;
        }
        Ok(Some((cur, cur == def)))
    }

    const USED_HIGH: sys::CUmemPool_attribute =
        sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH;
    const RESERVED_HIGH: sys::CUmemPool_attribute =
        sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH;

    /// Resets both high-water marks to 0 (the only value the driver accepts).
    pub fn reset_high(p: sys::CUmemoryPool) -> Result<()> {
        for a in [USED_HIGH, RESERVED_HIGH] {
            let mut zero: u64 = 0;
            // SAFETY: the attribute takes a cuuint64_t.
            unsafe {
                check(
                    "cuMemPoolSetAttribute",
                    sys::cuMemPoolSetAttribute(p, a, (&mut zero as *mut u64).cast()),
                )?;
            }
        }
        Ok(())
    }

    /// Releases the pool's unused reserved memory to the driver (the trainer sets the release
    /// threshold to the maximum, so freed memory otherwise stays in the pool).
    pub fn trim(p: sys::CUmemoryPool) -> Result<()> {
        // SAFETY: `p` is a pool of the current context.
        unsafe { check("cuMemPoolTrimTo", sys::cuMemPoolTrimTo(p, 0)) }
    }

    /// Memory the pool holds from the driver now, bytes.
    pub fn reserved(p: sys::CUmemoryPool) -> Result<u64> {
        let mut v: u64 = 0;
        // SAFETY: the attribute is a cuuint64_t written to `v`.
        unsafe {
            check(
                "cuMemPoolGetAttribute",
                sys::cuMemPoolGetAttribute(
                    p,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT,
                    (&mut v as *mut u64).cast(),
                ),
            )?;
        }
        Ok(v)
    }

    /// (free, total) device memory, bytes (`cuMemGetInfo`; the context is bound by [`current`]).
    pub fn mem_info() -> Result<(usize, usize)> {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: out-pointers to locals.
        unsafe { check("cuMemGetInfo", sys::cuMemGetInfo_v2(&mut free, &mut total))? };
        Ok((free, total))
    }

    /// (used high-water mark, reserved high-water mark), bytes.
    pub fn high(p: sys::CUmemoryPool) -> Result<(u64, u64)> {
        let mut out = [0u64; 2];
        for (a, v) in [USED_HIGH, RESERVED_HIGH].into_iter().zip(out.iter_mut()) {
            // SAFETY: the attribute is a cuuint64_t written to `v`.
            unsafe {
                check(
                    "cuMemPoolGetAttribute",
                    sys::cuMemPoolGetAttribute(p, a, (v as *mut u64).cast()),
                )?;
            }
        }
        Ok((out[0], out[1]))
    }
}

/// Peak memory of one arm from the device's memory pool (CUDA only).
pub(super) struct PoolPeak {
    #[cfg(feature = "cuda")]
    pool: Option<candle_core::cuda_backend::cudarc::driver::sys::CUmemoryPool>,
}

impl PoolPeak {
    /// Trims the pool and resets its high-water marks (after a synchronisation).
    pub(super) fn start(dev: &Device) -> Result<Self> {
        dev.synchronize()?;
        #[cfg(feature = "cuda")]
        {
            let pool = pool::current(dev)?.map(|(p, _)| p);
            if let Some(p) = pool {
                pool::trim(p)?;
                pool::reset_high(p)?;
            }
            Ok(Self { pool })
        }
        #[cfg(not(feature = "cuda"))]
        Ok(Self {})
    }

    /// (used, reserved) high-water marks in GiB since [`Self::start`].
    pub(super) fn finish(&self, dev: &Device) -> Result<(Option<f64>, Option<f64>)> {
        dev.synchronize()?;
        #[cfg(feature = "cuda")]
        if let Some(p) = self.pool {
            let (u, r) = pool::high(p)?;
            let gib = |b: u64| Some(b as f64 / (1u64 << 30) as f64);
            return Ok((gib(u), gib(r)));
        }
        Ok((None, None))
    }
}

/// (card memory, reservation the next run may make) in GiB, after trimming the pool: free device
/// memory plus what the pool still holds (counted in the run's reserved figure), minus
/// `free_fraction` of the card. `None` off CUDA.
pub(super) fn memory_budget(dev: &Device, free_fraction: f64) -> Result<Option<(f64, f64)>> {
    dev.synchronize()?;
    #[cfg(feature = "cuda")]
    if let Some((p, _)) = pool::current(dev)? {
        pool::trim(p)?;
        let held = pool::reserved(p)? as f64;
        let (free, total) = pool::mem_info()?;
        let gib = (1u64 << 30) as f64;
        let total = total as f64 / gib;
        return Ok(Some((
            total,
            (free as f64 + held) / gib - free_fraction * total,
        )));
    }
    let _ = free_fraction;
    Ok(None)
}
