//! The targeted matrices of a LLaMA-2-7B-shaped model (hidden 4096, FFN 11008, 32 layers,
//! 32 heads of 128): q, k, v, o `[4096, 4096]`; gate, up `[11008, 4096]`; down `[4096, 11008]`
//! (Hugging Face `[out, in]` layout), 7 per layer, 224 in all.
use crosslore_linalg::Side;

/// Model dimensions, optionally shrunk by an integer factor for CPU smoke tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ModelDims {
    pub hidden: usize,
    pub ffn: usize,
    pub layers: usize,
    pub n_heads: usize,
    pub d_head: usize,
    pub vocab: usize,
    pub rank: usize,
    /// Key/value heads (GQA when below `n_heads`).
    pub n_kv_heads: usize,
    /// `lm_head` tied to the embedding.
    pub tied: bool,
    /// RoPE base, as an integer (10000, 100000).
    pub rope_theta: u32,
}

impl ModelDims {
    /// LLaMA-2-7B with GaLore's rank 128, dimensions divided by `shrink` (1 = full size) and
    /// `layers` layers.
    pub fn llama2_7b(layers: usize, shrink: usize) -> Self {
        let s = shrink.max(1);
        Self {
            hidden: 4096 / s,
            ffn: 11008 / s,
            layers,
            n_heads: 32,
            d_head: 128 / s,
            vocab: 32000 / s,
            rank: (128 / s).max(1),
            n_kv_heads: 32,
            tied: false,
            rope_theta: 10000,
        }
    }

    /// SmolLM2-135M (30 layers, hidden 576, FFN 1536, 9 heads / 3 KV heads of 64, vocab 49152,
    /// tied embeddings, rope base 1e5) with rank 16: the small model, where launches dominate.
    pub fn smollm2() -> Self {
        Self {
            hidden: 576,
            ffn: 1536,
            layers: 30,
            n_heads: 9,
            d_head: 64,
            vocab: 49152,
            rank: 16,
            n_kv_heads: 3,
            tied: true,
            rope_theta: 100000,
        }
    }
}

/// One targeted matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Hugging Face parameter name, e.g. `model.layers.3.self_attn.q_proj.weight`.
    pub name: String,
    /// Short kind: q, k, v, o, gate, up, down.
    pub kind: &'static str,
    pub rows: usize,
    pub cols: usize,
}

impl Target {
    /// GaLore `std` side: Right (`P: [n, r]`) when `rows >= cols`, else Left.
    pub fn side(&self) -> Side {
        if self.rows >= self.cols {
            Side::Right
        } else {
            Side::Left
        }
    }

    /// Query or key projection (cross-head and residual targets).
    pub fn is_qk(&self) -> bool {
        self.kind == "q" || self.kind == "k"
    }

    pub fn shape_key(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

/// All targeted matrices, layer by layer.
pub fn targets(d: &ModelDims) -> Vec<Target> {
    let mut v = Vec::with_capacity(7 * d.layers);
    for l in 0..d.layers {
        let attn = |kind: &'static str| Target {
            name: format!("model.layers.{l}.self_attn.{kind}_proj.weight"),
            kind,
            rows: d.hidden,
            cols: d.hidden,
        };
        v.extend(["q", "k", "v", "o"].map(attn));
        for (kind, rows, cols) in [
            ("gate", d.ffn, d.hidden),
            ("up", d.ffn, d.hidden),
            ("down", d.hidden, d.ffn),
        ] {
            v.push(Target {
                name: format!("model.layers.{l}.mlp.{kind}_proj.weight"),
                kind,
                rows,
                cols,
            });
        }
    }
    v
}

/// The other parameters of the model (plain AdamW in every method): embeddings, LM head, norms.
pub fn other_params(d: &ModelDims) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![d.vocab, d.hidden],
        ),
        ("lm_head.weight".to_string(), vec![d.vocab, d.hidden]),
        ("model.norm.weight".to_string(), vec![d.hidden]),
    ];
    for l in 0..d.layers {
        v.push((
            format!("model.layers.{l}.input_layernorm.weight"),
            vec![d.hidden],
        ));
        v.push((
            format!("model.layers.{l}.post_attention_layernorm.weight"),
            vec![d.hidden],
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_7b_has_224_targets_of_three_shapes() {
        let d = ModelDims::llama2_7b(32, 1);
        let t = targets(&d);
        assert_eq!(t.len(), 224);
        let n = |r, c| t.iter().filter(|x| x.shape_key() == (r, c)).count();
        assert_eq!(n(4096, 4096), 128);
        assert_eq!(n(11008, 4096), 64);
        assert_eq!(n(4096, 11008), 32);
        let params: usize = t.iter().map(|x| x.rows * x.cols).sum::<usize>()
            + other_params(&d)
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum::<usize>();
        assert_eq!(params, 6_738_415_616); // LLaMA-2-7B
        assert_eq!(t[6].side(), Side::Left); // down_proj [4096, 11008]
        assert_eq!(t[4].side(), Side::Right); // gate_proj [11008, 4096]
    }
}
