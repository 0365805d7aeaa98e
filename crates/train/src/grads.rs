//! Gradient bookkeeping shared by the whole-graph and the layerwise loops: per-parameter
//! accumulation buffers across micro-batches, the global gradient norm and torch's clipping
//! coefficient, and a count of the gradient bytes alive (for the memory report).

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::error::Result;

/// Bytes of a tensor's elements.
pub fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

/// Per-parameter gradient sums over the micro-batches of one optimizer step.
///
/// The sum is always formed in micro-batch order, `((g_1 + g_2) + ...) + g_k`, in both loops, so
/// that the whole-graph and the layerwise modes add the same numbers in the same order.
#[derive(Default)]
pub struct GradBuffers {
    sums: BTreeMap<String, Tensor>,
}

impl GradBuffers {
    /// Adds `g` to the sum of `name` (the first gradient is kept as is, no copy).
    pub fn add(&mut self, name: &str, g: &Tensor) -> Result<()> {
        let next = match self.sums.remove(name) {
            Some(s) => (s + g)?,
            None => g.clone(),
        };
        self.sums.insert(name.to_string(), next);
        Ok(())
    }

    /// The sum including `g` (the gradient of the last micro-batch), without storing it.
    pub fn total_with(&self, name: &str, g: &Tensor) -> Result<Tensor> {
        Ok(match self.sums.get(name) {
            Some(s) => (s + g)?,
            None => g.clone(),
        })
    }

    /// Removes and returns the sum of `name`.
    pub fn take(&mut self, name: &str) -> Option<Tensor> {
        self.sums.remove(name)
    }

    /// Drops the buffer of `name` (after its step).
    pub fn remove(&mut self, name: &str) {
        self.sums.remove(name);
    }

    /// The sums by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.sums.iter()
    }

    /// Bytes held by the buffers.
    pub fn bytes(&self) -> usize {
        self.sums.values().map(tensor_bytes).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }
}

/// `sum(g^2)` of one gradient as an f32 scalar tensor on its device (no host synchronisation).
///
/// Two stages: row sums over the last dimension (one CUDA block per row), then the row sums in
/// one small reduction. candle's `sum_all` reduces a whole tensor in a single CUDA block
/// (DESIGN.md §3, pitfalls), which for a 45 M-entry 7B gradient took milliseconds per parameter
/// and dominated the fused training step on the H200.
fn sq_norm_device(g: &Tensor) -> Result<Tensor> {
    let sq = g.to_dtype(DType::F32)?.sqr()?;
    let rows = if sq.rank() >= 2 {
        sq.sum(candle_core::D::Minus1)? // [.., rows]
    } else {
        sq
    };
    Ok(rows.sum_all()?)
}

/// `sum(g^2)` of each gradient (same device), in f64 on the host (reduced in f32 on the device),
/// read back in one host synchronisation. On CUDA, f32/bf16 contiguous gradients go through
/// `crosslore_linalg::kernels::sq_norms_many` (one read of each gradient, deterministic; the
/// H200 profile of the 7B CrossLore step showed the candle-op path below taking 108 of 328 ms).
pub fn sq_norms(gs: &[&Tensor]) -> Result<Vec<f64>> {
    if gs.is_empty() {
        return Ok(Vec::new());
    }
    #[cfg(feature = "cuda")]
    if gs.iter().all(|g| {
        g.device().is_cuda() && g.is_contiguous() && matches!(g.dtype(), DType::F32 | DType::BF16)
    }) {
        return Ok(crosslore_linalg::kernels::sq_norms_many(gs)?);
    }
    let each = gs
        .iter()
        .map(|g| sq_norm_device(g))
        .collect::<Result<Vec<_>>>()?;
    let v: Vec<f32> = Tensor::stack(&each, 0)?.to_vec1()?;
    Ok(v.into_iter().map(f64::from).collect())
}

/// Global L2 norm from per-parameter squared norms, summed in name order (so that both loops,
/// which visit parameters in different orders, get the same bits).
pub fn global_norm(sq: &BTreeMap<String, f64>) -> f64 {
    sq.values().sum::<f64>().sqrt()
}

/// `torch.nn.utils.clip_grad_norm_`'s coefficient: `min(1, max_norm / (norm + 1e-6))`;
/// 1 when clipping is off (`max_norm == 0`).
pub fn clip_coef(norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (norm + 1e-6)).min(1.0)
}

/// `g * coef` when `coef < 1`, else `g` unchanged.
pub fn scale(g: &Tensor, coef: f64) -> Result<Tensor> {
    Ok(if coef < 1.0 {
        g.affine(coef, 0.0)?
    } else {
        g.clone()
    })
}

/// Tracks the maximum number of gradient bytes alive at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeakCounter {
    pub peak: usize,
}

impl PeakCounter {
    pub fn observe(&mut self, bytes: usize) {
        self.peak = self.peak.max(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn clip_coefficient_matches_torch_rule() {
        assert_eq!(clip_coef(10.0, 0.0), 1.0);
        assert_eq!(clip_coef(0.5, 1.0), 1.0);
        let c = clip_coef(4.0, 1.0);
        assert!((c - 1.0 / (4.0 + 1e-6)).abs() < 1e-15);
    }

    #[test]
    fn buffers_sum_in_order_and_norm() -> Result<()> {
        let d = Device::Cpu;
        let a = Tensor::new(&[3f32, 0.0], &d)?;
        let b = Tensor::new(&[0f32, 4.0], &d)?;
        let mut buf = GradBuffers::default();
        buf.add("w", &a)?;
        let t = buf.total_with("w", &b)?;
        assert_eq!(t.to_vec1::<f32>()?, vec![3.0, 4.0]);
        let mut sq = BTreeMap::new();
        sq.insert("w".to_string(), sq_norms(&[&t])?[0]);
        assert_eq!(global_norm(&sq), 5.0);
        assert_eq!(buf.bytes(), 8);
        Ok(())
    }
}
