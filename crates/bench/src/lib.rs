//! crosslore-bench: device checks and benchmarks for issue 5 (docs/BENCHMARKS.md).
//!
//! - [`check`]: every CUDA path against the CPU path of the same code on the same random inputs
//!   (`gpu-check`), with stated f32 tolerances.
//! - [`model_check`]: the trainable LLaMA (forward, loss, gradients, bf16) and 3 trainer steps
//!   of every method on the device against the CPU on the model fixtures (`model-check`).
//! - [`p1`]: projection refresh of all 224 targeted matrices of a LLaMA-2-7B-shaped model.
//! - [`p2`]: optimizer step without refresh on the same model, against the memory-traffic and
//!   matmul floors measured in the same run ([`floors`]).
//!
//! Timing: every timed region starts and ends with a device synchronisation, follows warm-ups,
//! and reports medians ([`timing`]).

pub mod check;
pub mod check_fused;
#[cfg(feature = "cuda")]
pub mod check_kernels;
pub mod error;
pub mod floors;
pub mod layer;
pub mod model_check;
pub mod p1;
pub mod p2;
pub mod p3;
pub mod p3_max;
pub mod shapes;
pub mod synth;
pub mod timing;

pub use error::{BenchError, Result};

use candle_core::Device;

/// The device named on the command line: `cpu` or `cuda[:N]`.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|o| o.parse::<usize>().ok())
                    .ok_or_else(|| {
                        BenchError::Config(format!(
                            "--device: expected cpu, cuda or cuda:N, got {s:?}"
                        ))
                    })?,
                None => {
                    return Err(BenchError::Config(format!(
                        "--device: expected cpu, cuda or cuda:N, got {s:?}"
                    )))
                }
            };
            Ok(Device::new_cuda(ordinal)?)
        }
    }
}

/// A short description of the device for reports.
pub fn device_name(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        #[cfg(feature = "cuda")]
        Device::Cuda(cd) => cd
            .cuda_stream()
            .context()
            .name()
            .unwrap_or_else(|_| "cuda".into()),
        _ => format!("{d:?}"),
    }
}
