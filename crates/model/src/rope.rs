//! Rotary position embedding in transformers' `rotate_half` convention (first half of each
//! head's dims paired with the second half), with the config's base and scaling.

use candle_core::{DType, Device, Tensor, D};

use crate::config::{LlamaConfig, RopeScaling};
use crate::error::Result;

/// Inverse frequencies `1 / theta^(2i/d)`, `i < d/2`, then scaled as the config says.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(cfg: &LlamaConfig) -> Self {
        let d = cfg.head_dim;
        // transformers computes these in f32: 1 / base ** (arange(0, d, 2).float() / d).
        let base = cfg.rope_theta as f32;
        let mut inv: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / d as f32))
            .collect();
        match &cfg.rope_scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => {
                for f in &mut inv {
                    *f /= *factor as f32;
                }
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                let (factor, low, high) = (*factor, *low_freq_factor, *high_freq_factor);
                let old = *original_max_position_embeddings as f64;
                let low_wavelen = old / low;
                let high_wavelen = old / high;
                for f in &mut inv {
                    let fr = *f as f64;
                    let wavelen = 2.0 * std::f64::consts::PI / fr;
                    let scaled = if wavelen > low_wavelen {
                        fr / factor
                    } else {
                        fr
                    };
                    // transformers: ~(wavelen < high) * ~(wavelen > low); wavelen is finite
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    let out = if medium {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    };
                    *f = out as f32;
                }
            }
        }
        Rope { inv_freq: inv }
    }

    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// `cos`, `sin` tables `[positions.len(), head_dim]` in `dtype` (computed in f32, then cast,
    /// as transformers does).
    pub fn cos_sin(
        &self,
        positions: &[u32],
        device: &Device,
        dtype: DType,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let d = 2 * half;
        let mut cos = Vec::with_capacity(positions.len() * d);
        let mut sin = Vec::with_capacity(positions.len() * d);
        for &p in positions {
            for _ in 0..2 {
                for &f in &self.inv_freq {
                    let a = (p as f32) * f;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
        let n = positions.len();
        let cos = Tensor::from_vec(cos, (n, d), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (n, d), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

/// `x * cos + rotate_half(x) * sin`, `rotate_half(x) = cat(-x2, x1)`.
/// `x`: `[b, heads, s, d]`, `cos`/`sin`: `[s, d]`.
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?; // [b, h, s, d]
    Ok((x.broadcast_mul(cos)? + rot.broadcast_mul(sin)?)?)
}
