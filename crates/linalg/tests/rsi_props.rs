//! Properties of randomized subspace iteration (HMT 2011 Alg. 4.4) and of gram_subspace.
mod common;

use candle_core::{DType, Device, Tensor};
use common::{gaussian, has_nan_or_inf, orth_error, power_law, with_spectrum};
use crosslore_linalg::rsi::{gram_subspace, rsi_subspace, sketch_width, RsiConfig};
use crosslore_linalg::svd::{subspace_residual, svd_subspace};
use crosslore_linalg::{LinalgError, Rng, Side};

/// Orthogonality of returned projectors (see qr_props.rs for the f32 argument).
const ORTH_TOL: f64 = 2e-5;
const SIDES: [Side; 2] = [Side::Left, Side::Right];

fn cfg(q: usize) -> RsiConfig {
    RsiConfig {
        oversample: 8,
        power_iters: q,
    }
}

fn rsi(a: &Tensor, r: usize, side: Side, q: usize, seed: u64, warm: Option<&Tensor>) -> Tensor {
    let p = rsi_subspace(a, r, side, &cfg(q), &mut Rng::new(seed), warm).unwrap();
    assert!(!has_nan_or_inf(&p));
    assert!(orth_error(&p) < ORTH_TOL, "orth {}", orth_error(&p));
    p
}

fn res(a: &Tensor, p: &Tensor, side: Side) -> f64 {
    subspace_residual(a, p, side).unwrap() as f64
}

#[test]
fn rsi_q2_within_1_5x_of_exact_svd_on_decaying_spectrum() {
    let mut rng = Rng::new(2026);
    for &(m, n) in &[(300, 200), (200, 300), (256, 256)] {
        let a = with_spectrum(&mut rng, m, n, &power_law(m.min(n), 1.0));
        for side in SIDES {
            for r in [8, 32] {
                let exact = res(&a, &svd_subspace(&a, r, side).unwrap(), side);
                let by_q: Vec<f64> = (0..3)
                    .map(|q| res(&a, &rsi(&a, r, side, q, 7, None), side))
                    .collect();
                println!(
                    "{m}x{n} {side:?} r={r}: exact {exact:.5}  rsi q=0 {:.5}  q=1 {:.5}  q=2 {:.5}",
                    by_q[0], by_q[1], by_q[2]
                );
                assert!(by_q[2] <= 1.5 * exact, "q=2 {} vs exact {exact}", by_q[2]);
                // Measured margin is far tighter (< 0.5%); 1% still catches a wrong subspace.
                assert!(by_q[2] <= 1.01 * exact, "q=2 {} vs exact {exact}", by_q[2]);
                assert!(
                    by_q[2] <= by_q[0],
                    "power iterations must not hurt: {by_q:?}"
                );
                assert!(
                    by_q[2] >= exact * (1.0 - 1e-4),
                    "cannot beat the optimum: {by_q:?} {exact}"
                );
            }
        }
    }
}

#[test]
fn rsi_recovers_exact_rank_matrices() {
    let mut rng = Rng::new(77);
    for &(m, n) in &[(120, 80), (80, 120), (64, 64)] {
        let a = gaussian(&mut rng, m, 10)
            .matmul(&gaussian(&mut rng, 10, n))
            .unwrap(); // rank 10
        for side in SIDES {
            for q in 0..3 {
                // r equal to the rank, and r above it (tiny/zero singular values in the sketch).
                for r in [10, 16] {
                    let p = rsi(&a, r, side, q, 3, None);
                    let e = res(&a, &p, side);
                    assert!(e < 1e-5, "{m}x{n} {side:?} q={q} r={r}: residual {e}");
                }
            }
        }
    }
}

#[test]
fn rsi_is_deterministic_from_the_seed() {
    let mut rng = Rng::new(5);
    let a = with_spectrum(&mut rng, 150, 90, &power_law(90, 1.0));
    for side in SIDES {
        let mut r1 = Rng::new(99);
        let mut r2 = Rng::new(99);
        let p1 = rsi_subspace(&a, 12, side, &cfg(2), &mut r1, None).unwrap();
        let p2 = rsi_subspace(&a, 12, side, &cfg(2), &mut r2, None).unwrap();
        assert_eq!(p1.to_vec2::<f32>().unwrap(), p2.to_vec2::<f32>().unwrap());
        assert_eq!(r1, r2);
        assert_ne!(r1, Rng::new(99), "the sketch must consume random numbers");
        let p3 = rsi(&a, 12, side, 2, 100, None);
        assert_ne!(p1.to_vec2::<f32>().unwrap(), p3.to_vec2::<f32>().unwrap());
    }
}

#[test]
fn warm_start_q1_as_good_as_cold_q2_on_slowly_perturbed_matrix() {
    let mut rng = Rng::new(31);
    let (m, n, r) = (320, 256, 32);
    let a1 = with_spectrum(&mut rng, m, n, &power_law(n, 1.0));
    // A small rotation of the spectrum: 2% of another matrix of the same kind.
    let a2 = (&a1 + (with_spectrum(&mut rng, m, n, &power_law(n, 1.0)) * 0.02).unwrap()).unwrap();
    for side in SIDES {
        let p1 = rsi(&a1, r, side, 2, 1, None);
        let exact = res(&a2, &svd_subspace(&a2, r, side).unwrap(), side);
        let warm_q1 = res(&a2, &rsi(&a2, r, side, 1, 2, Some(&p1)), side);
        let cold_q1 = res(&a2, &rsi(&a2, r, side, 1, 2, None), side);
        let cold_q2 = res(&a2, &rsi(&a2, r, side, 2, 2, None), side);
        println!(
            "{side:?}: exact {exact:.5} warm q=1 {warm_q1:.5} cold q=1 {cold_q1:.5} cold q=2 {cold_q2:.5}"
        );
        assert!(
            warm_q1 <= cold_q2 * 1.005,
            "warm q=1 {warm_q1} vs cold q=2 {cold_q2}"
        );
        assert!(warm_q1 < cold_q1, "warm start must help at equal q");
    }
}

#[test]
fn warm_start_fills_the_whole_sketch_and_checks_its_shape() {
    let mut rng = Rng::new(8);
    let a = with_spectrum(&mut rng, 60, 40, &power_law(40, 1.0));
    let k = sketch_width(10, &cfg(1), 60, 40);
    assert_eq!(k, 18);
    let warm = rsi(&a, k, Side::Right, 2, 1, None); // [40, 18]: no Gaussian columns left
    let mut g = Rng::new(4);
    let p = rsi_subspace(&a, 10, Side::Right, &cfg(1), &mut g, Some(&warm)).unwrap();
    assert_eq!(
        g,
        Rng::new(4),
        "no random numbers drawn when warm fills the sketch"
    );
    assert!(orth_error(&p) < ORTH_TOL);
    let wrong_rows = Tensor::zeros((60, 5), DType::F32, &Device::Cpu).unwrap();
    let too_wide = Tensor::zeros((40, 19), DType::F32, &Device::Cpu).unwrap();
    for w in [&wrong_rows, &too_wide] {
        let e = rsi_subspace(&a, 10, Side::Right, &cfg(1), &mut g, Some(w));
        assert!(matches!(e, Err(LinalgError::Shape { .. })));
    }
    let mut v = vec![0f32; 40 * 5];
    v[3] = f32::NAN;
    let nan_warm = Tensor::from_vec(v, (40, 5), &Device::Cpu).unwrap();
    let e = rsi_subspace(&a, 10, Side::Right, &cfg(1), &mut g, Some(&nan_warm));
    assert!(matches!(e, Err(LinalgError::NonFinite { .. })));
}

#[test]
fn left_side_equals_right_side_of_transpose() {
    let mut rng = Rng::new(12);
    let a = with_spectrum(&mut rng, 90, 140, &power_law(90, 1.0));
    let at = a.t().unwrap().contiguous().unwrap();
    let pl = rsi(&a, 9, Side::Left, 2, 4, None);
    let pr = rsi(&at, 9, Side::Right, 2, 4, None);
    let d = (pl.matmul(&pl.t().unwrap()).unwrap() - pr.matmul(&pr.t().unwrap()).unwrap()).unwrap();
    assert!(common::frob(&d) < 1e-3, "{}", common::frob(&d));
    assert_eq!(pl.dims(), &[90, 9]);
}

#[test]
fn zero_matrix_gives_orthonormal_projectors_without_nan() {
    let z = Tensor::zeros((40, 30), DType::F32, &Device::Cpu).unwrap();
    for side in SIDES {
        for q in 0..3 {
            let p = rsi(&z, 5, side, q, 1, None);
            assert_eq!(res(&z, &p, side), 0.0);
        }
        for p in [
            gram_subspace(&z, 5, side).unwrap(),
            svd_subspace(&z, 5, side).unwrap(),
        ] {
            assert!(!has_nan_or_inf(&p));
            assert!(orth_error(&p) < ORTH_TOL);
        }
    }
}

#[test]
fn huge_finite_entries_are_rescaled_not_reported_as_nan() {
    // Entries ~3e37 (< f32::MAX): sums of 400 products overflow f32; RSI retries on A / max|A|.
    let mut rng = Rng::new(44);
    let a = (gaussian(&mut rng, 50, 8)
        .matmul(&gaussian(&mut rng, 8, 400))
        .unwrap()
        * 1e37)
        .unwrap();
    let small = (&a * 1e-37).unwrap();
    for side in SIDES {
        let p = rsi(&a, 8, side, 2, 1, None);
        assert!(res(&a, &p, side) < 1e-5, "{}", res(&a, &p, side));
        let p_small = rsi(&small, 8, side, 2, 1, None);
        assert!(res(&a, &p_small, side) < 1e-5);
        let g = gram_subspace(&a, 8, side).unwrap();
        assert!(orth_error(&g) < ORTH_TOL && res(&a, &g, side) < 1e-5);
    }
}

#[test]
fn sketch_is_capped_at_min_dimension() {
    let mut rng = Rng::new(6);
    let a = gaussian(&mut rng, 12, 30);
    assert_eq!(sketch_width(10, &cfg(2), 12, 30), 12);
    for side in SIDES {
        let p = rsi(&a, 12, side, 2, 1, None); // full rank: residual 0
        assert!(res(&a, &p, side) < 1e-5);
    }
}

#[test]
fn gram_subspace_of_a_head_slice_is_exact() {
    let mut rng = Rng::new(21);
    // One "head" slice [d_head, d_model] (short) and a tall matrix for the other branch.
    let slice = with_spectrum(&mut rng, 64, 512, &power_law(64, 1.0));
    let tall = with_spectrum(&mut rng, 512, 40, &power_law(40, 1.0));
    for a in [&slice, &tall] {
        for side in SIDES {
            for r in [8, 40] {
                let p = gram_subspace(a, r, side).unwrap();
                assert!(orth_error(&p) < ORTH_TOL);
                let exact = res(a, &svd_subspace(a, r, side).unwrap(), side);
                let got = res(a, &p, side);
                assert!(
                    (got - exact).abs() < 1e-5,
                    "{:?} {side:?} r={r}: {got} vs {exact}",
                    a.dims()
                );
            }
        }
    }
}

#[test]
fn invalid_arguments_are_typed_errors() {
    let dev = Device::Cpu;
    let a = Tensor::ones((10, 6), DType::F32, &dev).unwrap();
    let mut g = Rng::new(1);
    let c = cfg(1);
    type Call<'a> = Box<dyn Fn(&Tensor, usize) -> crosslore_linalg::Result<Tensor> + 'a>;
    let calls: Vec<(&str, Call)> = vec![
        (
            "rsi",
            Box::new(|x, r| rsi_subspace(x, r, Side::Right, &c, &mut Rng::new(1), None)),
        ),
        ("gram", Box::new(|x, r| gram_subspace(x, r, Side::Left))),
        ("svd", Box::new(|x, r| svd_subspace(x, r, Side::Right))),
    ];
    for (name, f) in &calls {
        assert!(
            matches!(f(&a, 0), Err(LinalgError::InvalidArgument { .. })),
            "{name} rank 0"
        );
        let e = f(&a, 7).unwrap_err();
        assert!(
            matches!(e, LinalgError::InvalidArgument { .. }),
            "{name} rank 7"
        );
        assert!(e.to_string().contains("min(m, n) = 6"), "{name}: {e}");
        let cube = Tensor::ones((2, 5, 6), DType::F32, &dev).unwrap();
        assert!(
            matches!(f(&cube, 2), Err(LinalgError::Shape { .. })),
            "{name} 3-D"
        );
        let ints = Tensor::ones((10, 6), DType::U8, &dev).unwrap();
        assert!(
            matches!(f(&ints, 2), Err(LinalgError::InvalidArgument { .. })),
            "{name} u8"
        );
        for bad in [f32::NAN, f32::INFINITY] {
            let mut v = vec![1f32; 60];
            v[59] = bad;
            let x = Tensor::from_vec(v, (10, 6), &dev).unwrap();
            assert!(
                matches!(f(&x, 2), Err(LinalgError::NonFinite { .. })),
                "{name} {bad}"
            );
        }
        // Other float dtypes are converted; the projector is f32.
        let p = f(&a.to_dtype(DType::BF16).unwrap(), 2).unwrap();
        assert_eq!(p.dtype(), DType::F32);
    }
    let _ = &mut g;
    let p3 = Tensor::ones((5, 2), DType::F32, &dev).unwrap();
    assert!(matches!(
        subspace_residual(&a, &p3, Side::Right),
        Err(LinalgError::Shape { .. })
    ));
}
