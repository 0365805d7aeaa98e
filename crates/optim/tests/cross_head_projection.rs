//! Cross-head projection (paper Sec. 4.1, Eq. 3-4): layout inference, head sampling, subspace
//! recovery on matrices whose heads share a row space, GQA, rank capping, and a numpy reference.
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use crosslore_linalg::rsi::RsiConfig;
use crosslore_linalg::svd::subspace_residual;
use crosslore_linalg::{Rng, Side};
use crosslore_optim::cross_head::{
    cross_head_projector, heads_needed, infer_layout, infer_layout_with, projector_for_heads,
    CrossHeadTarget, HeadGroup, HeadLayout,
};
use crosslore_optim::OptimError;

fn randn(rng: &mut Rng, rows: usize, cols: usize) -> Tensor {
    Tensor::from_vec(rng.normal_vec(rows * cols), (rows, cols), &Device::Cpu).unwrap()
}

/// `[n_heads * d_head, d_model]` whose heads all have rows in one shared `dim`-dimensional row
/// space: head h = C_h B with C_h `[d_head, dim]`, B `[dim, d_model]`.
fn shared_row_space(rng: &mut Rng, layout: &HeadLayout, dim: usize, d_model: usize) -> Tensor {
    let b = randn(rng, dim, d_model);
    let heads: Vec<Tensor> = (0..layout.n_heads)
        .map(|_| randn(rng, layout.d_head, dim).matmul(&b).unwrap())
        .collect();
    Tensor::cat(&heads, 0).unwrap() // [n_heads * d_head, d_model]
}

fn assert_orthonormal(p: &Tensor) {
    let k = p.dims()[1];
    let gram: Vec<Vec<f32>> = p.t().unwrap().matmul(p).unwrap().to_vec2().unwrap();
    for (i, row) in gram.iter().enumerate().take(k) {
        for (j, &x) in row.iter().enumerate() {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((x - want).abs() < 1e-4, "P^T P [{i},{j}] = {x}");
        }
    }
}

#[test]
fn recovers_shared_row_space() {
    let mut rng = Rng::new(1);
    // (n_heads, d_head, d_model, rank, oversample): exact Gram path (8 <= 3 + 8), RSI path
    // (16 > 4 + 2), and rank > d_head (two heads of 4 rows for a 6-dim space).
    for &(n_heads, d_head, d_model, rank, p) in &[
        (6, 8, 40, 3, 8),
        (4, 16, 48, 4, 2),
        (5, 4, 30, 6, 8),
        (5, 4, 30, 6, 0),
    ] {
        let layout = HeadLayout { n_heads, d_head };
        let g = shared_row_space(&mut rng, &layout, rank, d_model);
        let cfg = RsiConfig {
            oversample: p,
            power_iters: 2,
        };
        let (proj, heads) = cross_head_projector(&g, &layout, rank, &cfg, &mut rng, None).unwrap();
        assert_eq!(proj.dims(), &[d_model, rank]);
        assert_eq!(heads.len(), heads_needed(&layout, rank));
        assert_orthonormal(&proj);
        // The whole matrix (every head, not only the drawn ones) lies in span(P): the relative
        // residual is f32 rounding only. An exactly rank-`rank` slice with well-conditioned
        // random factors gives P accurate to ~1e-6; 1e-4 leaves a margin, while a wrong subspace
        // (or a left-side projector) gives residuals of order 1.
        let res = subspace_residual(&g, &proj, Side::Right).unwrap();
        assert!(
            res < 1e-4,
            "{n_heads}x{d_head} d_model {d_model} r {rank}: residual {res}"
        );
    }
}

#[test]
fn heads_are_distinct_and_seeded() {
    let layout = HeadLayout {
        n_heads: 12,
        d_head: 4,
    };
    let mut rng = Rng::new(2);
    let g = randn(&mut rng, 48, 20);
    let cfg = RsiConfig::default();
    let mut seen = std::collections::HashSet::new();
    for seed in 0..20u64 {
        let (p1, h1) =
            cross_head_projector(&g, &layout, 10, &cfg, &mut Rng::new(seed), None).unwrap();
        let (p2, h2) =
            cross_head_projector(&g, &layout, 10, &cfg, &mut Rng::new(seed), None).unwrap();
        assert_eq!(h1, h2);
        assert_eq!(
            p1.to_vec2::<f32>().unwrap(),
            p2.to_vec2::<f32>().unwrap(),
            "same seed, same projector"
        );
        assert_eq!(h1.len(), 3); // ceil(10 / 4)
        let mut s = h1.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 3, "distinct heads {h1:?}");
        assert!(h1.iter().all(|&h| h < 12));
        seen.insert(h1);
    }
    assert!(
        seen.len() > 10,
        "seeds should draw varied head sets, got {}",
        seen.len()
    );
}

#[test]
fn rank_above_d_head_uses_several_heads_and_caps() {
    let mut rng = Rng::new(3);
    let layout = HeadLayout {
        n_heads: 3,
        d_head: 4,
    };
    let g = randn(&mut rng, 12, 30);
    let cfg = RsiConfig::default();
    let (p, heads) = cross_head_projector(&g, &layout, 9, &cfg, &mut rng, None).unwrap();
    assert_eq!(heads.len(), 3);
    assert_eq!(p.dims(), &[30, 9]);
    // rank beyond all rows: every head, r_eff = 12.
    let (p, heads) = cross_head_projector(&g, &layout, 20, &cfg, &mut rng, None).unwrap();
    assert_eq!(heads.len(), 3);
    assert_eq!(p.dims(), &[30, 12]);
    // rank beyond d_model: r_eff = d_model.
    let g = randn(&mut rng, 12, 5);
    let (p, _) = cross_head_projector(&g, &layout, 8, &cfg, &mut rng, None).unwrap();
    assert_eq!(p.dims(), &[5, 5]);
    assert_orthonormal(&p);
}

#[test]
fn gqa_key_projection_uses_kv_heads() {
    let (n_heads, n_kv_heads, d_head, d_model) = (8, 2, 4, 32);
    let k_layout = infer_layout(
        "model.layers.5.self_attn.k_proj.weight",
        n_heads,
        n_kv_heads,
        d_head,
    )
    .unwrap();
    assert_eq!(
        k_layout,
        HeadLayout {
            n_heads: 2,
            d_head: 4
        }
    );
    let mut rng = Rng::new(4);
    let g = shared_row_space(&mut rng, &k_layout, 3, d_model); // [8, 32]
    let (p, heads) =
        cross_head_projector(&g, &k_layout, 3, &RsiConfig::default(), &mut rng, None).unwrap();
    assert_eq!(heads.len(), 1);
    assert!(heads[0] < 2);
    assert!(subspace_residual(&g, &p, Side::Right).unwrap() < 1e-4);
    // A q_proj-shaped gradient with the k layout is a shape error that names both.
    let q_layout = infer_layout(
        "model.layers.5.self_attn.q_proj.weight",
        n_heads,
        n_kv_heads,
        d_head,
    )
    .unwrap();
    assert_eq!(q_layout.n_heads, 8);
    let gq = randn(&mut rng, 32, d_model);
    let err =
        cross_head_projector(&gq, &k_layout, 3, &RsiConfig::default(), &mut rng, None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, OptimError::Shape { .. }));
    assert!(msg.contains("[32, 32]") && msg.contains("2 * 4"), "{msg}");
}

#[test]
fn layout_inference_by_suffix() {
    assert_eq!(
        infer_layout("model.layers.0.self_attn.q_proj.weight", 32, 8, 128),
        Some(HeadLayout {
            n_heads: 32,
            d_head: 128
        })
    );
    assert_eq!(
        infer_layout("self_attn.k_proj.weight", 32, 8, 128).map(|l| l.n_heads),
        Some(8)
    );
    for name in [
        "model.layers.0.self_attn.v_proj.weight",
        "model.layers.0.self_attn.o_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.xself_attn.q_proj.weight",
        "model.layers.0.self_attn.q_proj.bias",
    ] {
        assert_eq!(infer_layout(name, 32, 8, 128), None, "{name}");
    }
    let targets = vec![CrossHeadTarget {
        suffix: "self_attn.v_proj.weight".into(),
        group: HeadGroup::KeyValue,
    }];
    assert_eq!(
        infer_layout_with(
            "model.layers.1.self_attn.v_proj.weight",
            &targets,
            32,
            8,
            64
        ),
        Some(HeadLayout {
            n_heads: 8,
            d_head: 64
        })
    );
    assert_eq!(
        infer_layout_with(
            "model.layers.1.self_attn.q_proj.weight",
            &targets,
            32,
            8,
            64
        ),
        None
    );
}

#[test]
fn invalid_inputs_are_errors() {
    let mut rng = Rng::new(5);
    let layout = HeadLayout {
        n_heads: 4,
        d_head: 3,
    };
    let g = randn(&mut rng, 12, 10);
    let cfg = RsiConfig::default();
    assert!(cross_head_projector(&g, &layout, 0, &cfg, &mut rng, None).is_err());
    let zero = HeadLayout {
        n_heads: 0,
        d_head: 3,
    };
    assert!(cross_head_projector(&g, &zero, 2, &cfg, &mut rng, None).is_err());
    let warm_bad = randn(&mut rng, 10, 3);
    let e = cross_head_projector(&g, &layout, 2, &cfg, &mut rng, Some(&warm_bad));
    assert!(matches!(e, Err(OptimError::Shape { .. })));
    for heads in [vec![], vec![1, 1], vec![4]] {
        assert!(projector_for_heads(&g, &layout, &heads, 2, &cfg, &mut rng, None).is_err());
    }
}

#[test]
fn zero_gradient_gives_orthonormal_projector() {
    let layout = HeadLayout {
        n_heads: 4,
        d_head: 4,
    };
    let g = Tensor::zeros((16, 12), DType::F32, &Device::Cpu).unwrap();
    for p in [8, 0] {
        let cfg = RsiConfig {
            oversample: p,
            power_iters: 2,
        };
        let (proj, _) = cross_head_projector(&g, &layout, 3, &cfg, &mut Rng::new(6), None).unwrap();
        assert_eq!(proj.dims(), &[12, 3]);
        let v: Vec<f32> = proj.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()));
        assert_orthonormal(&proj);
    }
}

fn fixture() -> HashMap<String, Tensor> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cross_head_reference.safetensors"
    );
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

/// `max |P P^T - V V^T|` against numpy's exact top-r right subspace of the drawn heads' rows.
fn check_reference(name: &str, cfg: &RsiConfig, tol: f32) {
    let d = fixture();
    let get = |k: &str| d[&format!("{name}.{k}")].clone();
    let meta: Vec<i64> = get("meta").to_vec1().unwrap();
    let layout = HeadLayout {
        n_heads: meta[0] as usize,
        d_head: meta[1] as usize,
    };
    let rank = meta[3] as usize;
    let heads: Vec<usize> = get("heads")
        .to_vec1::<i64>()
        .unwrap()
        .iter()
        .map(|&h| h as usize)
        .collect();
    let p = projector_for_heads(
        &get("g"),
        &layout,
        &heads,
        rank,
        cfg,
        &mut Rng::new(7),
        None,
    )
    .unwrap();
    let got: Vec<f32> = p
        .matmul(&p.t().unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let want: Vec<f32> = get("proj").flatten_all().unwrap().to_vec1().unwrap();
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err < tol, "{name} {cfg:?}: max projector error {err}");
}

// Spectra per head are geometric 1 .. 1e-3; the gap at the chosen rank is >= 2.7x ("one": 8
// singular values, rank 5) and ~10x ("two": two heads, rank 6). The exact f32 Gram path has
// projector error ~ eps * sigma_1^2 / (sigma_r^2 - sigma_{r+1}^2) <= 6e-8 / 3e-4 ~ 2e-4
// (perturbation bound for the eigenvectors of A A^T); 2e-3 is a safe bound. RSI (oversample 0,
// q = 2) converges as (sigma_{r+1}/sigma_r)^(2q+1): <= 1e-5 for "two".
#[test]
fn cross_head_reference_gram_path() {
    check_reference("one", &RsiConfig::default(), 2e-3);
    check_reference("two", &RsiConfig::default(), 2e-3);
}

#[test]
fn cross_head_reference_rsi_path() {
    let cfg = RsiConfig {
        oversample: 0,
        power_iters: 2,
    };
    check_reference("two", &cfg, 2e-3);
}
