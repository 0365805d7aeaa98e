//! Argument checks shared by the operations: every public entry point validates shapes, dtypes
//! and contiguity before dispatching, so the CUDA kernels can assume them.

use candle_core::{DType, Tensor};

use crate::error::{invalid, Result};

/// The dims of `t`, which must have rank `N`.
pub(crate) fn dims<const N: usize>(op: &'static str, name: &str, t: &Tensor) -> Result<[usize; N]> {
    let d = t.dims();
    <[usize; N]>::try_from(d)
        .map_err(|_| invalid(op, format!("`{name}` must have rank {N}, got shape {d:?}")))
}

/// `t` is contiguous (from offset 0 or not) and holds f32 or bf16.
pub(crate) fn float(op: &'static str, name: &str, t: &Tensor) -> Result<()> {
    if !matches!(t.dtype(), DType::F32 | DType::BF16) {
        return Err(invalid(
            op,
            format!("`{name}` must be f32 or bf16, got {:?}", t.dtype()),
        ));
    }
    contiguous(op, name, t)
}

pub(crate) fn contiguous(op: &'static str, name: &str, t: &Tensor) -> Result<()> {
    if !t.is_contiguous() {
        return Err(invalid(op, format!("`{name}` must be contiguous")));
    }
    Ok(())
}

/// `t` has exactly `dtype`.
pub(crate) fn dtype(op: &'static str, name: &str, t: &Tensor, dtype: DType) -> Result<()> {
    if t.dtype() != dtype {
        return Err(invalid(
            op,
            format!("`{name}` must be {dtype:?}, got {:?}", t.dtype()),
        ));
    }
    Ok(())
}

/// `t` has the shape `want`.
pub(crate) fn shape(op: &'static str, name: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    if t.dims() != want {
        return Err(invalid(
            op,
            format!("`{name}` must have shape {want:?}, got {:?}", t.dims()),
        ));
    }
    Ok(())
}

/// All tensors on the device of the first.
pub(crate) fn same_device(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    if let Some((first, rest)) = ts.split_first() {
        if rest.iter().any(|t| !t.device().same_device(first.device())) {
            return Err(invalid(op, "all tensors must be on the same device"));
        }
    }
    Ok(())
}
