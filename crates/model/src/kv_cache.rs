//! Key/value cache of autoregressive generation ([`crate::generate`]): per decoder layer, the
//! RoPE-rotated keys and the values of every position seen so far, before GQA repetition
//! (`[batch, n_kv_heads, seq, head_dim]`, so the cache is `n_heads / n_kv_heads` times smaller
//! than the repeated tensors).

use candle_core::Tensor;

use crate::error::{ModelError, Result};

/// Keys and values of one layer.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// `[batch, n_kv_heads, seq, head_dim]`.
    k: Option<Tensor>,
    /// `[batch, n_kv_heads, seq, head_dim]`.
    v: Option<Tensor>,
}

impl LayerCache {
    /// Append this step's keys and values (`[batch, n_kv_heads, new, head_dim]`) along the
    /// sequence axis and return the whole cached keys and values.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match (&self.k, &self.v) {
            (Some(ck), Some(cv)) => (Tensor::cat(&[ck, k], 2)?, Tensor::cat(&[cv, v], 2)?),
            _ => (k.clone(), v.clone()),
        };
        self.k = Some(k.clone());
        self.v = Some(v.clone());
        Ok((k, v))
    }

    /// Cached positions (0 when empty).
    pub fn seq_len(&self) -> usize {
        self.k.as_ref().and_then(|k| k.dim(2).ok()).unwrap_or(0)
    }

    /// Keep only the batch rows `rows` (`u32 [n]` on the cache's device), in that order.
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        if let (Some(k), Some(v)) = (&self.k, &self.v) {
            self.k = Some(k.index_select(rows, 0)?);
            self.v = Some(v.index_select(rows, 0)?);
        }
        Ok(())
    }
}

/// One [`LayerCache`] per decoder layer.
#[derive(Debug, Clone)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![LayerCache::default(); n_layers],
        }
    }

    /// Cached positions (every layer holds the same number).
    pub fn seq_len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::seq_len)
    }

    /// Keep only the batch rows `rows` (indices into the current batch) in every layer.
    pub fn select_rows(&mut self, rows: &[u32], device: &candle_core::Device) -> Result<()> {
        if rows.is_empty() {
            return Err(ModelError::input(
                "kv cache",
                "cannot select zero rows (drop the cache instead)",
            ));
        }
        let idx = Tensor::new(rows, device)?;
        for l in &mut self.layers {
            l.select_rows(&idx)?;
        }
        Ok(())
    }
}
