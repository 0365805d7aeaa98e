//! Properties of the thin QR over many seeded shapes and degenerate inputs.
//!
//! Orthogonality tolerance: CholeskyQR2 and Householder reach ||Q^T Q - I|| = O(u) times a small
//! polynomial in (m, k); entries of the f32 product Q^T Q themselves carry ~ sqrt(m) u rounding
//! (m <= 2048: ~3e-6). We allow 2e-5 (= ~330 u) for every entry.
mod common;

use candle_core::{DType, Device, Tensor};
use common::{gaussian, has_nan_or_inf, orth_error, range_defect};
use crosslore_linalg::qr::{cholesky_qr2, householder_qr, thin_qr};
use crosslore_linalg::{LinalgError, Rng};

const ORTH_TOL: f64 = 2e-5;

/// Columns scaled by 10^(-e * j / k): condition number 10^e.
fn graded(rng: &mut Rng, m: usize, k: usize, e: f64) -> Tensor {
    let s: Vec<f32> = (0..k)
        .map(|j| 10f64.powf(-e * j as f64 / k as f64) as f32)
        .collect();
    let d = Tensor::from_vec(s, (1, k), &Device::Cpu).unwrap();
    gaussian(rng, m, k).broadcast_mul(&d).unwrap()
}

fn check(y: &Tensor, label: &str) {
    let q = thin_qr(y).unwrap();
    assert_eq!(q.dims(), y.dims(), "{label}");
    assert!(!has_nan_or_inf(&q), "{label}: NaN/Inf");
    let e = orth_error(&q);
    assert!(e < ORTH_TOL, "{label}: |Q^T Q - I| = {e}");
    let d = range_defect(y, &q);
    assert!(d < 1e-5, "{label}: range defect {d}");
}

#[test]
fn thin_qr_orthonormal_and_spans_range_over_many_shapes() {
    let mut rng = Rng::new(42);
    let shapes = [
        (1, 1),
        (2, 1),
        (7, 7),
        (33, 5),
        (64, 64),
        (100, 1),
        (300, 40),
        (517, 136),
        (2048, 136),
    ];
    for &(m, k) in &shapes {
        check(&gaussian(&mut rng, m, k), &format!("gaussian {m}x{k}"));
        // Well conditioned (1e2) and ill conditioned (1e6, beyond CholeskyQR2: Householder).
        check(&graded(&mut rng, m, k, 2.0), &format!("graded1e2 {m}x{k}"));
        check(&graded(&mut rng, m, k, 6.0), &format!("graded1e6 {m}x{k}"));
    }
    // Random shapes.
    for i in 0..30 {
        let k = 1 + rng.below(40) as usize;
        let m = k + rng.below(200) as usize;
        check(&gaussian(&mut rng, m, k), &format!("random #{i} {m}x{k}"));
    }
}

#[test]
fn cholesky_qr2_succeeds_when_well_conditioned_and_agrees_with_householder() {
    let mut rng = Rng::new(5);
    let y = graded(&mut rng, 400, 30, 2.0);
    let q = cholesky_qr2(&y)
        .unwrap()
        .expect("cond 1e2 is within CholeskyQR2's range");
    assert!(orth_error(&q) < ORTH_TOL);
    let h = householder_qr(&y).unwrap();
    // Same subspace: Q Q^T = H H^T.
    let d = (q.matmul(&q.t().unwrap()).unwrap() - h.matmul(&h.t().unwrap()).unwrap()).unwrap();
    assert!(common::frob(&d) < 1e-4, "{}", common::frob(&d));
}

#[test]
fn rank_deficient_and_zero_fall_back_and_complete_the_basis() {
    let mut rng = Rng::new(9);
    // Rank 3 in 10 columns.
    let y = gaussian(&mut rng, 50, 3)
        .matmul(&gaussian(&mut rng, 3, 10))
        .unwrap();
    assert!(
        cholesky_qr2(&y).unwrap().is_none(),
        "rank-deficient Gram must not pass"
    );
    check(&y, "rank 3 of 10");
    // Duplicate columns.
    let c = gaussian(&mut rng, 20, 1);
    let y = Tensor::cat(&[&c, &c, &c], 1).unwrap();
    check(&y, "duplicate columns");
    // Zero: Q = first k columns of a deterministic orthonormal basis.
    let z = Tensor::zeros((12, 4), DType::F32, &Device::Cpu).unwrap();
    assert!(cholesky_qr2(&z).unwrap().is_none());
    let q = thin_qr(&z).unwrap();
    assert!(!has_nan_or_inf(&q));
    assert!(orth_error(&q) < ORTH_TOL);
    assert_eq!(
        q.to_vec2::<f32>().unwrap(),
        thin_qr(&z).unwrap().to_vec2::<f32>().unwrap()
    );
}

#[test]
fn huge_finite_values_do_not_overflow() {
    // Entries ~1e25: the f32 Gram overflows, the f64 Householder fallback handles it.
    let mut rng = Rng::new(3);
    let y = (gaussian(&mut rng, 40, 6) * 1e25).unwrap();
    check(&y, "huge");
}

#[test]
fn thin_qr_is_deterministic_and_converts_other_float_dtypes() {
    let mut rng = Rng::new(1);
    let y = gaussian(&mut rng, 90, 12);
    let a = thin_qr(&y).unwrap().to_vec2::<f32>().unwrap();
    let b = thin_qr(&y).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(a, b);
    for dt in [DType::F64, DType::BF16, DType::F16] {
        let q = thin_qr(&y.to_dtype(dt).unwrap()).unwrap();
        assert_eq!(q.dtype(), DType::F32);
        assert!(orth_error(&q) < ORTH_TOL, "{dt:?}");
    }
}

#[test]
fn thin_qr_rejects_bad_input() {
    let dev = Device::Cpu;
    let wide = Tensor::zeros((3, 5), DType::F32, &dev).unwrap();
    assert!(matches!(thin_qr(&wide), Err(LinalgError::Shape { .. })));
    let v = Tensor::zeros(5, DType::F32, &dev).unwrap();
    assert!(matches!(thin_qr(&v), Err(LinalgError::Shape { .. })));
    let ints = Tensor::zeros((5, 2), DType::U32, &dev).unwrap();
    assert!(matches!(
        thin_qr(&ints),
        Err(LinalgError::InvalidArgument { .. })
    ));
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut v = vec![1f32; 20];
        v[7] = bad;
        let y = Tensor::from_vec(v, (10, 2), &dev).unwrap();
        assert!(
            matches!(thin_qr(&y), Err(LinalgError::NonFinite { .. })),
            "{bad}"
        );
        assert!(
            matches!(householder_qr(&y), Err(LinalgError::NonFinite { .. })),
            "{bad}"
        );
        assert!(
            matches!(cholesky_qr2(&y), Err(LinalgError::NonFinite { .. })),
            "{bad}"
        );
    }
    let msg = thin_qr(&wide).unwrap_err().to_string();
    assert!(msg.contains("thin_qr") && msg.contains("[3, 5]"), "{msg}");
}
