//! GaLore's gradient projector (paper Sec. 3 / Alg. 1; DESIGN.md §1.1): the side it projects on,
//! its orthonormal factor(s), `project` and `project_back`.
//!
//! For a gradient `G: [m, n]` (`[out, in]`, Hugging Face layout):
//! - [`ProjSide::Right`]: `P: [n, r]`, `R = G P: [m, r]`, `project_back(X) = X P^T`.
//! - [`ProjSide::Left`]: `P: [m, r]`, `R = P^T G: [r, n]`, `project_back(X) = P X`.
//! - [`ProjSide::Both`] (galore-torch `full`): `P_l: [m, r]`, `P_r: [n, r]`,
//!   `R = P_l^T G P_r: [r, r]`, `project_back(X) = P_l X P_r^T`.
//!
//! galore-torch 1.0 stores the right factor as `Vh[:r]` (`[r, n]`); we store its transpose so that
//! every projector has orthonormal *columns*. galore-torch also re-guesses the side in
//! `project_back` from the low-rank shape; we store the side as an enum instead. With ranks below
//! `min(m, n)` both agree; galore-torch's guess is wrong for `reverse_std` on a wide matrix with
//! `r >= m` (it then fails with a shape error), and it silently truncates ranks above
//! `min(m, n)`, which we reject at construction ([`crate::groups`]).
use candle_core::{DType, Tensor};
use crosslore_linalg::svd::{canonical_signs, subspace_residual, svd_subspace, thin_svd};
use crosslore_linalg::Side;
use serde::{Deserialize, Serialize};

use crate::error::{OptimError, Result};

/// galore-torch's `proj_type` option: which side(s) a matrix is projected on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProjType {
    /// Right if `m >= n`, else left (project the larger dimension away).
    #[default]
    Std,
    /// Left if `m >= n`, else right.
    ReverseStd,
    Left,
    Right,
    /// Both sides (`R = P_l^T G P_r`).
    Full,
}

/// The side a projector acts on, resolved once per matrix and stored in the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjSide {
    Left,
    Right,
    Both,
}

impl ProjType {
    /// The side galore-torch 1.0 picks in `project()` for a `[m, n]` gradient.
    pub fn side_for(self, m: usize, n: usize) -> ProjSide {
        match self {
            ProjType::Std if m >= n => ProjSide::Right,
            ProjType::Std => ProjSide::Left,
            ProjType::ReverseStd if m >= n => ProjSide::Left,
            ProjType::ReverseStd => ProjSide::Right,
            ProjType::Left => ProjSide::Left,
            ProjType::Right => ProjSide::Right,
            ProjType::Full => ProjSide::Both,
        }
    }
}

/// Orthonormal projection factor(s) of one matrix.
#[derive(Debug, Clone)]
pub struct Projector {
    side: ProjSide,
    /// `[m, r]`, present for Left and Both.
    left: Option<Tensor>,
    /// `[n, r]`, present for Right and Both.
    right: Option<Tensor>,
}

impl Projector {
    /// Builds a projector from its factors; checks that the factors match the side and are 2-D.
    pub fn from_parts(side: ProjSide, left: Option<Tensor>, right: Option<Tensor>) -> Result<Self> {
        let ok = match side {
            ProjSide::Left => left.is_some() && right.is_none(),
            ProjSide::Right => left.is_none() && right.is_some(),
            ProjSide::Both => left.is_some() && right.is_some(),
        };
        if !ok {
            return Err(OptimError::State {
                msg: format!(
                    "projector side {side:?} needs factors left={}, right={}",
                    side != ProjSide::Right,
                    side != ProjSide::Left
                ),
            });
        }
        for t in left.iter().chain(right.iter()) {
            if t.rank() != 2 || t.dtype() != DType::F32 {
                return Err(OptimError::State {
                    msg: format!(
                        "projector factor must be a 2-D f32 matrix, got {:?} {:?}",
                        t.dims(),
                        t.dtype()
                    ),
                });
            }
        }
        Ok(Self { side, left, right })
    }

    /// A one-sided projector (`p: [m, r]` for Left, `[n, r]` for Right).
    pub fn one_sided(side: Side, p: Tensor) -> Result<Self> {
        match side {
            Side::Left => Self::from_parts(ProjSide::Left, Some(p), None),
            Side::Right => Self::from_parts(ProjSide::Right, None, Some(p)),
        }
    }

    /// GaLore's projector: the exact top-`rank` singular subspace(s) of `g: [m, n]` (f32 SVD,
    /// `full_matrices=False`, as galore-torch's `get_orthogonal_matrix`).
    pub fn exact(g: &Tensor, rank: usize, side: ProjSide) -> Result<Self> {
        let g = g.to_dtype(DType::F32)?;
        match side {
            ProjSide::Left => Self::one_sided(Side::Left, svd_subspace(&g, rank, Side::Left)?),
            ProjSide::Right => Self::one_sided(Side::Right, svd_subspace(&g, rank, Side::Right)?),
            ProjSide::Both => {
                let svd = thin_svd(&g)?;
                let left = canonical_signs(&svd.u.narrow(1, 0, rank)?.contiguous()?)?; // [m, r]
                let right = canonical_signs(&svd.vt.narrow(0, 0, rank)?.t()?.contiguous()?)?; // [n, r]
                Self::from_parts(ProjSide::Both, Some(left), Some(right))
            }
        }
    }

    pub fn side(&self) -> ProjSide {
        self.side
    }

    /// `[m, r]` factor (Left, Both).
    pub fn left(&self) -> Option<&Tensor> {
        self.left.as_ref()
    }

    /// `[n, r]` factor (Right, Both).
    pub fn right(&self) -> Option<&Tensor> {
        self.right.as_ref()
    }

    /// Shape of the projected gradient `R` for a `[m, n]` gradient.
    pub fn projected_shape(&self, m: usize, n: usize) -> (usize, usize) {
        let rl = self.left.as_ref().map(|p| p.dims()[1]);
        let rr = self.right.as_ref().map(|p| p.dims()[1]);
        (rl.unwrap_or(m), rr.unwrap_or(n))
    }

    /// Checks that the projector fits a `[m, n]` gradient (after load or injection).
    pub fn check_fits(&self, param: &str, m: usize, n: usize) -> Result<()> {
        let bad = |which: &str, t: &Tensor, want: usize| OptimError::Shape {
            param: param.to_string(),
            expected: format!("{which} projector with {want} rows"),
            got: format!("{:?}", t.dims()),
        };
        if let Some(l) = &self.left {
            if l.dims()[0] != m {
                return Err(bad("left", l, m));
            }
        }
        if let Some(r) = &self.right {
            if r.dims()[0] != n {
                return Err(bad("right", r, n));
            }
        }
        Ok(())
    }

    /// `R = project(G)` (f32): `G P`, `P^T G` or `P_l^T G P_r`. The products run in `G`'s dtype
    /// (f32 on the CPU path; a bf16 gradient on CUDA is multiplied in bf16 with f32 accumulation,
    /// as galore-torch does, without a dense f32 copy of `G`), the result is f32.
    pub fn project(&self, g: &Tensor) -> Result<Tensor> {
        let dt = g.dtype();
        let mut x = g.clone();
        if let Some(l) = &self.left {
            x = l.to_dtype(dt)?.t()?.matmul(&x)?; // [r, n]
        }
        if let Some(r) = &self.right {
            x = x.matmul(&r.to_dtype(dt)?)?; // [m or r, r]
        }
        Ok(x.to_dtype(DType::F32)?)
    }

    /// `project_back(X)` (unscaled): `X P^T`, `P X` or `P_l X P_r^T`; `[m, n]`.
    pub fn project_back(&self, x: &Tensor) -> Result<Tensor> {
        self.project_back_in(x, x.dtype())
    }

    /// [`Self::project_back`] with the factors and `X` in `dtype` (the CUDA commit of a bf16
    /// weight forms the dense update in bf16, as galore-torch).
    pub fn project_back_in(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        let mut y = x.to_dtype(dtype)?;
        if let Some(l) = &self.left {
            y = l.to_dtype(dtype)?.matmul(&y)?; // [m, *]
        }
        if let Some(r) = &self.right {
            y = y.matmul(&r.to_dtype(dtype)?.t()?)?; // [*, n]
        }
        Ok(y)
    }

    /// Bytes of the stored factor(s).
    pub fn bytes(&self) -> usize {
        self.left
            .iter()
            .chain(self.right.iter())
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Relative residual of the projection of `g` (paper Fig. 2b): `||G - back(proj(G))||_F /
    /// ||G||_F`; for a one-sided projector this is linalg's `subspace_residual`.
    pub fn residual(&self, g: &Tensor) -> Result<f32> {
        let g = g.to_dtype(DType::F32)?;
        match self.side {
            ProjSide::Left => Ok(subspace_residual(&g, self.left_f()?, Side::Left)?),
            ProjSide::Right => Ok(subspace_residual(&g, self.right_f()?, Side::Right)?),
            ProjSide::Both => {
                let approx = self.project_back(&self.project(&g)?)?;
                let num = (&g - approx)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
                let den = g.sqr()?.sum_all()?.to_scalar::<f32>()?;
                Ok(if den > 0.0 { (num / den).sqrt() } else { 0.0 })
            }
        }
    }

    /// Test hook for golden tests: flips the sign of each column of each factor so that it has a
    /// non-negative dot product with the same column of `reference`.
    ///
    /// Singular vectors are defined only up to sign, and two correct SVD implementations (faer
    /// here, LAPACK in torch) may pick different signs. Within one projection period the sign
    /// cancels (`R` and `project_back` flip together), but the moments `M'`, `V'` are kept across a
    /// refresh (galore-torch behaviour), so a column whose sign differs from the reference's
    /// changes the sign of the corresponding rows/columns of `M'` relative to the new basis and
    /// hence the update. To compare with a reference run, align signs after each refresh.
    pub fn align_signs_to(&mut self, reference: &Projector) -> Result<()> {
        if reference.side != self.side {
            return Err(OptimError::State {
                msg: format!(
                    "cannot align a {:?} projector to a {:?} one",
                    self.side, reference.side
                ),
            });
        }
        for (mine, theirs) in [
            (&mut self.left, &reference.left),
            (&mut self.right, &reference.right),
        ] {
            if let (Some(p), Some(q)) = (mine.as_mut(), theirs.as_ref()) {
                if p.dims() != q.dims() {
                    return Err(OptimError::Shape {
                        param: "projector".into(),
                        expected: format!("{:?}", q.dims()),
                        got: format!("{:?}", p.dims()),
                    });
                }
                // per-column sign of <p_j, q_j>: [1, r]
                let dots = (&*p * q)?.sum_keepdim(0)?;
                let signs = dots.ge(0f32)?.to_dtype(DType::F32)?.affine(2.0, -1.0)?;
                *p = p.broadcast_mul(&signs)?;
            }
        }
        Ok(())
    }

    /// Moment re-projection on refresh (option beyond galore-torch, off by default):
    /// with `C = P_old^T P_new` (`[r_old, r_new]`), the first moment becomes
    /// `M' C` (Right), `C^T M'` (Left), `C_l^T M' C_r` (Both), i.e. `M'` expressed in the new
    /// basis. The second moment is transformed with the elementwise squares of `C` (exact when
    /// `C` is a signed permutation, and it keeps `V' >= 0`).
    pub fn reproject_moments(
        &self,
        new: &Projector,
        m1: &Tensor,
        m2: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        if self.side != new.side {
            return Err(OptimError::State {
                msg: format!(
                    "re-projection across sides {:?} -> {:?}",
                    self.side, new.side
                ),
            });
        }
        let mut a = m1.clone();
        let mut b = m2.clone();
        if let (Some(po), Some(pn)) = (&self.left, &new.left) {
            let c = po.t()?.matmul(pn)?; // [r_old, r_new]
            a = c.t()?.matmul(&a)?;
            b = c.sqr()?.t()?.matmul(&b)?;
        }
        if let (Some(po), Some(pn)) = (&self.right, &new.right) {
            let c = po.t()?.matmul(pn)?; // [r_old, r_new]
            a = a.matmul(&c)?;
            b = b.matmul(&c.sqr()?)?;
        }
        Ok((a, b))
    }
}

impl Projector {
    fn left_f(&self) -> Result<&Tensor> {
        self.left.as_ref().ok_or_else(missing_factor)
    }
    fn right_f(&self) -> Result<&Tensor> {
        self.right.as_ref().ok_or_else(missing_factor)
    }
}

fn missing_factor() -> OptimError {
    OptimError::State {
        msg: "projector factor missing".into(),
    }
}
