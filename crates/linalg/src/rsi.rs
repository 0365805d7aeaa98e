//! Randomized subspace iteration (Halko, Martinsson, Tropp 2011, Alg. 4.4; paper Sec. 4.1).
use crate::{Result, Rng, Side};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Parameters of randomized subspace iteration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsiConfig {
    /// Oversampling `p`: the sketch has `r + p` columns. Default 8.
    pub oversample: usize,
    /// Power iterations `q`. Default 2.
    pub power_iters: usize,
}

impl Default for RsiConfig {
    fn default() -> Self {
        Self { oversample: 8, power_iters: 2 }
    }
}

/// Top-`rank` subspace of `a: [m, n]` on `side` by RSI. Returns `[n, rank]` (Right) or
/// `[m, rank]` (Left), orthonormal columns, on `a`'s device. `warm`: a previous projector of the
/// same side whose columns replace the first columns of the Gaussian test matrix.
pub fn rsi_subspace(
    a: &Tensor,
    rank: usize,
    side: Side,
    cfg: &RsiConfig,
    rng: &mut Rng,
    warm: Option<&Tensor>,
) -> Result<Tensor> {
    let _ = (a, rank, side, cfg, rng, warm);
    unimplemented!("linalg helper implements this")
}
