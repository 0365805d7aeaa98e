//! Argument checks shared by every entry point (DESIGN.md §2: no NaN on degenerate input).
//!
//! Dtype policy: f32 is the working precision (as galore-torch, which calls `.float()` before its
//! SVD). f16, bf16 and f64 inputs are converted to f32 and the result is f32; integer dtypes are
//! rejected with [`LinalgError::InvalidArgument`].
use crate::{LinalgError, Result};
use candle_core::{DType, Tensor};

/// `a` as a 2-D f32 tensor (converted from another float dtype), or a typed error. A strided view
/// (e.g. a column slice) is made contiguous, so that every device's matmul accepts it.
pub(crate) fn matrix_f32(op: &'static str, a: &Tensor) -> Result<Tensor> {
    if a.rank() != 2 {
        return Err(LinalgError::Shape {
            op,
            msg: format!("expected a 2-D matrix, got shape {:?}", a.dims()),
        });
    }
    match a.dtype() {
        DType::F32 => Ok(a.contiguous()?),
        DType::F16 | DType::BF16 | DType::F64 => Ok(a.to_dtype(DType::F32)?.contiguous()?),
        other => Err(LinalgError::InvalidArgument {
            op,
            msg: format!("expected a floating-point matrix (f32, f16, bf16, f64), got {other:?}"),
        }),
    }
}

/// `1 <= rank <= min(m, n)`.
pub(crate) fn rank(op: &'static str, rank: usize, m: usize, n: usize) -> Result<()> {
    if rank == 0 {
        return Err(LinalgError::InvalidArgument {
            op,
            msg: "rank must be at least 1".into(),
        });
    }
    if rank > m.min(n) {
        return Err(LinalgError::InvalidArgument {
            op,
            msg: format!(
                "rank {rank} exceeds min(m, n) = {} of the {m}x{n} matrix",
                m.min(n)
            ),
        });
    }
    Ok(())
}

/// Error unless every entry of `a` is finite. Fast path: the (two-stage) sum of all entries is
/// finite, which it is unless an entry is NaN/Inf or the sum overflows f32; only then the exact
/// test runs (`0 * x` is NaN exactly for NaN/Inf `x`, and NaN survives the sum). One read of `a`
/// on its device in the common case.
pub(crate) fn finite(op: &'static str, a: &Tensor) -> Result<()> {
    if a.elem_count() == 0 {
        return Ok(());
    }
    let sum_is_finite = |t: &Tensor| -> Result<bool> {
        Ok(t.sum_keepdim(1)?.sum_all()?.to_scalar::<f32>()?.is_finite())
    };
    if sum_is_finite(a)? || sum_is_finite(&a.affine(0.0, 0.0)?)? {
        Ok(())
    } else {
        Err(LinalgError::NonFinite { op })
    }
}
