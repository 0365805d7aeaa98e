//! Keeping freed device memory in the CUDA memory pool (issue 8 item 2; DESIGN.md §3, "candle
//! pitfalls"): cudarc allocates with `cuMemAllocAsync` from the device's current pool, whose
//! default release threshold (0) hands freed memory back to the driver at every
//! synchronisation, so each training step re-allocates its activations from the driver
//! (measured 27 vs 31 ms per 7B layer step). Setting the threshold to the maximum keeps them
//! in the pool for reuse; the memory stays owned by the process either way.

use candle_core::Device;

use crate::error::Result;

/// Sets the release threshold of `dev`'s current memory pool to the maximum. Does nothing on
/// a CPU device. Idempotent; call before the first large allocation.
pub fn keep_memory_pool(dev: &Device) -> Result<()> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cd) = dev {
        use candle_core::cuda_backend::cudarc::driver::sys;
        let stream = cd.cuda_stream();
        let ctx = stream.context();
        ctx.bind_to_thread().map_err(|e| {
            crate::error::invalid(
                "keep_memory_pool",
                format!("binding the CUDA context: {e:?}"),
            )
        })?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        let mut max: u64 = u64::MAX;
        // SAFETY: out-pointer to a local; the attribute takes a cuuint64_t.
        let r = unsafe {
            let r = sys::cuDeviceGetMemPool(&mut pool, ctx.cu_device());
            if r != sys::CUresult::CUDA_SUCCESS {
                r
            } else {
                sys::cuMemPoolSetAttribute(
                    pool,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                    (&mut max as *mut u64).cast(),
                )
            }
        };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(crate::error::invalid("keep_memory_pool", format!("{r:?}")));
        }
    }
    let _ = dev;
    Ok(())
}
