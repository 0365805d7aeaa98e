//! Copies between candle tensors (any device) and faer matrices on the host.
//!
//! Only small factors travel this way in the hot paths ((r+p)^2 Gram and triangular matrices);
//! the exact SVD copies the whole matrix (see [`crate::svd`]).
use crate::Result;
use candle_core::{DType, Device, Tensor};
use faer::{Mat, MatRef};

/// Row-major f32 values of a 2-D tensor, copied to the host.
fn host_values(t: &Tensor) -> Result<(usize, usize, Vec<f32>)> {
    let (m, n) = t.dims2()?;
    let v = t
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok((m, n, v))
}

/// A 2-D tensor as an f64 host matrix.
pub(crate) fn to_mat_f64(t: &Tensor) -> Result<Mat<f64>> {
    let (m, n, v) = host_values(t)?;
    Ok(Mat::from_fn(m, n, |i, j| v[i * n + j] as f64))
}

/// A 2-D tensor as an f32 host matrix.
pub(crate) fn to_mat_f32(t: &Tensor) -> Result<Mat<f32>> {
    let (m, n, v) = host_values(t)?;
    Ok(Mat::from_fn(m, n, |i, j| v[i * n + j]))
}

/// An f64 host matrix as an f32 tensor on `device`.
pub(crate) fn f64_to_tensor(a: MatRef<'_, f64>, device: &Device) -> Result<Tensor> {
    let (m, n) = (a.nrows(), a.ncols());
    let mut v = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            v.push(a[(i, j)] as f32);
        }
    }
    Ok(Tensor::from_vec(v, (m, n), device)?)
}

/// An f32 host matrix as a tensor on `device`.
pub(crate) fn f32_to_tensor(a: MatRef<'_, f32>, device: &Device) -> Result<Tensor> {
    let (m, n) = (a.nrows(), a.ncols());
    let mut v = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            v.push(a[(i, j)]);
        }
    }
    Ok(Tensor::from_vec(v, (m, n), device)?)
}

/// True when every entry is finite.
pub(crate) fn all_finite(a: MatRef<'_, f64>) -> bool {
    (0..a.ncols()).all(|j| (0..a.nrows()).all(|i| a[(i, j)].is_finite()))
}
