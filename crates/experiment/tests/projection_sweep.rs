//! The projection-quality experiment and the learning-rate sweep on the tiny model.

mod common;

use crosslore_experiment::projection::ProjectionReport;
use crosslore_experiment::sweep::{carve, SweepReport};
use crosslore_experiment::{run_experiment, CommandOptions};
use crosslore_train::Method;

#[test]
fn projection_residuals_on_tiny_model_gradients() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    common::write_tiny_folder(&model);
    let spec = tmp.path().join("p.toml");
    let base = common::tiny_base(&model).replace("max_steps = 2\n", "");
    std::fs::write(
        &spec,
        format!(
            "name = \"p\"\nkind = \"projection\"\ntask = \"e2e_nlg\"\nseeds = [5]\nmethods = [\"adamw\"]\n\
             [learning_rates]\nadamw = 1e-2\n\
             [projection]\nrank = 2\nsteps = 2\nevery = 1\nlayers = [0, 1]\npower_iters = [1, 2]\noversample = 2\n\
             [base]\n{base}"
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    run_experiment(
        &spec,
        &CommandOptions {
            out: Some(out.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let rep: ProjectionReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("projection.json")).unwrap())
            .unwrap();
    assert_eq!(rep.steps, vec![0, 1, 2]);
    assert_eq!(rep.losses.len(), 2);
    // 3 steps x 2 layers x (7 matrices x (svd + 2 rsi) + 4 attention matrices x cross-head)
    assert_eq!(rep.measurements.len(), 3 * 2 * (7 * 3 + 4));
    for m in &rep.measurements {
        assert!((0.0..=1.0 + 1e-5).contains(&m.residual), "{m:?}");
    }
    // exact SVD gives the smallest rank-r residual (Eckart-Young): no projector beats it
    for m in rep.measurements.iter().filter(|m| m.projector != "svd") {
        let svd = rep
            .measurements
            .iter()
            .find(|s| {
                s.projector == "svd"
                    && s.step == m.step
                    && s.layer == m.layer
                    && s.matrix == m.matrix
            })
            .unwrap();
        assert!(m.residual >= svd.residual - 1e-4, "{m:?} vs {svd:?}");
    }
    let md = std::fs::read_to_string(out.join("projection.md")).unwrap();
    assert!(md.contains("| q_proj | cross-head |"), "{md}");
    for f in ["projection-attention.png", "projection-mlp.png"] {
        assert!(out.join("plots").join(f).is_file(), "{f}");
    }
}

#[test]
fn carved_validation_is_disjoint_and_complete() {
    let text: String = (0..20).map(|i| format!("{{\"i\": {i}}}\n")).collect();
    let (train, val) = carve(&text, 0.25, 3);
    assert_eq!((train.len(), val.len()), (15, 5));
    let mut all: Vec<String> = train.iter().chain(&val).cloned().collect();
    all.sort();
    let mut want: Vec<String> = text.lines().map(String::from).collect();
    want.sort();
    assert_eq!(all, want);
    assert_eq!(carve(&text, 0.25, 3), (train, val), "seeded");
}

#[test]
fn lr_sweep_chooses_the_lowest_validation_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    common::write_tiny_folder(&model);
    let spec = tmp.path().join("s.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"s\"\nkind = \"lr_sweep\"\ntask = \"e2e_nlg\"\nseeds = [2]\n\
             [sweep]\nlearning_rates = {{ lora = [1e-4, 3e-2], adamw = [1e-3, 1e-2] }}\n\
             validation_fraction = 0.2\nvalidation_samples = 6\nrank = 4\n\
             [base]\n{}",
            common::tiny_base(&model)
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let read = || -> SweepReport {
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap()
    };
    // a zero time budget runs one (method, rate) per call and marks the sweep incomplete
    run_experiment(
        &spec,
        &CommandOptions {
            out: Some(out.clone()),
            time_budget_s: Some(0.0),
            ..Default::default()
        },
    )
    .unwrap();
    let partial = read();
    assert_eq!(partial.points.len(), 1);
    assert!(!partial.complete);
    run_experiment(
        &spec,
        &CommandOptions {
            out: Some(out.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let rep = read();
    assert!(rep.complete);
    assert_eq!(rep.points.len(), 4);
    assert_eq!(rep.validation_lines, 34, "20 % of the 170 training MRs");
    assert_eq!(rep.train_lines, 136);
    for m in [Method::Lora, Method::Adamw] {
        let pts: Vec<_> = rep.points.iter().filter(|p| p.method == m).collect();
        let best = pts
            .iter()
            .min_by(|a, b| a.val_loss.unwrap().total_cmp(&b.val_loss.unwrap()))
            .unwrap();
        let name = if m == Method::Lora { "lora" } else { "adamw" };
        assert_eq!(rep.chosen[name], best.learning_rate);
    }
    // the validation MRs are not in the training file
    let train = std::fs::read_to_string(out.join("data/train.jsonl")).unwrap();
    for l in std::fs::read_to_string(out.join("data/valid.jsonl"))
        .unwrap()
        .lines()
    {
        let mr = serde_json::from_str::<serde_json::Value>(l).unwrap()["mr"].to_string();
        assert!(!train.contains(&mr), "{mr}");
    }
    assert!(out.join("plots/sweep.png").is_file());
}
