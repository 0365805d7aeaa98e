//! The hand-differentiated LLaMA blocks (DESIGN.md §3, implementation 2; issue 8): each block's
//! forward returns its output and what its backward needs ([`LayerSaved`]); the backward takes
//! the output gradient and returns the input gradient and the block's parameter gradients, with
//! no autograd graph. The operations are `crosslore_fused`'s (fused CUDA kernels on the GPU,
//! their f32 reference elsewhere) around candle matmuls (cuBLAS, bf16 in, f32 accumulation).
//!
//! Same mathematics as the autograd blocks ([`crate::DecoderLayer`], [`crate::FinalBlock`] with
//! [`crate::causal_lm_loss_sum`]), LoRA/DoRA adapters with dropout and GQA included; the tests
//! compare the two paths and transformers' gradients.
//!
//! Nothing here records a graph: weights are read through detached handles and inputs are
//! detached, so saved activations are plain tensors.

mod head;
mod layer;
mod linear;
mod whole;

use candle_core::{Tensor, Var};

/// Keep freed device memory in the CUDA pool (`crosslore_fused::keep_memory_pool`).
pub use crosslore_fused::keep_memory_pool;
pub use head::{
    embedding_backward, embedding_forward, head_forward_backward, shifted_targets, HeadOut,
    LOGITS_CHUNK_BYTES,
};
pub use layer::{layer_backward, layer_forward, LayerSaved};
pub use linear::LinearSaved;
pub use whole::model_loss_and_grads;

/// A parameter's gradient: its name (HF / peft), its `Var`, the gradient (the `Var`'s dtype).
pub type ParamGrad = (String, Var, Tensor);
