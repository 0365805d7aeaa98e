//! Spec parsing: a full spec resolves as written; bad specs fail with the file and key named.

use crosslore_experiment::spec::{Experiment, Kind, SelectBy};
use crosslore_train::Method;

const GOOD: &str = r#"
name = "e2e-main"
task = "e2e_nlg"
methods = ["adamw", "lora", "crosslore"]
ranks = [16, 64]
seeds = [1, 2, 3]
residual_ratios = [0.0, 0.012]
metric = "bleu"

[learning_rates]
adamw = 2e-5
lora = 3e-4

[eval]
samples = 43
batch_size = 8

[base]
max_steps = 120
batch_size = 8
device = "cuda"
"#;

#[test]
fn a_good_spec_resolves() {
    let e = Experiment::from_toml_str(GOOD, "good.toml").unwrap();
    assert_eq!(e.spec.kind, Kind::Grid);
    assert_eq!(
        e.spec.methods,
        vec![Method::Adamw, Method::Lora, Method::Crosslore]
    );
    assert_eq!(e.base.max_steps, 120);
    assert_eq!(e.base.batch_size, 8);
    assert_eq!(e.base.task, "e2e_nlg");
    assert_eq!(e.base.eval_samples, 43);
    assert_eq!(e.learning_rate(Method::Lora), 3e-4);
    // no entry: the base learning rate (the TrainConfig default here)
    assert_eq!(e.learning_rate(Method::Crosslore), e.base.learning_rate);
    // adamw: 1 rank x 3 seeds; lora: 2 ranks x 3; crosslore: 2 ranks x 2 ratios x 3
    assert_eq!(crosslore_experiment::grid::cells(&e).len(), 3 + 6 + 12);
}

#[test]
fn sweep_and_projection_specs() {
    let s = Experiment::from_toml_str(
        "name = \"s\"\nkind = \"lr_sweep\"\ntask = \"mathqa\"\n[sweep]\nlearning_rates = { lora = [1e-4, 1e-3], adamw = [1e-5] }\nselect_by = \"metric\"\n",
        "s.toml",
    )
    .unwrap();
    assert_eq!(s.spec.sweep.as_ref().unwrap().select_by, SelectBy::Metric);
    assert_eq!(s.sweep_methods().len(), 2);
    let p = Experiment::from_toml_str(
        "name = \"p\"\nkind = \"projection\"\ntask = \"e2e_nlg\"\n[projection]\nsteps = 4\nevery = 2\nlayers = [0]\n",
        "p.toml",
    )
    .unwrap();
    assert_eq!(p.spec.projection.as_ref().unwrap().power_iters, vec![1, 2]);
}

fn err(text: &str) -> String {
    Experiment::from_toml_str(text, "bad.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_specs_name_the_file_and_key() {
    let head = "name = \"x\"\ntask = \"e2e_nlg\"\nmethods = [\"lora\"]\nranks = [8]\n";
    let cases: Vec<(String, &[&str])> = vec![
        (format!("{head}sedes = [1]\n"), &["bad.toml", "sedes"]),
        (format!("{head}[base]\nlearnig_rate = 1.0\n"), &["bad.toml", "learnig_rate", "did you mean `learning_rate`"]),
        (format!("{head}[base]\nmethod = \"lora\"\n"), &["base.method", "methods"]),
        (format!("{head}[base]\nrank = 0\n"), &["base.rank"]),
        (format!("{head}residual_ratios = [1.2]\n"), &["residual_ratios[0]", "fraction"]),
        (format!("{head}[learning_rates]\nlora = -1.0\n"), &["learning_rates.lora", "positive"]),
        (format!("{head}[learning_rates]\nsgd = 1.0\n"), &["learning_rates.sgd", "unknown method"]),
        (format!("{head}seeds = []\n"), &["seeds"]),
        (format!("{head}seeds = [1, 1]\n"), &["seeds", "duplicates"]),
        (format!("{head}[eval]\nbatch_size = 0\n"), &["eval.batch_size"]),
        (format!("{head}[eval]\nsampels = 3\n"), &["sampels"]),
        ("name = \"x\"\ntask = \"e2e_nlg\"\nmethods = [\"sgd\"]\n".into(), &["bad.toml", "sgd"]),
        ("name = \"x\"\ntask = \"e2e_nlg\"\nmethods = [\"lora\"]\n".into(), &["ranks"]),
        ("name = \"x\"\ntask = \"e2e_nlg\"\n".into(), &["methods"]),
        ("name = \"a/b\"\ntask = \"e2e_nlg\"\nmethods = [\"adamw\"]\n".into(), &["key `name`"]),
        ("task = \"e2e_nlg\"\nmethods = [\"adamw\"]\n".into(), &["name"]),
        ("name = \"x\"\nkind = \"projection\"\ntask = \"e2e_nlg\"\n".into(), &["projection", "needs"]),
        ("name = \"x\"\nkind = \"lr_sweep\"\ntask = \"e2e_nlg\"\n[sweep]\nlearning_rates = { lora = [] }\n".into(), &["sweep.learning_rates.lora"]),
        (format!("{head}[sweep]\nlearning_rates = {{ lora = [1e-3] }}\n"), &["sweep", "lr_sweep"]),
        ("name = \"x\"\ntask = \"e2e_nlg\"\nmethods = [\"lora\"]\nranks = [0]\n".into(), &["key `ranks`", "at least 1"]),
        ("name = \"x\"\ntask = \"e2e_nlg\"\nmethods = [\"adamw\"]\nranks = \"8\"\n".into(), &["bad.toml", "ranks"]),
    ];
    for (text, needles) in cases {
        let e = err(&text);
        for n in needles {
            assert!(e.contains(n), "spec:\n{text}\nerror: {e}\nmissing: {n}");
        }
    }
}

#[test]
fn learning_rates_from_a_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = tmp.path().join("sweep.json");
    std::fs::write(&sweep, r#"{"chosen": {"lora": 3e-4, "adamw": 1e-5}}"#).unwrap();
    let text = format!(
        "name = \"x\"\ntask = \"e2e_nlg\"\nmethods = [\"adamw\", \"lora\", \"galore\"]\nranks = [8]\n\
         learning_rates_from = \"{}\"\n[learning_rates]\nadamw = 2e-5\n",
        sweep.display()
    );
    let e = Experiment::from_toml_str(&text, "lr.toml").unwrap();
    assert_eq!(e.learning_rate(Method::Lora), 3e-4, "from the sweep");
    assert_eq!(
        e.learning_rate(Method::Adamw),
        2e-5,
        "the spec's own value wins"
    );
    assert_eq!(
        e.learning_rate(Method::Galore),
        e.base.learning_rate,
        "neither: base"
    );
    let missing = text.replace("sweep.json", "nope.json");
    let msg = Experiment::from_toml_str(&missing, "lr.toml")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("learning_rates_from") && msg.contains("nope.json"),
        "{msg}"
    );
}

/// The committed specs under experiments/ parse (their sweep file aside, which exists only once
/// the sweep ran).
#[test]
fn committed_specs_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text: String = std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("learning_rates_from"))
                .map(|l| format!("{l}\n"))
                .collect();
            Experiment::from_toml_str(&text, &p.display().to_string())
                .unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 6, "{n} specs");
}
