//! CPU smoke test of P3 at 1/16 of the LLaMA-2-7B shapes (one layer, batch 4 x 32 tokens): every
//! default arm trains (finite loss, positive throughput), and an unknown arm is an error. The
//! largest-batch search runs end to end on a simulated memory model (the CPU has no pool).
use candle_core::Device;
use crosslore_bench::p3::{max_batch_table, run, P3Options, DEFAULT_ARMS};
use crosslore_bench::p3_max::{AttemptKind, MaxBatchOptions, SimulatedMemory};
use crosslore_bench::shapes::ModelDims;

fn options(arms: Vec<String>) -> P3Options {
    P3Options {
        dims: ModelDims::llama2_7b(1, 16),
        batch: 4,
        seq: 32,
        steps: 1,
        warmup: 2,
        seed: 1,
        rate_scale: 16,
        arms,
        max_batch: None,
        profile: false,
    }
}

#[test]
fn p3_small_cpu_runs_every_default_arm() {
    let arms: Vec<String> = DEFAULT_ARMS.iter().map(|s| s.to_string()).collect();
    let rep = run(&Device::Cpu, &options(arms.clone())).expect("p3 on the CPU");
    let got: Vec<&str> = rep.results.iter().map(|r| r.arm.as_str()).collect();
    assert_eq!(got, arms.iter().map(String::as_str).collect::<Vec<_>>());
    for r in &rep.results {
        assert!(r.error.is_none(), "{r:?}");
        assert!(r.last_loss.is_finite() && r.last_loss > 0.0, "{r:?}");
        assert!(r.step_s > 0.0 && r.tokens_per_s > 0.0, "{r:?}");
        assert!(r.peak_used_gib.is_none(), "no pool on the CPU: {r:?}");
    }
}

#[test]
fn p3_unknown_arm_is_an_error() {
    let err = run(&Device::Cpu, &options(vec!["sgd".into()])).unwrap_err();
    assert!(err.to_string().contains("sgd"), "{err}");
}

/// The search through real (tiny) runs: probe at 2x, a refining probe at half the prediction, the
/// predicted batch refused by the simulated card (the budget is set above it), two step-downs,
/// the last fits and is timed.
#[test]
fn p3_max_batch_search_runs_end_to_end_on_a_simulated_card() {
    let mut opt = options(vec!["adamw-fused".into()]);
    opt.batch = 2;
    opt.steps = 1;
    opt.max_batch = Some(MaxBatchOptions {
        // a budget 20 % above the card: the prediction (13) does not fit, 11 neither, 9 does
        free_fraction: -0.2,
        steps: 1,
        simulate: Some(SimulatedMemory {
            fixed_gib: 20.0,
            per_sample_gib: 3.0,
            overhead: 1.0,
            capacity_gib: 50.0,
        }),
        ..Default::default()
    });
    let rep = run(&Device::Cpu, &opt).expect("p3 max batch on the CPU");
    let r = &rep.results[0];
    assert!(r.error.is_none(), "{r:?}");
    let m = r.max_batch.as_ref().expect("a search");
    let tried: Vec<(usize, AttemptKind)> = m.attempts.iter().map(|a| (a.batch, a.kind)).collect();
    assert_eq!(
        tried,
        vec![
            (4, AttemptKind::Probe),
            (6, AttemptKind::Probe),
            (13, AttemptKind::Final),
            (11, AttemptKind::Final),
            (9, AttemptKind::Final)
        ]
    );
    assert_eq!(m.plan.map(|p| p.batch), Some(13));
    assert_eq!(m.batch, Some(9));
    assert_eq!(m.error.as_deref(), Some("oom at b=13, 11"));
    assert!(m.step_s > 0.0 && m.tokens_per_s > 0.0, "{m:?}");
    assert!((m.tokens_per_s - 9.0 * 32.0 / m.step_s).abs() < 1e-6);
    assert_eq!(m.peak_used_gib, Some(47.0));
    let t = max_batch_table(&rep);
    assert!(t.contains("| adamw-fused | 9 |"), "{t}");
    assert!(t.contains("oom at b=13, 11"), "{t}");
}

/// Without the CUDA pool (and no simulation) the search says why it did not run.
#[test]
fn p3_max_batch_without_device_memory_figures_says_so() {
    let mut opt = options(vec!["lora-fused".into()]);
    opt.steps = 1;
    opt.max_batch = Some(MaxBatchOptions::default());
    let rep = run(&Device::Cpu, &opt).expect("p3 on the CPU");
    let m = rep.results[0].max_batch.as_ref().expect("a search");
    assert!(m.batch.is_none() && m.attempts.is_empty());
    assert!(
        m.error
            .as_deref()
            .unwrap_or("")
            .contains("no device memory figures"),
        "{m:?}"
    );
}

/// `profile`: the profiled steps come after the timed ones; the phases cover the fused layerwise
/// step (forward and backward of every layer, head, norms, optimizer) and the row keeps its
/// unprofiled time; without `profile` there is no profile.
#[test]
fn p3_profile_reports_every_phase_of_the_fused_layerwise_step() {
    let mut opt = options(vec!["crosslore-layerwise-fused".into()]);
    opt.steps = 2;
    opt.profile = true;
    let rep = run(&Device::Cpu, &opt).expect("p3 --profile on the CPU");
    let r = &rep.results[0];
    assert!(r.error.is_none(), "{r:?}");
    let p = r.profile.as_ref().expect("a profile");
    let count = |name: &str| p.iter().find(|x| x.phase == name).map(|x| x.count);
    // one layer, two profiled steps
    assert_eq!(count("forward: layer"), Some(2), "{p:?}");
    assert_eq!(count("backward: layer"), Some(2), "{p:?}");
    assert_eq!(count("head fwd+bwd"), Some(2), "{p:?}");
    assert_eq!(count("backward: embedding"), Some(2), "{p:?}");
    assert_eq!(count("batch upload"), Some(2), "{p:?}");
    assert!(count("optimizer step_params").unwrap_or(0) >= 2, "{p:?}");
    assert!(
        count("grad sq_norms + host read").unwrap_or(0) >= 2,
        "{p:?}"
    );
    let total: f64 = p.iter().map(|x| x.wall_s).sum();
    assert!(
        total > 0.0 && total <= 2.0 * r.profiled_step_s * 1.0001,
        "{total} vs {r:?}"
    );
    assert_eq!(r.samples_s.len(), 2);
    let t = crosslore_bench::p3::profile_tables(&rep);
    assert!(t.contains("| backward: layer | 1.0 |"), "{t}");
    opt.profile = false;
    let rep = run(&Device::Cpu, &opt).expect("p3 on the CPU");
    assert!(rep.results[0].profile.is_none());
}
