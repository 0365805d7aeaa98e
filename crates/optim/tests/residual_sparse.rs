//! Sparse residual (paper Alg. 2) against dense computations written here from the formulas, in
//! f64 on the host (an independent code path from the sampled f32 candle implementation), for
//! both [`ResidualMode`]s.
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use crosslore_linalg::{Rng, Side};
use crosslore_optim::residual::{
    index_len, sampled_product, AdamHyper, LowRank, ResidualConfig, ResidualMode, ResidualState,
    SparseResidual,
};
use crosslore_optim::OptimError;

type Mat = Vec<Vec<f64>>;

fn randn(rng: &mut Rng, rows: usize, cols: usize) -> Tensor {
    Tensor::from_vec(rng.normal_vec(rows * cols), (rows, cols), &Device::Cpu).unwrap()
}

fn host(t: &Tensor) -> Mat {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

fn matmul_t(a: &Mat, b: &Mat) -> Mat {
    // A B^T
    a.iter()
        .map(|ra| {
            b.iter()
                .map(|rb| ra.iter().zip(rb).map(|(x, y)| x * y).sum())
                .collect()
        })
        .collect()
}

fn transpose(a: &Mat) -> Mat {
    (0..a[0].len())
        .map(|j| a.iter().map(|r| r[j]).collect())
        .collect()
}

/// Dense `project_back(x)` in f64.
fn back(side: Side, p: &Mat, x: &Mat) -> Mat {
    match side {
        Side::Right => matmul_t(x, p),            // X P^T
        Side::Left => matmul_t(p, &transpose(x)), // P X
    }
}

fn gather(a: &Mat, idx: &[u32]) -> Vec<f64> {
    let n = a[0].len();
    idx.iter()
        .map(|&i| a[i as usize / n][i as usize % n])
        .collect()
}

fn random_index(rng: &mut Rng, total: usize, k: usize) -> Vec<u32> {
    let mut v: Vec<u32> = rng
        .sample_distinct(total, k)
        .into_iter()
        .map(|x| x as u32)
        .collect();
    v.sort_unstable();
    v
}

fn idx_tensor(v: &[u32]) -> Tensor {
    Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).unwrap()
}

#[test]
fn sampled_product_equals_dense_gather() {
    let mut rng = Rng::new(1);
    // tall, wide, square, k = 1, k > both sides, and one with |L| * k > the 4 Mi chunk size.
    for &(m, n, k, l) in &[
        (37, 11, 5, 100),
        (9, 53, 7, 200),
        (20, 20, 20, 400),
        (16, 8, 1, 30),
        (3, 4, 9, 12),
        (300, 300, 64, 90_000),
    ] {
        let a = randn(&mut rng, m, k);
        let b = randn(&mut rng, n, k);
        let idx = random_index(&mut rng, m * n, l);
        let got: Vec<f32> = sampled_product(&a, &b, &idx_tensor(&idx))
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = gather(&matmul_t(&host(&a), &host(&b)), &idx);
        assert_eq!(got.len(), l);
        // f32 dot products of k terms of N(0,1) factors: error <= k * 2^-24 * sum|a_i b_i|,
        // below 1e-5 * sqrt(k) * k for these sizes; use 1e-5 * k.
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-5 * k as f64,
                "{m}x{n} k={k}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn sampled_product_rejects_mismatched_inner_dim() {
    let mut rng = Rng::new(2);
    let err = sampled_product(
        &randn(&mut rng, 4, 3),
        &randn(&mut rng, 5, 2),
        &idx_tensor(&[1]),
    );
    assert!(matches!(err, Err(OptimError::Shape { .. })));
}

/// `m` is the dense `|project_back(M')|`; checks `sel` is a top-k set: sorted, distinct, of size
/// k, and every selected magnitude >= every unselected one up to f32 rounding of the products.
fn assert_top_k(mag: &[f64], sel: &[u32], k: usize) {
    assert_eq!(sel.len(), k);
    assert!(sel.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
    let mut chosen = vec![false; mag.len()];
    for &i in sel {
        chosen[i as usize] = true;
    }
    let min_in = sel
        .iter()
        .map(|&i| mag[i as usize])
        .fold(f64::INFINITY, f64::min);
    let max_out = (0..mag.len())
        .filter(|&i| !chosen[i])
        .map(|i| mag[i])
        .fold(0.0, f64::max);
    // Against a full sort of the dense matrix: the k-th largest value.
    let mut sorted = mag.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let kth = sorted[k - 1];
    assert!(
        (min_in - kth).abs() <= 1e-5 * kth.max(1.0),
        "min selected {min_in} vs kth {kth}"
    );
    assert!(
        min_in + 1e-5 >= max_out,
        "selected {min_in} < unselected {max_out}"
    );
}

#[test]
fn select_picks_top_k_both_sides() {
    let mut rng = Rng::new(3);
    for &(m, n, r, side) in &[
        (40, 25, 4, Side::Right),
        (25, 40, 4, Side::Right),
        (40, 25, 6, Side::Left),
        (18, 18, 3, Side::Left),
    ] {
        let (p, mo) = match side {
            Side::Right => (randn(&mut rng, n, r), randn(&mut rng, m, r)),
            Side::Left => (randn(&mut rng, m, r), randn(&mut rng, r, n)),
        };
        let mag: Vec<f64> = back(side, &host(&p), &host(&mo))
            .into_iter()
            .flatten()
            .map(f64::abs)
            .collect();
        for ratio in [0.012, 0.1, 0.5, 1.0] {
            let s = SparseResidual::select(&mo, &p, side, ratio).unwrap();
            assert_eq!(s.shape(), (m, n));
            let k = index_len(ratio, m * n);
            let sel: Vec<u32> = s.index().to_vec1().unwrap();
            assert_top_k(&mag, &sel, k);
            assert_eq!(s.state_bytes(), 12 * k);
            let dm: Vec<f32> = s.dm().to_vec1().unwrap();
            assert!(dm.iter().all(|&x| x == 0.0));
        }
    }
}

#[test]
fn select_breaks_ties_by_smaller_index() {
    // P = first two unit vectors of R^4 (right side): project_back(M') = [M' | 0 0], so the
    // entries are exactly M'. Magnitudes: row 0: 3 3, row 1: 3 1, row 2: 2 3; zeros elsewhere.
    let p = Tensor::from_vec(vec![1f32, 0., 0., 1., 0., 0., 0., 0.], (4, 2), &Device::Cpu).unwrap();
    let mo = Tensor::from_vec(vec![3f32, -3., -3., 1., 2., 3.], (3, 2), &Device::Cpu).unwrap();
    // 12 entries, ratio 3/12 -> the first three of the four 3s by flat index: 0, 1, 4 (not 9).
    let s = SparseResidual::select(&mo, &p, Side::Right, 0.25).unwrap();
    assert_eq!(s.index().to_vec1::<u32>().unwrap(), vec![0, 1, 4]);
}

/// Dense reference state over the full m x n matrix.
struct Dense {
    dm: Mat,
    dv: Mat,
}

/// One dense step of the formulas (DESIGN.md §1.2 item 3), returning the full delta matrix.
#[allow(clippy::too_many_arguments)]
fn dense_step(
    st: &mut Dense,
    side: Side,
    g: &Mat,
    p: &Mat,
    r: &Mat,
    v: &Mat,
    h: &AdamHyper,
) -> Mat {
    let ghat = back(side, p, r);
    let vb = back(side, p, v);
    let (b1, b2, t) = (h.beta1, h.beta2, h.t as i32);
    let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
    let (m, n) = (g.len(), g[0].len());
    let mut delta = vec![vec![0.0; n]; m];
    for i in 0..m {
        for j in 0..n {
            let dg = g[i][j] - ghat[i][j];
            st.dm[i][j] = b1 * st.dm[i][j] + (1.0 - b1) * dg;
            st.dv[i][j] = b2 * st.dv[i][j] + 2.0 * (1.0 - b2) * ghat[i][j] * dg;
            let vhat = vb[i][j] / bc2;
            let den = (vhat + st.dv[i][j] / bc2).max(0.0).sqrt() + h.eps;
            delta[i][j] = (st.dm[i][j] / bc1) / den;
        }
    }
    delta
}

fn lowrank_inputs(
    rng: &mut Rng,
    side: Side,
    g: &Tensor,
    p: &Tensor,
    v: &mut Tensor,
    b2: f64,
) -> Tensor {
    let r = match side {
        Side::Right => g.matmul(p).unwrap(),
        Side::Left => p.t().unwrap().matmul(g).unwrap(),
    };
    // V' = b2 V' + (1-b2) R^2 plus noise so that project_back(V') is not trivially related to R.
    let noise = randn(rng, r.dims()[0], r.dims()[1])
        .affine(0.01, 0.0)
        .unwrap();
    *v = v
        .affine(b2, 0.0)
        .unwrap()
        .add(&r.sqr().unwrap().affine(1.0 - b2, 0.0).unwrap())
        .unwrap()
        .add(&noise.abs().unwrap())
        .unwrap();
    r
}

#[test]
fn update_matches_dense_formulas() {
    let mut rng = Rng::new(4);
    for &(m, n, r, side) in &[
        (30, 12, 3, Side::Right),
        (12, 30, 5, Side::Right),
        (30, 12, 4, Side::Left),
        (16, 16, 2, Side::Left),
    ] {
        let p = match side {
            Side::Right => randn(&mut rng, n, r),
            Side::Left => randn(&mut rng, m, r),
        };
        let mo = match side {
            Side::Right => randn(&mut rng, m, r),
            Side::Left => randn(&mut rng, r, n),
        };
        let mut s = SparseResidual::select(&mo, &p, side, 0.2).unwrap();
        let idx: Vec<u32> = s.index().to_vec1().unwrap();
        let mut dense = Dense {
            dm: vec![vec![0.0; n]; m],
            dv: vec![vec![0.0; n]; m],
        };
        let mut v = mo.zeros_like().unwrap();
        for t in 3..7u64 {
            let h = AdamHyper {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-3,
                t,
            };
            let g = randn(&mut rng, m, n);
            let rr = lowrank_inputs(&mut rng, side, &g, &p, &mut v, h.beta2);
            let lr = LowRank {
                side,
                p: &p,
                r: &rr,
                m: &mo,
                v: &v,
            };
            let got: Vec<f32> = s.update(&g, &lr, &h).unwrap().to_vec1().unwrap();
            let want = gather(
                &dense_step(
                    &mut dense,
                    side,
                    &host(&g),
                    &host(&p),
                    &host(&rr),
                    &host(&v),
                    &h,
                ),
                &idx,
            );
            // f32 vs f64: inputs of order 1 (products of r <= 5 N(0,1) terms), eps = 1e-3 bounds
            // the amplification of the denominator to 1e3; relative 1e-4 leaves a wide margin
            // over f32 rounding (~1e-7 relative per op) unless sqrt's argument sits within 1e-4
            // of the clip at 0, which would need near-cancellation at one of these few points.
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                let a = *a as f64;
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{side:?} {m}x{n} t={t} entry {k}: {a} vs {b}"
                );
            }
            let dm: Vec<f32> = s.dm().to_vec1().unwrap();
            for (a, b) in dm.iter().zip(gather(&dense.dm, &idx)) {
                assert!((*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0));
            }
            let dv: Vec<f32> = s.dv().to_vec1().unwrap();
            for (a, b) in dv.iter().zip(gather(&dense.dv, &idx)) {
                assert!((*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0));
            }
        }
    }
}

fn identity(n: usize) -> Tensor {
    Tensor::eye(n, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn full_space_projector_gives_zero_residual() {
    let mut rng = Rng::new(5);
    for side in [Side::Right, Side::Left] {
        let (m, n) = (7, 5);
        let p = identity(if side == Side::Right { n } else { m });
        let g = randn(&mut rng, m, n);
        let r = match side {
            Side::Right => g.matmul(&p).unwrap(),
            Side::Left => p.t().unwrap().matmul(&g).unwrap(),
        };
        let v = r.sqr().unwrap().affine(0.001, 0.0).unwrap();
        let mut s = SparseResidual::select(&r, &p, side, 0.5).unwrap();
        let lr = LowRank {
            side,
            p: &p,
            r: &r,
            m: &r,
            v: &v,
        };
        let h = AdamHyper {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            t: 3,
        };
        let delta: Vec<f32> = s.update(&g, &lr, &h).unwrap().to_vec1().unwrap();
        assert_eq!(delta.len(), 18);
        // P P^T = I exactly (identity in f32), so dG = G[L] - Ghat_L = 0 exactly.
        assert!(delta.iter().all(|&x| x == 0.0), "{delta:?}");
        let dm: Vec<f32> = s.dm().to_vec1().unwrap();
        assert!(dm.iter().all(|&x| x == 0.0));
    }
}

#[test]
fn ratio_zero_gives_empty_index_and_zero_delta() {
    let mut rng = Rng::new(6);
    let (m, n, r) = (6, 4, 2);
    let p = randn(&mut rng, n, r);
    let g = randn(&mut rng, m, n);
    let rr = g.matmul(&p).unwrap();
    let mut s = SparseResidual::select(&rr, &p, Side::Right, 0.0).unwrap();
    assert!(s.is_empty());
    assert_eq!(s.state_bytes(), 0);
    let lr = LowRank {
        side: Side::Right,
        p: &p,
        r: &rr,
        m: &rr,
        v: &rr,
    };
    let h = AdamHyper {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-6,
        t: 5,
    };
    let delta = s.update(&g, &lr, &h).unwrap();
    assert_eq!(delta.dims(), &[0]);
    let w = randn(&mut rng, m, n);
    let before: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    s.apply(&w, &delta, 0.1).unwrap();
    assert_eq!(before, w.flatten_all().unwrap().to_vec1::<f32>().unwrap());
}

#[test]
fn zero_gradient_gives_zero_delta_without_nan() {
    for side in [Side::Right, Side::Left] {
        let (m, n, r) = (8, 6, 3);
        let z = |a, b| Tensor::zeros((a, b), DType::F32, &Device::Cpu).unwrap();
        let p = match side {
            Side::Right => identity(n).narrow(1, 0, r).unwrap(),
            Side::Left => identity(m).narrow(1, 0, r).unwrap(),
        };
        let mo = match side {
            Side::Right => z(m, r),
            Side::Left => z(r, n),
        };
        // All-zero M': every magnitude ties at 0, so L is the first k flat indices.
        let mut s = SparseResidual::select(&mo, &p, side, 0.25).unwrap();
        assert_eq!(
            s.index().to_vec1::<u32>().unwrap(),
            (0..12).collect::<Vec<u32>>()
        );
        let g = z(m, n);
        let lr = LowRank {
            side,
            p: &p,
            r: &mo,
            m: &mo,
            v: &mo,
        };
        for t in 1..4 {
            let h = AdamHyper {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-6,
                t,
            };
            let d: Vec<f32> = s.update(&g, &lr, &h).unwrap().to_vec1().unwrap();
            assert!(d.iter().all(|&x| x == 0.0), "{d:?}");
            let mut tr =
                SparseResidual::select_for(&lr, 0.25, ResidualMode::TrackedMoments).unwrap();
            let d: Vec<f32> = tr.update_tracked(&g, &lr, &h).unwrap().to_vec1().unwrap();
            assert!(d.iter().all(|&x| x == 0.0), "tracked: {d:?}");
        }
    }
}

#[test]
fn apply_scatters_in_place_at_index() {
    let mut rng = Rng::new(7);
    let (m, n, r) = (9, 7, 2);
    let p = randn(&mut rng, n, r);
    let mo = randn(&mut rng, m, r);
    let s = SparseResidual::select(&mo, &p, Side::Right, 0.3).unwrap();
    let idx: Vec<u32> = s.index().to_vec1().unwrap();
    let delta = Tensor::from_vec(rng.normal_vec(idx.len()), idx.len(), &Device::Cpu).unwrap();
    let var = candle_core::Var::from_tensor(&randn(&mut rng, m, n)).unwrap();
    let before: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
    s.apply(var.as_tensor(), &delta, 0.5).unwrap();
    let after: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
    let d: Vec<f32> = delta.to_vec1().unwrap();
    let mut expect = before.clone();
    for (k, &i) in idx.iter().enumerate() {
        expect[i as usize] -= 0.5 * d[k];
    }
    for (a, b) in after.iter().zip(&expect) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0));
    }
    assert_ne!(before, after);
    // Wrong shapes are errors naming what was expected.
    let bad = s.apply(&randn(&mut rng, n, m), &delta, 0.5);
    assert!(matches!(bad, Err(OptimError::Shape { .. })));
    let t = randn(&mut rng, n, m).t().unwrap();
    assert!(matches!(
        s.apply(&t, &delta, 0.5),
        Err(OptimError::Shape { .. })
    ));
}

#[test]
fn save_load_roundtrip_and_validation() {
    let mut rng = Rng::new(8);
    let (m, n, r) = (10, 6, 2);
    let p = randn(&mut rng, m, r);
    let mo = randn(&mut rng, r, n);
    let mut s = SparseResidual::select(&mo, &p, Side::Left, 0.25).unwrap();
    let g = randn(&mut rng, m, n);
    let rr = p.t().unwrap().matmul(&g).unwrap();
    let v = rr.sqr().unwrap();
    let lr = LowRank {
        side: Side::Left,
        p: &p,
        r: &rr,
        m: &mo,
        v: &v,
    };
    let h = AdamHyper {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-6,
        t: 4,
    };
    s.update(&g, &lr, &h).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("res.safetensors");
    let named: HashMap<String, Tensor> = s.to_tensors("layer0.").into_iter().collect();
    candle_core::safetensors::save(&named, &path).unwrap();
    let loaded = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let back = SparseResidual::from_tensors(&loaded, "layer0.", m, n, &Device::Cpu)
        .unwrap()
        .unwrap();
    assert_eq!(
        s.index().to_vec1::<u32>().unwrap(),
        back.index().to_vec1::<u32>().unwrap()
    );
    for (a, b) in [(s.dm(), back.dm()), (s.dv(), back.dv())] {
        assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
    }
    // Continuing from the loaded state is bit-identical.
    let mut s2 = back.clone();
    let d1: Vec<f32> = s.update(&g, &lr, &h).unwrap().to_vec1().unwrap();
    let d2: Vec<f32> = s2.update(&g, &lr, &h).unwrap().to_vec1().unwrap();
    assert_eq!(d1, d2);

    // Absent -> None; partial, unsorted, out of range, wrong dtype -> State errors.
    assert!(
        SparseResidual::from_tensors(&loaded, "other.", m, n, &Device::Cpu)
            .unwrap()
            .is_none()
    );
    let mut partial = loaded.clone();
    partial.remove("layer0.residual.dv");
    let e = SparseResidual::from_tensors(&partial, "layer0.", m, n, &Device::Cpu);
    assert!(matches!(e, Err(OptimError::State { .. })));
    let len = s.len();
    let mut bad = loaded.clone();
    let mut rev: Vec<u32> = s.index().to_vec1().unwrap();
    rev.reverse();
    bad.insert("layer0.residual.index".into(), idx_tensor(&rev));
    assert!(SparseResidual::from_tensors(&bad, "layer0.", m, n, &Device::Cpu).is_err());
    let e = SparseResidual::from_tensors(&loaded, "layer0.", m, n - 3, &Device::Cpu);
    assert!(
        e.is_err(),
        "indices beyond a smaller matrix must be rejected"
    );
    bad.insert(
        "layer0.residual.index".into(),
        Tensor::zeros(len, DType::F32, &Device::Cpu).unwrap(),
    );
    assert!(SparseResidual::from_tensors(&bad, "layer0.", m, n, &Device::Cpu).is_err());
}

#[test]
fn config_validation_and_full_projection() {
    for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        let c = ResidualConfig {
            ratio: bad,
            ..Default::default()
        };
        assert!(
            matches!(c.validate(), Err(OptimError::Config { .. })),
            "{bad}"
        );
    }
    let c = ResidualConfig::default();
    assert!(c.validate().is_ok());
    assert_eq!(c.warmup(200), 200);
    let e = c.check_projection("model.layers.0.self_attn.q_proj.weight", true);
    match e {
        Err(OptimError::Config { param, msg }) => {
            assert!(param.contains("q_proj"));
            assert!(msg.contains("full"));
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(c.check_projection("w", false).is_ok());
    let zero = ResidualConfig {
        ratio: 0.0,
        ..Default::default()
    };
    assert!(zero.check_projection("w", true).is_ok());
}

#[test]
fn state_schedule_warmup_select_update_and_reselect() {
    let mut rng = Rng::new(9);
    let (m, n, r) = (12, 8, 2);
    let p = randn(&mut rng, n, r);
    let cfg = ResidualConfig {
        ratio: 0.1,
        warmup_steps: Some(2),
        refresh_index_on_projection: true,
        mode: ResidualMode::Paper,
    };
    let mut st = ResidualState::new(&cfg, 100).unwrap();
    assert_eq!(st.warmup(), 2);
    let mut v = Tensor::zeros((m, r), DType::F32, &Device::Cpu).unwrap();
    let w = candle_core::Var::from_tensor(&randn(&mut rng, m, n)).unwrap();
    for t in 1..=5u64 {
        let g = randn(&mut rng, m, n);
        let rr = lowrank_inputs(&mut rng, Side::Right, &g, &p, &mut v, 0.999);
        let mo = randn(&mut rng, m, r);
        let lr = LowRank {
            side: Side::Right,
            p: &p,
            r: &rr,
            m: &mo,
            v: &v,
        };
        let h = AdamHyper {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            t,
        };
        let before_idx = st.sparse().map(|s| s.index().to_vec1::<u32>().unwrap());
        let out = st.step(&g, &lr, &h, t == 4).unwrap();
        match t {
            1 => {
                assert!(out.is_none() && st.sparse().is_none());
                assert_eq!(st.state_bytes(), 0);
            }
            2 => {
                // Selected at the end of warm-up from this step's M'.
                assert!(out.is_none());
                let want = SparseResidual::select(&mo, &p, Side::Right, 0.1).unwrap();
                let got = st.sparse().unwrap().index().to_vec1::<u32>().unwrap();
                assert_eq!(got, want.index().to_vec1::<u32>().unwrap());
                assert_eq!(st.state_bytes(), 12 * 10);
            }
            _ => {
                let d = out.unwrap();
                let idx_now = st.sparse().unwrap().index().to_vec1::<u32>().unwrap();
                if t == 4 {
                    // Refresh step: L re-selected from this step's M' before the update.
                    let want = SparseResidual::select(&mo, &p, Side::Right, 0.1).unwrap();
                    assert_eq!(idx_now, want.index().to_vec1::<u32>().unwrap());
                } else {
                    assert_eq!(Some(idx_now), before_idx);
                }
                st.apply(w.as_tensor(), &d, 1e-3).unwrap();
            }
        }
    }
}

#[test]
fn reselect_carries_over_kept_positions() {
    let mut rng = Rng::new(10);
    let (m, n, r) = (10, 10, 3);
    let p = randn(&mut rng, n, r);
    let mo = randn(&mut rng, m, r);
    let mut s = SparseResidual::select(&mo, &p, Side::Right, 0.3).unwrap();
    let g = randn(&mut rng, m, n);
    let rr = g.matmul(&p).unwrap();
    let v = rr.sqr().unwrap();
    let lr = LowRank {
        side: Side::Right,
        p: &p,
        r: &rr,
        m: &mo,
        v: &v,
    };
    let h = AdamHyper {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-6,
        t: 3,
    };
    s.update(&g, &lr, &h).unwrap();
    let old: HashMap<u32, f32> = s
        .index()
        .to_vec1::<u32>()
        .unwrap()
        .into_iter()
        .zip(s.dm().to_vec1::<f32>().unwrap())
        .collect();
    let mo2 = mo
        .add(&randn(&mut rng, m, r).affine(0.5, 0.0).unwrap())
        .unwrap();
    let lr2 = LowRank { m: &mo2, ..lr };
    s.reselect(&lr2, 0.3, ResidualMode::Paper).unwrap();
    let idx: Vec<u32> = s.index().to_vec1().unwrap();
    let dm: Vec<f32> = s.dm().to_vec1().unwrap();
    let mut kept = 0;
    for (i, d) in idx.iter().zip(dm) {
        match old.get(i) {
            Some(&o) => {
                kept += 1;
                assert_eq!(o, d);
            }
            None => assert_eq!(d, 0.0),
        }
    }
    assert!(
        kept > 0 && kept < idx.len(),
        "test needs a partial overlap, kept {kept}"
    );
}

/// Dense f64 reference of [`ResidualMode::TrackedMoments`]: full AdamW moments over the whole
/// matrix, initialised from the low-rank moments, and the difference of the full AdamW update
/// and GaLore's low-rank update (galore-torch eps placement).
#[test]
fn tracked_moments_match_dense_adamw_minus_galore() {
    let mut rng = Rng::new(11);
    for &(m, n, r, side) in &[(20, 9, 3, Side::Right), (9, 20, 3, Side::Left)] {
        let p = match side {
            Side::Right => randn(&mut rng, n, r),
            Side::Left => randn(&mut rng, m, r),
        };
        let shape = if side == Side::Right { (m, r) } else { (r, n) };
        let mut mo = Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        let mut vo = mo.clone();
        let (b1, b2, eps) = (0.9, 0.99, 1e-6);
        let mut st: Option<SparseResidual> = None;
        let (mut fm, mut fv): (Mat, Mat) = (vec![], vec![]);
        for t in 1..=6u64 {
            let g = randn(&mut rng, m, n);
            let rr = match side {
                Side::Right => g.matmul(&p).unwrap(),
                Side::Left => p.t().unwrap().matmul(&g).unwrap(),
            };
            mo = mo
                .affine(b1, 0.0)
                .unwrap()
                .add(&rr.affine(1.0 - b1, 0.0).unwrap())
                .unwrap();
            vo = vo
                .affine(b2, 0.0)
                .unwrap()
                .add(&rr.sqr().unwrap().affine(1.0 - b2, 0.0).unwrap())
                .unwrap();
            let lr = LowRank {
                side,
                p: &p,
                r: &rr,
                m: &mo,
                v: &vo,
            };
            let h = AdamHyper {
                beta1: b1,
                beta2: b2,
                eps,
                t,
            };
            let (ph, mh, vh, gh) = (host(&p), host(&mo), host(&vo), host(&g));
            match st.as_mut() {
                None => {
                    st = Some(
                        SparseResidual::select_for(&lr, 0.2, ResidualMode::TrackedMoments).unwrap(),
                    );
                    fm = back(side, &ph, &mh);
                    let psq: Mat = ph
                        .iter()
                        .map(|row| row.iter().map(|x| x * x).collect())
                        .collect();
                    fv = back(side, &psq, &vh);
                    let s = st.as_ref().unwrap();
                    let idx: Vec<u32> = s.index().to_vec1().unwrap();
                    let got: Vec<f32> = s.dv().to_vec1().unwrap();
                    for (a, b) in got.iter().zip(gather(&fv, &idx)) {
                        assert!((*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0), "init V_L");
                    }
                }
                Some(s) => {
                    let idx: Vec<u32> = s.index().to_vec1().unwrap();
                    let got: Vec<f32> = s.update_tracked(&g, &lr, &h).unwrap().to_vec1().unwrap();
                    let ti = t as i32;
                    let step = (1.0 - b2.powi(ti)).sqrt() / (1.0 - b1.powi(ti));
                    let nlow: Mat = mh
                        .iter()
                        .zip(&vh)
                        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x / (y.sqrt() + eps)).collect())
                        .collect();
                    let low = back(side, &ph, &nlow);
                    let mut want = vec![vec![0.0; n]; m];
                    for i in 0..m {
                        for j in 0..n {
                            fm[i][j] = b1 * fm[i][j] + (1.0 - b1) * gh[i][j];
                            fv[i][j] = b2 * fv[i][j] + (1.0 - b2) * gh[i][j] * gh[i][j];
                            want[i][j] = step * (fm[i][j] / (fv[i][j].sqrt() + eps) - low[i][j]);
                        }
                    }
                    // f32 vs f64: all terms are O(1) (|M|/sqrt(V) <= ~1/sqrt(1-b2) here), the
                    // low-rank part sums r = 3 products; 1e-4 absolute+relative is ~100x the
                    // f32 rounding, while any formula change moves entries by O(0.1..1).
                    for (a, b) in got.iter().zip(gather(&want, &idx)) {
                        assert!(
                            (*a as f64 - b).abs() <= 1e-4 * b.abs().max(1.0),
                            "{side:?} t={t}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}

/// With a projector spanning the whole space the low-rank GaLore update is already full AdamW,
/// so the tracked residual is exactly zero (same f32 operations on both sides).
#[test]
fn tracked_moments_full_space_gives_zero_delta() {
    let mut rng = Rng::new(12);
    let (m, n) = (6, 5);
    let p = identity(n);
    let mut mo = Tensor::zeros((m, n), DType::F32, &Device::Cpu).unwrap();
    let mut vo = mo.clone();
    let cfg = ResidualConfig {
        ratio: 0.5,
        warmup_steps: Some(1),
        refresh_index_on_projection: false,
        mode: ResidualMode::TrackedMoments,
    };
    let mut st = ResidualState::new(&cfg, 10).unwrap();
    for t in 1..=4u64 {
        let g = randn(&mut rng, m, n);
        let rr = g.matmul(&p).unwrap();
        mo = mo
            .affine(0.9, 0.0)
            .unwrap()
            .add(&rr.affine(0.1, 0.0).unwrap())
            .unwrap();
        vo = vo
            .affine(0.999, 0.0)
            .unwrap()
            .add(&rr.sqr().unwrap().affine(1.0 - 0.999, 0.0).unwrap())
            .unwrap();
        let lr = LowRank {
            side: Side::Right,
            p: &p,
            r: &rr,
            m: &mo,
            v: &vo,
        };
        let h = AdamHyper {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            t,
        };
        if let Some(d) = st.step(&g, &lr, &h, false).unwrap() {
            let d: Vec<f32> = d.to_vec1().unwrap();
            assert_eq!(d.len(), 15);
            assert!(d.iter().all(|x| x.abs() <= 1e-6), "t={t}: {d:?}");
        }
    }
    assert!(st.sparse().is_some());
}
