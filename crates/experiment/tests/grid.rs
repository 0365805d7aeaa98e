//! A tiny grid end to end on the tiny model (seconds): every cell runs into its own folder, the
//! summary's numbers equal the per-run results, the group statistics equal mean and sample std
//! computed here, finished cells are skipped on a second call (and only a removed one re-runs),
//! the plots are PNG files, and shards split the cells between processes.

mod common;

use std::collections::BTreeMap;

use crosslore_experiment::grid::{cell_dir, cells, shard_of};
use crosslore_experiment::summary::ExperimentSummary;
use crosslore_experiment::{run_experiment, CommandOptions, Experiment};
use crosslore_train::RunSummary;

fn spec_text(model: &std::path::Path) -> String {
    format!(
        "name = \"tiny\"\ntask = \"e2e_nlg\"\nmethods = [\"adamw\", \"lora\", \"crosslore\"]\n\
         ranks = [4]\nseeds = [1, 2, 3]\nresidual_ratios = [0.05]\n\
         [learning_rates]\nadamw = 1e-2\nlora = 2e-2\ncrosslore = 1e-2\n\
         [eval]\nsamples = 3\nbatch_size = 3\nmax_new_tokens = 4\n[base]\n{}",
        common::tiny_base(model)
    )
}

/// Mean and sample standard deviation, by the one-pass sums formula (independent of the crate's
/// two-pass code).
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let s: f64 = v.iter().sum();
    let ss: f64 = v.iter().map(|x| x * x).sum();
    (s / n, ((ss - s * s / n) / (n - 1.0)).sqrt())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn tiny_grid_summary_matches_the_runs_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    common::write_tiny_folder(&model);
    let spec = tmp.path().join("tiny.toml");
    std::fs::write(&spec, spec_text(&model)).unwrap();
    let out = tmp.path().join("out");
    let opts = CommandOptions {
        out: Some(out.clone()),
        ..Default::default()
    };
    run_experiment(&spec, &opts).unwrap();

    let exp = Experiment::from_file(&spec).unwrap();
    let all = cells(&exp);
    assert_eq!(all.len(), 9);
    let summary: ExperimentSummary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary.missing.is_empty(), "{:?}", summary.missing);
    assert_eq!(summary.cells.len(), 9);
    assert_eq!(summary.primary_metric, "bleu");

    // per cell: the summary's numbers are the run folder's
    let mut by_group: BTreeMap<String, Vec<RunSummary>> = BTreeMap::new();
    for cell in &all {
        let dir = cell_dir(&exp, &out, cell);
        let run: RunSummary =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(run.steps, 2);
        assert!(
            !dir.read_dir()
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("ckpt-")),
            "checkpoints are removed"
        );
        let c = summary.cells.iter().find(|c| c.id == cell.id()).unwrap();
        assert_eq!(c.last_loss, run.last_loss);
        assert_eq!(c.mean_step_s, run.mean_step_s);
        assert_eq!(c.optimizer_state_bytes, run.memory.optimizer_state_bytes);
        let bleu = run.eval_after.as_ref().unwrap()["metrics"]["bleu"].as_f64();
        assert_eq!(c.metrics["bleu"], bleu);
        assert_eq!(c.loss_curve.len(), 2);
        assert_eq!(c.loss_curve.last().map(|p| p.1), run.last_loss);
        by_group.entry(cell.group()).or_default().push(run);
    }
    // methods differ in what they train: optimizer state differs between adamw and lora
    let state = |g: &str| by_group[g][0].memory.optimizer_state_bytes;
    assert_ne!(state("adamw"), state("lora-r4"));

    // per group: mean and sample std over the three seeds
    assert_eq!(summary.groups.len(), 3);
    for g in &summary.groups {
        let runs = &by_group[&g.group];
        assert_eq!(g.seeds, vec![1, 2, 3]);
        let losses: Vec<f64> = runs.iter().map(|r| r.last_loss.unwrap()).collect();
        let (m, s) = mean_std(&losses);
        let st = g.last_loss.as_ref().unwrap();
        assert!(
            close(st.mean, m) && close(st.std.unwrap(), s),
            "{}: {st:?} vs {m} {s}",
            g.group
        );
        let times: Vec<f64> = runs.iter().map(|r| r.mean_step_s).collect();
        assert!(close(
            g.mean_step_s.as_ref().unwrap().mean,
            mean_std(&times).0
        ));
        let bleus: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.eval_after.as_ref().unwrap()["metrics"]["bleu"].as_f64())
            .collect();
        if bleus.len() == 3 {
            let (m, s) = mean_std(&bleus);
            let st = &g.metrics["bleu"];
            assert!(
                close(st.mean, m) && close(st.std.unwrap(), s),
                "{}",
                g.group
            );
        }
    }
    // seeds give different runs (otherwise the spread would say nothing)
    let l: Vec<f64> = by_group["lora-r4"]
        .iter()
        .map(|r| r.last_loss.unwrap())
        .collect();
    assert!(l[0] != l[1] || l[1] != l[2], "{l:?}");

    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| crosslore | 4 | 5% |"), "{md}");
    for f in [
        "metric-bleu.png",
        "time-per-step.png",
        "memory.png",
        "loss-curves.png",
    ] {
        let bytes = std::fs::read(out.join("plots").join(f)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{f}");
    }

    if let Ok(keep) = std::env::var("CROSSLORE_EXPERIMENT_KEEP") {
        // for looking at the plots by eye
        for e in std::fs::read_dir(out.join("plots")).unwrap().flatten() {
            std::fs::create_dir_all(&keep).unwrap();
            std::fs::copy(e.path(), std::path::Path::new(&keep).join(e.file_name())).unwrap();
        }
    }

    // second call: every cell is skipped (the summaries stay byte-identical); a removed cell
    // re-runs alone
    let victim = cell_dir(&exp, &out, &all[4]);
    let other = cell_dir(&exp, &out, &all[0]);
    let before = std::fs::read(other.join("summary.json")).unwrap();
    std::fs::remove_file(victim.join("summary.json")).unwrap();
    run_experiment(&spec, &opts).unwrap();
    assert_eq!(std::fs::read(other.join("summary.json")).unwrap(), before);
    assert!(victim.join("summary.json").is_file());
    let again: ExperimentSummary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(again.cells.len(), 9);

    // a changed learning rate re-runs that method's cells only (config.toml differs)
    std::fs::write(
        &spec,
        spec_text(&model).replace("lora = 2e-2", "lora = 5e-3"),
    )
    .unwrap();
    run_experiment(&spec, &opts).unwrap();
    assert_eq!(
        std::fs::read(other.join("summary.json")).unwrap(),
        before,
        "adamw kept"
    );
    let exp2 = Experiment::from_file(&spec).unwrap();
    let lora = cells(&exp2)
        .into_iter()
        .find(|c| c.group() == "lora-r4")
        .unwrap();
    let cfg = std::fs::read_to_string(cell_dir(&exp2, &out, &lora).join("config.toml")).unwrap();
    assert!(cfg.contains("learning_rate = 0.005"), "{cfg}");
}

#[test]
fn time_budget_leaves_cells_pending_and_the_summary_lists_them() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    common::write_tiny_folder(&model);
    let spec = tmp.path().join("tiny.toml");
    std::fs::write(&spec, spec_text(&model)).unwrap();
    let out = tmp.path().join("out");
    // a zero budget starts the first cell only (no cell time known yet), then stops
    run_experiment(
        &spec,
        &CommandOptions {
            out: Some(out.clone()),
            time_budget_s: Some(0.0),
            ..Default::default()
        },
    )
    .unwrap();
    let s: ExperimentSummary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s.cells.len(), 1);
    assert_eq!(s.missing.len(), 8);
    assert!(std::fs::read_to_string(out.join("summary.md"))
        .unwrap()
        .contains("Not run"));
}

#[test]
fn shards_run_disjoint_cells_and_summarize_only_joins_them() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    common::write_tiny_folder(&model);
    let spec = tmp.path().join("tiny.toml");
    std::fs::write(&spec, spec_text(&model)).unwrap();
    let out = tmp.path().join("out");
    let exp = Experiment::from_file(&spec).unwrap();
    let all = cells(&exp);
    let opts = |shard, summarize_only| CommandOptions {
        out: Some(out.clone()),
        shard,
        summarize_only,
        ..Default::default()
    };
    let done = || -> Vec<bool> {
        all.iter()
            .map(|c| cell_dir(&exp, &out, c).join("summary.json").is_file())
            .collect()
    };
    // shard 0 of 2 runs exactly its own cells and writes no summary
    run_experiment(&spec, &opts(Some((0, 2)), false)).unwrap();
    let want: Vec<bool> = all.iter().map(|c| shard_of(c, 2) == 0).collect();
    assert!(want.contains(&true) && want.contains(&false), "{want:?}");
    assert_eq!(done(), want);
    assert!(!out.join("summary.json").exists());
    // shard 1 of 2 runs the rest; a summarize-only call then sees every cell
    run_experiment(&spec, &opts(Some((1, 2)), false)).unwrap();
    assert!(done().iter().all(|&d| d));
    run_experiment(&spec, &opts(None, true)).unwrap();
    let s: ExperimentSummary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s.cells.len(), 9);
    assert!(s.missing.is_empty(), "{:?}", s.missing);
}
