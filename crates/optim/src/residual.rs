//! Sparsely coded residual of AdamW (paper Sec. 4.2, Alg. 2; DESIGN.md §1.2 item 3).
//!
//! GaLore's low-rank moments `M'`, `V'` miss the part of the gradient outside the projector's
//! span. CrossLore tracks the residual moments `dM`, `dV` (paper Eq. 9) and the update residual
//! `delta` (paper Eq. 12) at a fixed sparse index set `L`: the top `rho * m * n` positions of
//! `|project_back(M')|` recorded at the end of a warm-up of `k` steps. Only `L` (u32 flat
//! indices `i * n + j`, sorted), `dM` and `dV` (f32, `|L|` each) are stored: `12 * |L|` bytes.
//!
//! Every per-step quantity is computed at `L` only. `Ghat_L = (P P^T G)[L]` is a *sampled*
//! product of the two thin factors the optimizer already has (`R` and `P`), costing `|L| * r`
//! multiply-adds ([`sampled_product`]); the dense `m x n` matrix is formed only once, when `L`
//! is selected ([`SparseResidual::select`]).
//!
//! Shapes, for a weight / gradient `G: [m, n]`:
//! - [`Side::Right`]: `P: [n, r]`, `R = G P: [m, r]`, `M', V': [m, r]`, `project_back(X) = X P^T`.
//! - [`Side::Left`]: `P: [m, r]`, `R = P^T G: [r, n]`, `M', V': [r, n]`, `project_back(X) = P X`.
//!
//! The two-sided projection (GaLore `proj_type = full`) is not supported: its reconstruction
//! `P_l X P_r^T` is not a product of two thin factors, so [`ResidualConfig::check_projection`]
//! rejects it.
//!
//! Scaling choice (DESIGN.md §1.2 item 3): the caller applies `W[L] -= lr * scale * delta` with the
//! same `scale` as the low-rank GaLore part, so that the sum approximates the full-rank Adam
//! update, and a ratio of 0 leaves GaLore (with RSI) exactly unchanged.
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, D};
use crosslore_linalg::Side;
use serde::{Deserialize, Serialize};

use crate::error::{OptimError, Result};

/// Largest number of gathered f32 elements per factor per chunk in [`sampled_product`]
/// (4 Mi elements = 16 MiB), so that the transient `[chunk, r]` gathers stay bounded even when
/// `|L| * r` exceeds `m * n`.
pub const SAMPLED_CHUNK_ELEMS: usize = 1 << 22;

/// Keys of the residual tensors in a saved state (prefixed by the caller's parameter prefix).
pub const INDEX_KEY: &str = "residual.index";
/// Key of `dM` in a saved state.
pub const DM_KEY: &str = "residual.dm";
/// Key of `dV` in a saved state.
pub const DV_KEY: &str = "residual.dv";

/// What the two per-position state vectors hold and how `delta` is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualMode {
    /// Paper Alg. 2 exactly (DESIGN.md §1.2 item 3): the state is the moment residuals
    /// `dM`, `dV` (Eq. 9, zero at selection) and
    /// `delta = (dM/(1-b1^t)) / (sqrt(max(vhat + dV/(1-b2^t), 0)) + eps)`,
    /// `vhat = project_back(V')[L] / (1-b2^t)`. Caveat: `project_back(V')` is not elementwise
    /// nonnegative (P has signed entries), so the square root's argument is clipped at about half
    /// of the positions, where `delta = dM/(1-b1^t)/eps` becomes very large (see
    /// `scripts/residual_variants_study.py`). Selectable for the paper's ablation; not the
    /// default because it diverges (weights reach Inf within ~10 steps after warm-up on a 64x64
    /// least-squares problem; docs/ALGORITHM.md).
    Paper,
    /// Beyond the paper: the state is the full AdamW moments at `L`,
    /// `M_L = b1 M_L + (1-b1) G[L]`, `V_L = b2 V_L + (1-b2) G[L]^2`, initialised at selection
    /// from the low-rank moments (`project_back(M')[L]` and `(V' (P o P)^T)[L]` resp.
    /// `((P o P) V')[L]`, a nonnegative estimate of `E[Ghat^2]`), and `delta` is the full AdamW
    /// update at `L` minus the low-rank GaLore update at `L`, both in galore-torch's form:
    /// `delta = sqrt(1-b2^t)/(1-b1^t) * (M_L/(sqrt(V_L)+eps) - project_back(M'/(sqrt(V')+eps))[L])`.
    /// Applied with the same `lr * scale`, the weight entries at `L` then follow full-rank AdamW.
    /// Same memory (`12 |L|` bytes). The default (docs/ALGORITHM.md explains why).
    #[default]
    TrackedMoments,
}

/// Configuration of the sparsely coded residual (paper Sec. 4.2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidualConfig {
    /// Fraction `rho` of the matrix entries kept in `L`, in `[0, 1]` (paper: 0.012; the ablation
    /// of Table 10 uses 0, 0.006, 0.012, 0.018). 0 disables the residual.
    pub ratio: f64,
    /// Warm-up length `k` in optimizer steps; `None` means the projection gap
    /// (`update_proj_gap`).
    pub warmup_steps: Option<usize>,
    /// Re-select `L` at every projection refresh after warm-up (beyond the paper, which keeps `L`
    /// fixed). Residual values at positions kept in the new `L` are carried over, new positions
    /// start at 0.
    pub refresh_index_on_projection: bool,
    /// Paper formula (default) or tracked full moments at `L` (see [`ResidualMode`]).
    #[serde(default)]
    pub mode: ResidualMode,
}

impl Default for ResidualConfig {
    fn default() -> Self {
        Self {
            ratio: 0.012,
            warmup_steps: None,
            refresh_index_on_projection: false,
            // The enum's default (TrackedMoments): the paper's form diverges (see ResidualMode).
            mode: ResidualMode::default(),
        }
    }
}

impl ResidualConfig {
    /// Checks `ratio` is finite and in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if !self.ratio.is_finite() || !(0.0..=1.0).contains(&self.ratio) {
            return Err(OptimError::Config {
                param: "residual.ratio".into(),
                msg: format!(
                    "expected a fraction of entries in [0, 1] (e.g. 0.012), got {}",
                    self.ratio
                ),
            });
        }
        Ok(())
    }

    /// The warm-up length `k` for a given projection gap.
    pub fn warmup(&self, update_proj_gap: usize) -> usize {
        self.warmup_steps.unwrap_or(update_proj_gap)
    }

    /// Rejects the two-sided projection (`proj_type = full`) for a parameter with a nonzero
    /// ratio: the residual needs a one-sided projector (see the module docs).
    pub fn check_projection(&self, param: &str, two_sided: bool) -> Result<()> {
        if two_sided && self.ratio > 0.0 {
            return Err(OptimError::Config {
                param: param.to_string(),
                msg: "the sparse residual is not supported with proj_type `full` (two-sided \
                      projection); use std, reverse_std, left or right, or set the residual \
                      ratio to 0"
                    .into(),
            });
        }
        Ok(())
    }
}

/// The low-rank quantities of one GaLore step that the residual reads (all f32 or castable).
#[derive(Debug, Clone, Copy)]
pub struct LowRank<'a> {
    /// Which side `p` projects (see the module docs for the shapes).
    pub side: Side,
    /// Projector `P` (`[n, r]` Right, `[m, r]` Left), orthonormal columns.
    pub p: &'a Tensor,
    /// Projected gradient `R` of this step (`[m, r]` Right, `[r, n]` Left).
    pub r: &'a Tensor,
    /// First low-rank moment `M'` after this step's update (same shape as `r`).
    pub m: &'a Tensor,
    /// Second low-rank moment `V'` after this step's update (same shape as `r`).
    pub v: &'a Tensor,
}

/// AdamW hyper-parameters of one step; `t` is the 1-based step count after increment, the same
/// `t` as the low-rank moments' bias correction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub t: u64,
}

/// `(A B^T)[L]` for `a: [m, k]`, `b: [n, k]` and sorted or unsorted u32 flat indices
/// `idx = i * n + j` (`[|L|]`), without forming `A B^T`: row `i` of `a` and row `j` of `b` are
/// gathered and their elementwise product summed, `|L| * k` multiply-adds, in chunks of at most
/// [`SAMPLED_CHUNK_ELEMS`] gathered elements. Returns f32 `[|L|]` on `a`'s device.
pub fn sampled_product(a: &Tensor, b: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let (m, k) = a.dims2()?;
    let (n, kb) = b.dims2()?;
    if k != kb {
        return Err(OptimError::Shape {
            param: "sampled_product (A B^T)".into(),
            expected: format!("b: [n, {k}] (same inner dimension as a: [{m}, {k}])"),
            got: format!("b: [{n}, {kb}]"),
        });
    }
    let len = idx.dims1()?;
    if idx.dtype() != DType::U32 {
        return Err(OptimError::State {
            msg: format!("sampled_product: index must be u32, got {:?}", idx.dtype()),
        });
    }
    let dev = a.device();
    if len == 0 || k == 0 {
        return Ok(Tensor::zeros(len, DType::F32, dev)?);
    }
    let a = a.to_dtype(DType::F32)?.contiguous()?;
    let b = b.to_dtype(DType::F32)?.contiguous()?;
    #[cfg(feature = "cuda")]
    if dev.is_cuda() {
        // Fused: one warp per index, no [chunk, k] gathers.
        return Ok(crosslore_linalg::kernels::sampled_product(
            &a,
            &b,
            &idx.contiguous()?,
        )?);
    }
    let n_t = Tensor::new(n as u32, dev)?;
    let chunk = (SAMPLED_CHUNK_ELEMS / k).max(1);
    let mut parts = Vec::with_capacity(len.div_ceil(chunk));
    let mut start = 0;
    while start < len {
        let c = chunk.min(len - start);
        let ids = idx.narrow(0, start, c)?;
        let rows = ids.broadcast_div(&n_t)?; // [c] u32, i = idx / n
        let cols = ids.sub(&rows.broadcast_mul(&n_t)?)?; // [c] u32, j = idx - i * n
        let ar = a.index_select(&rows, 0)?; // [c, k]
        let bc = b.index_select(&cols, 0)?; // [c, k]
        parts.push(ar.mul(&bc)?.sum(D::Minus1)?); // [c]
        start += c;
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        Tensor::cat(&parts, 0)?
    })
}

/// The two thin factors `(A, B)` with `project_back(X)` = `A B^T` (`A: [m, k]`, `B: [n, k]`).
fn back_factors(side: Side, p: &Tensor, x: &Tensor) -> Result<(Tensor, Tensor)> {
    Ok(match side {
        // X P^T: A = X [m, r], B = P [n, r]
        Side::Right => (x.clone(), p.clone()),
        // P X: A = P [m, r], B = X^T [n, r]
        Side::Left => (p.clone(), x.t()?.contiguous()?),
    })
}

/// `project_back(x)[L]` (sampled at `idx` only).
fn sampled_back(side: Side, p: &Tensor, x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let (a, b) = back_factors(side, p, x)?;
    sampled_product(&a, &b, idx)
}

/// `(project_back with P o P)(x)[L]`: `(X (P o P)^T)[L]` (Right) or `((P o P) X)[L]` (Left),
/// elementwise nonnegative for a nonnegative `x` such as `V'`.
fn sampled_back_sq(side: Side, p: &Tensor, x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    sampled_back(side, &p.to_dtype(DType::F32)?.sqr()?, x, idx)
}

fn shape_err(what: &str, expected: String, got: &Tensor) -> OptimError {
    OptimError::Shape {
        param: format!("sparse residual: {what}"),
        expected,
        got: format!("{:?}", got.dims()),
    }
}

/// Checks the shapes of `lr` against a `[rows, cols]` parameter; returns the rank `r`.
fn check_lowrank(lr: &LowRank<'_>, rows: usize, cols: usize) -> Result<usize> {
    let (pr, rank) =
        lr.p.dims2()
            .map_err(|_| shape_err("projector P", "a matrix".into(), lr.p))?;
    let (p_rows, moment) = match lr.side {
        Side::Right => (cols, [rows, rank]),
        Side::Left => (rows, [rank, cols]),
    };
    if pr != p_rows {
        return Err(shape_err(
            "projector P",
            format!(
                "[{p_rows}, r] for {:?} side of a [{rows}, {cols}] matrix",
                lr.side
            ),
            lr.p,
        ));
    }
    for (what, t) in [
        ("projected gradient R", lr.r),
        ("moment M'", lr.m),
        ("moment V'", lr.v),
    ] {
        if t.dims() != moment {
            return Err(shape_err(what, format!("{moment:?}"), t));
        }
    }
    Ok(rank)
}

/// Number of positions kept for `ratio` of `total` entries: `round(ratio * total)`.
pub fn index_len(ratio: f64, total: usize) -> usize {
    ((ratio * total as f64).round() as usize).min(total)
}

/// Sparse residual state of one matrix: `L`, `dM`, `dV` (paper Alg. 2).
#[derive(Debug, Clone)]
pub struct SparseResidual {
    /// Sorted u32 flat indices `i * cols + j`, `[|L|]`.
    index: Tensor,
    /// First-moment state at `L`, f32 `[|L|]`: the residual `dM` ([`ResidualMode::Paper`]) or
    /// the full first moment `M_L` ([`ResidualMode::TrackedMoments`]).
    dm: Tensor,
    /// Second-moment state at `L`, f32 `[|L|]`: `dV` or `V_L` (as `dm`).
    dv: Tensor,
    rows: usize,
    cols: usize,
}

impl SparseResidual {
    /// Selects `L` = the top `round(ratio * m * n)` positions of `|project_back(M')|` (paper
    /// Sec. 4.2.2), `dM = dV = 0`. Ties in magnitude go to the smaller flat index; NaN counts as
    /// the smallest magnitude. The dense `project_back(M')` is formed once on `m_lowrank`'s device
    /// and ranked there by [`crosslore_linalg::topk::topk_abs_indices`] (on CUDA a device radix
    /// select, so the dense matrix never reaches the host; on the CPU a host selection; both give
    /// the same indices for the same dense values). The result lives on `m_lowrank`'s device.
    pub fn select(m_lowrank: &Tensor, p: &Tensor, side: Side, ratio: f64) -> Result<Self> {
        ResidualConfig {
            ratio,
            ..Default::default()
        }
        .validate()?;
        let (a, b) = back_factors(side, p, m_lowrank)?;
        let (rows, ka) = a.dims2()?;
        let (cols, kb) = b.dims2()?;
        if ka != kb {
            return Err(shape_err(
                "moment M'",
                format!("inner dimension {ka} matching the projector for {side:?} side"),
                m_lowrank,
            ));
        }
        let total = rows * cols;
        if total > u32::MAX as usize {
            return Err(OptimError::Config {
                param: "residual".into(),
                msg: format!(
                    "a [{rows}, {cols}] matrix has more entries than u32 flat indices can address"
                ),
            });
        }
        let dev = m_lowrank.device();
        let k = index_len(ratio, total);
        let index = if k == 0 {
            Tensor::zeros(0, DType::U32, dev)?
        } else {
            let a = a.to_dtype(DType::F32)?;
            let b = b.to_dtype(DType::F32)?;
            // [rows, cols] dense reconstruction, the only dense buffer, once per selection; ranked
            // on its own device (no dense host copy on CUDA).
            crosslore_linalg::topk::topk_abs_indices(&a.matmul(&b.t()?)?, k)?
        };
        let len = index.dims1()?;
        Ok(Self {
            index,
            dm: Tensor::zeros(len, DType::F32, dev)?,
            dv: Tensor::zeros(len, DType::F32, dev)?,
            rows,
            cols,
        })
    }

    /// One step of Alg. 2 at `L`; updates `dM`, `dV` and returns `delta: [|L|]` f32:
    /// `Ghat_L = (P P^T G)[L]` (sampled from `R`), `dG = G[L] - Ghat_L`,
    /// `dM = b1 dM + (1-b1) dG`, `dV = b2 dV + 2(1-b2) Ghat_L * dG` (Eq. 9),
    /// `vhat = project_back(V')[L] / (1-b2^t)`,
    /// `delta = (dM/(1-b1^t)) / (sqrt(max(vhat + dV/(1-b2^t), 0)) + eps)` (Eq. 12, Alg. 2 l. 8).
    /// On error the state is unchanged.
    pub fn update(&mut self, g: &Tensor, lr: &LowRank<'_>, h: &AdamHyper) -> Result<Tensor> {
        if g.dims() != [self.rows, self.cols] {
            return Err(shape_err(
                "gradient",
                format!("[{}, {}]", self.rows, self.cols),
                g,
            ));
        }
        check_lowrank(lr, self.rows, self.cols)?;
        let len = self.len();
        if len == 0 {
            return Ok(Tensor::zeros(0, DType::F32, self.index.device())?);
        }
        let g_l = g
            .to_dtype(DType::F32)?
            .flatten_all()?
            .index_select(&self.index, 0)?; // [|L|]
        let ghat = match lr.side {
            // (G P) P^T = R P^T
            Side::Right => sampled_product(lr.r, lr.p, &self.index)?,
            // P (P^T G) = P R
            Side::Left => sampled_product(lr.p, &lr.r.t()?.contiguous()?, &self.index)?,
        };
        let dg = g_l.sub(&ghat)?;
        let (b1, b2) = (h.beta1, h.beta2);
        let dm = self.dm.affine(b1, 0.0)?.add(&dg.affine(1.0 - b1, 0.0)?)?;
        let dv = self
            .dv
            .affine(b2, 0.0)?
            .add(&ghat.mul(&dg)?.affine(2.0 * (1.0 - b2), 0.0)?)?;
        let t = h.t.min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        // vhat + dV/(1-b2^t) = (project_back(V')[L] + dV) / (1-b2^t)
        let second = sampled_back(lr.side, lr.p, lr.v, &self.index)?
            .add(&dv)?
            .affine(1.0 / bc2, 0.0)?
            .relu()?;
        let denom = second.sqrt()?.affine(1.0, h.eps)?;
        let delta = dm.affine(1.0 / bc1, 0.0)?.div(&denom)?;
        self.dm = dm;
        self.dv = dv;
        Ok(delta)
    }

    /// `W[L] -= coef * delta` in place (`coef = lr * scale`), by a scatter-add into the flattened
    /// weight's storage: no dense temporary. `w` must be `[rows, cols]` and contiguous (as a
    /// candle `Var` is); `delta` is cast to `w`'s dtype.
    pub fn apply(&self, w: &Tensor, delta: &Tensor, coef: f64) -> Result<()> {
        if w.dims() != [self.rows, self.cols] {
            return Err(shape_err(
                "weight",
                format!("[{}, {}]", self.rows, self.cols),
                w,
            ));
        }
        if delta.dims() != [self.len()] {
            return Err(shape_err("delta", format!("[{}]", self.len()), delta));
        }
        if !w.is_contiguous() {
            return Err(shape_err(
                "weight",
                "a contiguous tensor (in-place scatter)".into(),
                w,
            ));
        }
        if self.is_empty() {
            return Ok(());
        }
        #[cfg(feature = "cuda")]
        if w.device().is_cuda() && matches!(w.dtype(), DType::F32 | DType::BF16) {
            let delta = delta.to_dtype(DType::F32)?.contiguous()?;
            crosslore_linalg::kernels::scatter_sub(w, &self.index, &delta, coef as f32)?;
            return Ok(());
        }
        // [|L|]; a contiguous reshape shares `w`'s storage, so the scatter writes into `w` itself.
        let src = delta.affine(-coef, 0.0)?.to_dtype(w.dtype())?;
        w.flatten_all()?.scatter_add_set(&self.index, &src, 0)?;
        Ok(())
    }

    /// [`Self::select`] from this step's low-rank state, with the initial state of `mode`
    /// (zeros for [`ResidualMode::Paper`], the reconstructed moments at `L` for
    /// [`ResidualMode::TrackedMoments`]).
    pub fn select_for(lr: &LowRank<'_>, ratio: f64, mode: ResidualMode) -> Result<Self> {
        let mut s = Self::select(lr.m, lr.p, lr.side, ratio)?;
        check_lowrank(lr, s.rows, s.cols)?;
        if mode == ResidualMode::TrackedMoments && !s.is_empty() {
            s.dm = sampled_back(lr.side, lr.p, lr.m, &s.index)?;
            s.dv = sampled_back_sq(lr.side, lr.p, lr.v, &s.index)?.relu()?;
        }
        Ok(s)
    }

    /// [`ResidualMode::TrackedMoments`] step: updates the full moments at `L` with `G[L]` and
    /// returns `delta: [|L|]` = full AdamW update at `L` minus the low-rank GaLore update at `L`
    /// (formula in [`ResidualMode::TrackedMoments`]). On error the state is unchanged.
    pub fn update_tracked(
        &mut self,
        g: &Tensor,
        lr: &LowRank<'_>,
        h: &AdamHyper,
    ) -> Result<Tensor> {
        if g.dims() != [self.rows, self.cols] {
            return Err(shape_err(
                "gradient",
                format!("[{}, {}]", self.rows, self.cols),
                g,
            ));
        }
        check_lowrank(lr, self.rows, self.cols)?;
        if self.is_empty() {
            return Ok(Tensor::zeros(0, DType::F32, self.index.device())?);
        }
        let (b1, b2) = (h.beta1, h.beta2);
        // GaLore's normalized low-rank direction N = M' / (sqrt(V') + eps), thin.
        let n_low =
            lr.m.to_dtype(DType::F32)?
                .div(&lr.v.to_dtype(DType::F32)?.sqrt()?.affine(1.0, h.eps)?)?;
        let t = h.t.min(i32::MAX as u64) as i32;
        let step = (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
        #[cfg(feature = "cuda")]
        if g.device().is_cuda() {
            // Fused kernel: G read at L only, dM/dV updated in place, sampled product per warp.
            let (a, b) = back_factors(lr.side, lr.p, &n_low)?;
            let s = crosslore_linalg::kernels::ResidualScalars {
                beta1: b1 as f32,
                beta2: b2 as f32,
                eps: h.eps as f32,
                step: step as f32,
            };
            return Ok(crosslore_linalg::kernels::residual_tracked(
                &g.contiguous()?,
                &self.index,
                &self.dm,
                &self.dv,
                &a.to_dtype(DType::F32)?.contiguous()?,
                &b.to_dtype(DType::F32)?.contiguous()?,
                &s,
            )?);
        }
        let g_l = g
            .to_dtype(DType::F32)?
            .flatten_all()?
            .index_select(&self.index, 0)?; // [|L|]
        let m = self.dm.affine(b1, 0.0)?.add(&g_l.affine(1.0 - b1, 0.0)?)?;
        let v = self
            .dv
            .affine(b2, 0.0)?
            .add(&g_l.sqr()?.affine(1.0 - b2, 0.0)?)?;
        let low_l = sampled_back(lr.side, lr.p, &n_low, &self.index)?; // [|L|]
        let full_l = m.div(&v.sqrt()?.affine(1.0, h.eps)?)?; // [|L|]
        let delta = full_l.sub(&low_l)?.affine(step, 0.0)?;
        self.dm = m;
        self.dv = v;
        Ok(delta)
    }

    /// Re-selects `L` from this step's `M'` (option `refresh_index_on_projection`), carrying the
    /// state over at positions kept; new positions start as in [`Self::select_for`].
    pub fn reselect(&mut self, lr: &LowRank<'_>, ratio: f64, mode: ResidualMode) -> Result<()> {
        let mut new = Self::select_for(lr, ratio, mode)?;
        if (new.rows, new.cols) != (self.rows, self.cols) {
            return Err(shape_err(
                "moment M' at re-selection",
                format!("a reconstruction of [{}, {}]", self.rows, self.cols),
                lr.m,
            ));
        }
        let old_idx: Vec<u32> = self.index.to_vec1()?;
        let old_dm: Vec<f32> = self.dm.to_vec1()?;
        let old_dv: Vec<f32> = self.dv.to_vec1()?;
        let new_idx: Vec<u32> = new.index.to_vec1()?;
        let mut dm: Vec<f32> = new.dm.to_vec1()?;
        let mut dv: Vec<f32> = new.dv.to_vec1()?;
        let mut o = 0;
        for (k, &i) in new_idx.iter().enumerate() {
            while o < old_idx.len() && old_idx[o] < i {
                o += 1;
            }
            if o < old_idx.len() && old_idx[o] == i {
                dm[k] = old_dm[o];
                dv[k] = old_dv[o];
            }
        }
        let dev = self.index.device().clone();
        let len = new_idx.len();
        new.dm = Tensor::from_vec(dm, len, &dev)?;
        new.dv = Tensor::from_vec(dv, len, &dev)?;
        *self = new;
        Ok(())
    }

    /// `|L|`.
    pub fn len(&self) -> usize {
        self.index.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(rows, cols)` of the matrix.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Sorted u32 flat indices `[|L|]`.
    pub fn index(&self) -> &Tensor {
        &self.index
    }

    /// First-moment state at `L` (`dM` or `M_L`, see [`ResidualMode`]), f32 `[|L|]`.
    pub fn dm(&self) -> &Tensor {
        &self.dm
    }

    /// Second-moment state at `L` (`dV` or `V_L`), f32 `[|L|]`.
    pub fn dv(&self) -> &Tensor {
        &self.dv
    }

    /// Exact bytes of the state: `|L| * (4 + 4 + 4)` (u32 index, f32 dM, f32 dV).
    pub fn state_bytes(&self) -> usize {
        12 * self.len()
    }

    /// The state as named tensors `{prefix}residual.index` (u32), `.dm`, `.dv` (f32).
    pub fn to_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{prefix}{INDEX_KEY}"), self.index.clone()),
            (format!("{prefix}{DM_KEY}"), self.dm.clone()),
            (format!("{prefix}{DV_KEY}"), self.dv.clone()),
        ]
    }

    /// Rebuilds the state of a `[rows, cols]` matrix from [`Self::to_tensors`]'s names in
    /// `tensors`, moved to `device`. Returns `Ok(None)` when none of the three is present (the
    /// residual was still warming up), an error when only some are, or when dtypes, lengths or
    /// indices (sorted, distinct, `< rows * cols`) are wrong.
    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        prefix: &str,
        rows: usize,
        cols: usize,
        device: &Device,
    ) -> Result<Option<Self>> {
        let names = [INDEX_KEY, DM_KEY, DV_KEY].map(|k| format!("{prefix}{k}"));
        let found: Vec<Option<&Tensor>> = names.iter().map(|k| tensors.get(k)).collect();
        let (index, dm, dv) = match (found[0], found[1], found[2]) {
            (None, None, None) => return Ok(None),
            (Some(i), Some(m), Some(v)) => (i, m, v),
            _ => {
                return Err(OptimError::State {
                    msg: format!("residual state incomplete: need all of {names:?}"),
                })
            }
        };
        let bad = |msg: String| OptimError::State { msg };
        let len = index.dims1().map_err(|_| {
            bad(format!(
                "`{}` must be 1-D, got {:?}",
                names[0],
                index.dims()
            ))
        })?;
        if index.dtype() != DType::U32 {
            return Err(bad(format!(
                "`{}` must be u32, got {:?}",
                names[0],
                index.dtype()
            )));
        }
        for (name, t) in [(&names[1], dm), (&names[2], dv)] {
            if t.dims() != [len] || t.dtype() != DType::F32 {
                return Err(bad(format!(
                    "`{name}` must be f32 [{len}], got {:?} {:?}",
                    t.dtype(),
                    t.dims()
                )));
            }
        }
        let idx: Vec<u32> = index.to_vec1()?;
        let total = rows as u64 * cols as u64;
        if idx.windows(2).any(|w| w[0] >= w[1]) || idx.last().is_some_and(|&l| l as u64 >= total) {
            return Err(bad(format!(
                "`{}` must be strictly increasing flat indices below {rows} * {cols}",
                names[0]
            )));
        }
        Ok(Some(Self {
            index: index.to_device(device)?,
            dm: dm.to_device(device)?,
            dv: dv.to_device(device)?,
            rows,
            cols,
        }))
    }
}

/// Warm-up and selection schedule around [`SparseResidual`] for one matrix (paper Sec. 4.2.2):
/// zero residual during the first `k` steps, `L` selected at the end of step `max(k, 1)` from
/// that step's `M'`, Alg. 2 at every later step.
#[derive(Debug, Clone)]
pub struct ResidualState {
    config: ResidualConfig,
    warmup: usize,
    sparse: Option<SparseResidual>,
}

impl ResidualState {
    /// Validates `config`; the warm-up is `config.warmup_steps` or `update_proj_gap`.
    pub fn new(config: &ResidualConfig, update_proj_gap: usize) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
            warmup: config.warmup(update_proj_gap),
            sparse: None,
        })
    }

    /// Call after the low-rank moments of step `h.t` were updated (`lr.m`, `lr.v` are this
    /// step's `M'`, `V'`); `refreshed` says the projector was recomputed at this step (with
    /// `refresh_index_on_projection`, `L` is re-selected from this step's `M'` before the
    /// update). Returns the residual `delta: [|L|]` for [`Self::apply`], or `None` during
    /// warm-up and at the selection step.
    pub fn step(
        &mut self,
        g: &Tensor,
        lr: &LowRank<'_>,
        h: &AdamHyper,
        refreshed: bool,
    ) -> Result<Option<Tensor>> {
        let (ratio, mode) = (self.config.ratio, self.config.mode);
        match &mut self.sparse {
            None => {
                if h.t >= self.warmup as u64 {
                    self.sparse = Some(SparseResidual::select_for(lr, ratio, mode)?);
                }
                Ok(None)
            }
            Some(s) => {
                if refreshed && self.config.refresh_index_on_projection {
                    // The new `L` serves this step already, so `delta` matches `s.index()`.
                    s.reselect(lr, ratio, mode)?;
                }
                Ok(Some(match mode {
                    ResidualMode::Paper => s.update(g, lr, h)?,
                    ResidualMode::TrackedMoments => s.update_tracked(g, lr, h)?,
                }))
            }
        }
    }

    /// `W[L] -= coef * delta` with the current `L` (see [`SparseResidual::apply`]).
    pub fn apply(&self, w: &Tensor, delta: &Tensor, coef: f64) -> Result<()> {
        match &self.sparse {
            Some(s) => s.apply(w, delta, coef),
            None => Err(OptimError::State {
                msg: "residual delta applied before the index set L was selected".into(),
            }),
        }
    }

    /// The sparse state once selected.
    pub fn sparse(&self) -> Option<&SparseResidual> {
        self.sparse.as_ref()
    }

    /// Replaces the sparse state (after loading with [`SparseResidual::from_tensors`]).
    pub fn set_sparse(&mut self, sparse: Option<SparseResidual>) {
        self.sparse = sparse;
    }

    /// Warm-up length `k`.
    pub fn warmup(&self) -> usize {
        self.warmup
    }

    /// Exact state bytes (0 during warm-up).
    pub fn state_bytes(&self) -> usize {
        self.sparse.as_ref().map_or(0, |s| s.state_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_default_mode_is_tracked_moments() {
        // The paper's form diverges (ResidualMode::Paper docs); the config default must follow
        // the enum's default (it used to hard-code Paper).
        assert_eq!(ResidualConfig::default().mode, ResidualMode::TrackedMoments);
        let c: ResidualConfig = serde_json::from_str(
            r#"{"ratio": 0.01, "warmup_steps": null,
            "refresh_index_on_projection": false, "mode": "paper"}"#,
        )
        .expect("a ResidualConfig in JSON");
        assert_eq!(c.mode, ResidualMode::Paper);
    }
}
