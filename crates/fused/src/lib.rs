//! Fused operations of a LLaMA decoder block with hand-written backward (issue 8; DESIGN.md §3,
//! "per-block forward/backward", implementation 2).
//!
//! Every operation has one public forward and one backward. Each dispatches on the device of its
//! inputs: on CUDA (feature `cuda`) to a fused kernel (`src/cuda.rs`, `kernels/fused.cu`), everywhere else to
//! [`reference`], the same mathematics written with candle's composite ops in f32. The reference
//! is what the CPU test suite checks against autograd and what the device check compares the
//! kernels with; both paths take and return the same dtypes and shapes.
//!
//! Conventions: `T` is the model dtype (f32 or bf16); statistics (RMSNorm's `rstd`, losses)
//! are f32; all tensors are taken contiguous (callers pass `.contiguous()` results).

pub mod attention;
mod check;
#[cfg(feature = "cuda")]
pub mod cuda;
mod error;
mod pool;
pub mod reference;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;
pub mod xent;

pub use attention::{causal_softmax_bwd, causal_softmax_fwd, AttnMask};
pub use error::{FusedError, Result};
pub use pool::keep_memory_pool;
pub use rmsnorm::{rms_norm_bwd, rms_norm_fwd, RmsNormOut};
pub use rope::{rope_bwd, rope_fwd};
pub use swiglu::{swiglu_bwd, swiglu_fwd};
pub use xent::{cross_entropy_fwd_bwd, XentOut, IGNORE};
