//! Cross-head low-rank projection (paper Sec. 4.1.1, Eq. 3-4; DESIGN.md §1.2 item 2).
//!
//! For an attention projection whose gradient is `G: [n_heads * d_head, d_model]` (Hugging Face
//! layout, head `i` owns rows `i*d_head..(i+1)*d_head`), the projector is estimated from a few
//! randomly drawn heads instead of the whole matrix: `s = ceil(r / d_head)` distinct heads
//! are drawn (seeded), their rows stacked into a `[s * d_head, d_model]` slice, and the top-`r`
//! RIGHT singular subspace of that slice, `P: [d_model, r]`, serves every head (`R = G P`,
//! Eq. 4 with the right-side convention of the Hugging Face `[out, in]` layout).
//!
//! The paper draws one head (`r <= d_head`); drawing several heads when `r > d_head` is our
//! documented extension. The effective rank is `min(r, s * d_head, d_model)`.
//!
//! A slice with at most `r + oversample` rows has its exact row space computed from its tiny Gram
//! matrix ([`gram_subspace`]); larger slices use randomized subspace iteration (paper Sec. 4.1.2,
//! [`rsi_subspace`]).
use candle_core::Tensor;
use crosslore_linalg::rsi::{gram_subspace, rsi_subspace, RsiConfig};
use crosslore_linalg::{Rng, Side};
use serde::{Deserialize, Serialize};

use crate::error::{OptimError, Result};

/// Head structure of an attention projection's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeadLayout {
    /// Number of heads stacked along the rows (`n_heads` for q, `n_kv_heads` for k/v).
    pub n_heads: usize,
    /// Rows per head.
    pub d_head: usize,
}

/// Which head count a target's rows follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HeadGroup {
    /// `n_heads` (the query projection).
    Query,
    /// `n_kv_heads` (key and value projections under grouped-query attention).
    KeyValue,
}

/// A parameter-name suffix that gets the cross-head projection, with its head group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CrossHeadTarget {
    /// Matched against the end of the Hugging Face parameter name, at a `.` boundary
    /// (e.g. `self_attn.q_proj.weight` matches `model.layers.3.self_attn.q_proj.weight`).
    pub suffix: String,
    pub group: HeadGroup,
}

/// The paper's targets: `self_attn.q_proj.weight` (query heads) and `self_attn.k_proj.weight`
/// (key heads).
pub fn default_targets() -> Vec<CrossHeadTarget> {
    vec![
        CrossHeadTarget {
            suffix: "self_attn.q_proj.weight".into(),
            group: HeadGroup::Query,
        },
        CrossHeadTarget {
            suffix: "self_attn.k_proj.weight".into(),
            group: HeadGroup::KeyValue,
        },
    ]
}

fn suffix_matches(name: &str, suffix: &str) -> bool {
    name == suffix
        || name
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.'))
}

/// [`infer_layout_with`] for [`default_targets`].
pub fn infer_layout(
    name: &str,
    n_heads: usize,
    n_kv_heads: usize,
    d_head: usize,
) -> Option<HeadLayout> {
    infer_layout_with(name, &default_targets(), n_heads, n_kv_heads, d_head)
}

/// The head layout of parameter `name` if it matches one of `targets` (first match wins),
/// `None` otherwise (the parameter then uses the ordinary projection).
pub fn infer_layout_with(
    name: &str,
    targets: &[CrossHeadTarget],
    n_heads: usize,
    n_kv_heads: usize,
    d_head: usize,
) -> Option<HeadLayout> {
    targets
        .iter()
        .find(|t| suffix_matches(name, &t.suffix))
        .map(|t| HeadLayout {
            n_heads: match t.group {
                HeadGroup::Query => n_heads,
                HeadGroup::KeyValue => n_kv_heads,
            },
            d_head,
        })
}

/// Number of heads drawn for rank `rank`: `ceil(rank / d_head)`, at most `n_heads`.
pub fn heads_needed(layout: &HeadLayout, rank: usize) -> usize {
    rank.div_ceil(layout.d_head.max(1)).min(layout.n_heads)
}

/// Cross-head projector of `g: [n_heads * d_head, d_model]` (paper Eq. 3-4): draws
/// `s = ceil(rank / d_head)` distinct heads with `rng`, and returns the top-`r_eff` right
/// singular subspace `P: [d_model, r_eff]` of their stacked rows, `r_eff = min(rank, s * d_head,
/// d_model)`, with the heads in draw order. `warm` (a previous `[d_model, r_eff]` projector)
/// seeds RSI's test matrix; it is unused when the exact Gram path is taken.
pub fn cross_head_projector(
    g: &Tensor,
    layout: &HeadLayout,
    rank: usize,
    rsi_cfg: &RsiConfig,
    rng: &mut Rng,
    warm: Option<&Tensor>,
) -> Result<(Tensor, Vec<usize>)> {
    check_inputs(g, layout, rank)?;
    let s = heads_needed(layout, rank);
    let heads = rng.sample_distinct(layout.n_heads, s);
    let p = projector_for_heads(g, layout, &heads, rank, rsi_cfg, rng, warm)?;
    Ok((p, heads))
}

/// The cross-head projector for a given list of distinct heads (the deterministic core of
/// [`cross_head_projector`]): `P: [d_model, r_eff]`, `r_eff = min(rank, heads.len() * d_head,
/// d_model)`.
pub fn projector_for_heads(
    g: &Tensor,
    layout: &HeadLayout,
    heads: &[usize],
    rank: usize,
    rsi_cfg: &RsiConfig,
    rng: &mut Rng,
    warm: Option<&Tensor>,
) -> Result<Tensor> {
    check_inputs(g, layout, rank)?;
    let mut sorted = heads.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if heads.is_empty()
        || sorted.len() != heads.len()
        || sorted.last().is_some_and(|&h| h >= layout.n_heads)
    {
        return Err(OptimError::Config {
            param: "cross_head".into(),
            msg: format!(
                "heads must be distinct, non-empty and below n_heads = {}, got {heads:?}",
                layout.n_heads
            ),
        });
    }
    let d_model = g.dims()[1];
    let slices = heads
        .iter()
        .map(|&h| g.narrow(0, h * layout.d_head, layout.d_head)) // [d_head, d_model]
        .collect::<candle_core::Result<Vec<_>>>()?;
    let slice = Tensor::cat(&slices, 0)?; // [s * d_head, d_model]
    let slice_rows = heads.len() * layout.d_head;
    let r_eff = rank.min(slice_rows).min(d_model);
    if let Some(w) = warm {
        if w.dims() != [d_model, r_eff] {
            return Err(OptimError::Shape {
                param: "cross_head warm-start projector".into(),
                expected: format!("[{d_model}, {r_eff}]"),
                got: format!("{:?}", w.dims()),
            });
        }
    }
    Ok(if slice_rows <= r_eff + rsi_cfg.oversample {
        gram_subspace(&slice, r_eff, Side::Right)?
    } else {
        rsi_subspace(&slice, r_eff, Side::Right, rsi_cfg, rng, warm)?
    })
}

fn check_inputs(g: &Tensor, layout: &HeadLayout, rank: usize) -> Result<()> {
    let cfg_err = |msg: String| OptimError::Config {
        param: "cross_head".into(),
        msg,
    };
    if layout.n_heads == 0 || layout.d_head == 0 {
        return Err(cfg_err(format!(
            "head layout needs n_heads >= 1 and d_head >= 1, got {layout:?}"
        )));
    }
    if rank == 0 {
        return Err(cfg_err("rank must be >= 1, got 0".into()));
    }
    let rows_expected = layout.n_heads * layout.d_head;
    let shape_ok = matches!(g.dims(), [rows, _] if *rows == rows_expected);
    if !shape_ok {
        return Err(OptimError::Shape {
            param: "cross_head gradient".into(),
            expected: format!(
                "[n_heads * d_head = {} * {} = {rows_expected}, d_model]",
                layout.n_heads, layout.d_head
            ),
            got: format!("{:?}", g.dims()),
        });
    }
    Ok(())
}
