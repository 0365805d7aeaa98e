//! Golden tests against numpy (fixtures from scripts/fixtures/linalg_reference.py).
//!
//! Tolerances (f32, u = 2^-24 ~ 6e-8, matrices of at most 96 x 72):
//! - singular values: a backward-stable f32 SVD perturbs each by at most c u ||A||_2 with c a
//!   modest polynomial in the size; we allow 1e-5 s_1 (c ~ 170).
//! - relative residuals: computing `A - P P^T A` in f32 adds ~ sqrt(k) u relative error per entry
//!   and subspace errors enter the residual at second order; we allow 1e-4 absolute (residuals are
//!   in [0, 1]; exact-rank cases are 0 in the reference and ~1e-7 here).
//! - projectors `P P^T` (sign-free): sin(theta) <= backward error / spectral gap; the smallest gap
//!   in the fixtures is s_7 - s_8 = 0.3 * 0.7^7 ~ 0.025 s_1, so 1e-5 / 0.025 ~ 4e-4; we allow 1e-3.
mod common;

use candle_core::Tensor;
use common::{orth_error, reference_matrices, to_rows};
use crosslore_linalg::rsi::{gram_subspace, rsi_subspace, RsiConfig};
use crosslore_linalg::svd::{subspace_residual, svd_subspace, thin_svd};
use crosslore_linalg::{Rng, Side};

const SIDES: [Side; 2] = [Side::Left, Side::Right];

#[test]
fn thin_svd_singular_values_match_numpy_reference() {
    for m in reference_matrices() {
        let a = m.tensor();
        let svd = thin_svd(&a).unwrap();
        let s = svd.s.to_vec1::<f32>().unwrap();
        assert_eq!(s.len(), m.singular_values.len(), "{}", m.name);
        let tol = 1e-5 * m.singular_values[0].max(1e-30);
        for (i, (&x, &want)) in s.iter().zip(&m.singular_values).enumerate() {
            assert!(
                (x as f64 - want).abs() <= tol,
                "{} s[{i}] = {x}, numpy {want}",
                m.name
            );
        }
        // Factors: orthonormal and reconstructing A.
        assert!(orth_error(&svd.u) < 1e-5, "{} U", m.name);
        assert!(orth_error(&svd.vt.t().unwrap()) < 1e-5, "{} V", m.name);
        let rec = svd
            .u
            .broadcast_mul(&svd.s.unsqueeze(0).unwrap())
            .unwrap()
            .matmul(&svd.vt);
        let d = common::frob(&(rec.unwrap() - &a).unwrap());
        assert!(
            d <= 1e-5 * m.singular_values[0].max(1e-30) * 10.0,
            "{} reconstruction {d}",
            m.name
        );
    }
}

#[test]
fn svd_subspace_residuals_match_numpy_reference() {
    for m in reference_matrices() {
        let a = m.tensor();
        for (&r, &want) in m.ranks.iter().zip(&m.residuals) {
            for side in SIDES {
                let p = svd_subspace(&a, r, side).unwrap();
                assert!(orth_error(&p) < 1e-5, "{} r={r} {side:?}", m.name);
                let got = subspace_residual(&a, &p, side).unwrap() as f64;
                assert!(
                    (got - want).abs() <= 1e-4,
                    "{} r={r} {side:?}: {got} vs numpy {want}",
                    m.name
                );
            }
        }
    }
}

#[test]
fn svd_projectors_match_numpy_reference() {
    for m in reference_matrices() {
        let a = m.tensor();
        for (r, refp) in &m.projectors {
            let r: usize = r.parse().unwrap();
            for side in SIDES {
                let p = svd_subspace(&a, r, side).unwrap();
                let pp = to_rows(&p.matmul(&p.t().unwrap()).unwrap());
                let want = match side {
                    Side::Left => &refp.left,
                    Side::Right => &refp.right,
                };
                let dim = pp.len();
                let mut err = 0f64;
                for i in 0..dim {
                    for j in 0..dim {
                        err = err.max((pp[i][j] as f64 - want[i * dim + j]).abs());
                    }
                }
                assert!(
                    err <= 1e-3,
                    "{} r={r} {side:?}: max |PP^T - ref| = {err}",
                    m.name
                );
            }
        }
    }
}

#[test]
fn gram_subspace_residuals_match_numpy_reference() {
    for m in reference_matrices() {
        let a = m.tensor();
        for (&r, &want) in m.ranks.iter().zip(&m.residuals) {
            for side in SIDES {
                let p = gram_subspace(&a, r, side).unwrap();
                assert!(
                    orth_error(&p) < 1e-5,
                    "{} r={r} {side:?}: {}",
                    m.name,
                    orth_error(&p)
                );
                let got = subspace_residual(&a, &p, side).unwrap() as f64;
                assert!(
                    (got - want).abs() <= 1e-4,
                    "{} r={r} {side:?}: {got} vs numpy {want}",
                    m.name
                );
            }
        }
    }
}

/// RSI with q = 2 stays within 1.5x of numpy's optimal residual (plus the f32 floor 1e-4).
#[test]
fn rsi_residuals_within_bound_of_numpy_reference() {
    let cfg = RsiConfig::default();
    for m in reference_matrices() {
        let a = m.tensor();
        for (&r, &want) in m.ranks.iter().zip(&m.residuals) {
            for side in SIDES {
                let mut rng = Rng::new(11);
                let p = rsi_subspace(&a, r, side, &cfg, &mut rng, None).unwrap();
                assert_eq!(p.dims2().unwrap().1, r);
                assert!(
                    orth_error(&p) < 1e-5,
                    "{} r={r} {side:?}: {}",
                    m.name,
                    orth_error(&p)
                );
                let got = subspace_residual(&a, &p, side).unwrap() as f64;
                assert!(
                    got <= 1.5 * want + 1e-4,
                    "{} r={r} {side:?}: {got} vs numpy {want}",
                    m.name
                );
            }
        }
    }
}

#[test]
fn residual_reference_of_zero_matrix_is_zero() {
    let z = Tensor::zeros((16, 12), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let p = svd_subspace(&z, 3, Side::Right).unwrap();
    assert_eq!(subspace_residual(&z, &p, Side::Right).unwrap(), 0.0);
    let zero_ref = reference_matrices()
        .into_iter()
        .find(|m| m.name == "zero")
        .unwrap();
    assert!(zero_ref.residuals.iter().all(|&x| x == 0.0));
}

/// `svd_subspace` returns a basis in the canonical sign convention: the largest-magnitude entry of
/// every column is positive (so CPU and CUDA, faer and cuSOLVER, give the same basis), and a sign
/// flip of the input's vectors does not change it.
#[test]
fn svd_subspace_signs_are_canonical() {
    use candle_core::{Device, Tensor};
    use crosslore_linalg::{svd::svd_subspace, Rng, Side};
    let mut rng = Rng::new(17);
    for &(m, n, r) in &[(12usize, 7usize, 3usize), (7, 12, 4), (9, 9, 9)] {
        let a = Tensor::from_vec(rng.normal_vec(m * n), (m, n), &Device::Cpu).unwrap();
        for side in [Side::Left, Side::Right] {
            let p = svd_subspace(&a, r, side).unwrap();
            let neg = svd_subspace(&a.neg().unwrap(), r, side).unwrap();
            let cols: Vec<Vec<f32>> = p.t().unwrap().to_vec2().unwrap();
            for c in &cols {
                let k = (0..c.len())
                    .max_by(|&i, &j| c[i].abs().total_cmp(&c[j].abs()))
                    .unwrap();
                assert!(
                    c[k] > 0.0,
                    "{m}x{n} {side:?}: column's largest entry {}",
                    c[k]
                );
            }
            // -A has the same singular vectors with one factor's signs flipped: same canonical basis
            let d = (&p - &neg)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                d < 1e-5,
                "{m}x{n} {side:?}: canonical basis of -A differs by {d}"
            );
        }
    }
}
