//! Per-forward context shared by all blocks: RoPE tables, the additive attention mask, and the
//! train/eval switch with the dropout seed.

use candle_core::Tensor;

/// Built by [`crate::Llama::context`] for one batch shape.
#[derive(Debug, Clone)]
pub struct ForwardCtx {
    /// `[seq, head_dim]` in the model dtype.
    pub cos: Tensor,
    /// `[seq, head_dim]` in the model dtype.
    pub sin: Tensor,
    /// Additive f32 mask, `0` where attended and `f32::MIN` elsewhere (transformers' convention),
    /// `[1, 1, seq, seq]` (causal only) or `[batch, 1, seq, seq]` (causal and padding).
    pub mask: Tensor,
    /// The batch's attention mask `[batch, seq]` (f32 0/1, 1 = real token) when one was given:
    /// the fused block's softmax takes it instead of the additive `mask`.
    pub key_mask: Option<Tensor>,
    /// Training mode: adapter dropout is active.
    pub train: bool,
    /// Seed of this forward's dropout masks. Each adapted linear layer draws from its own stream
    /// derived from (seed, layer, projection), so recomputing a block reproduces its masks.
    pub dropout_seed: u64,
}
