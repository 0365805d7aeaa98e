//! `crosslore score` run as a process: results equal `crosslore_eval` on the same lines, missing
//! or mismatched files are errors naming the file, undefined metrics are `null`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crosslore_eval::{score_corpus, Metric};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crosslore"))
}

fn write(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run crosslore")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

const HYPS: [&str; 3] = [
    "The Eagle is a cheap coffee shop near Burger King in the riverside area .",
    "Zizzi is a family friendly pub with a high customer rating.",
    "Café Rouge serves French food — prices are moderate, ça va.",
];
const REFS_A: [&str; 3] = [
    "The Eagle is a low priced coffee shop near Burger King by the river.",
    "Zizzi is a kid friendly pub rated highly by customers.",
    "Café Rouge serves French food at moderate prices.",
];
const REFS_B: [&str; 3] = [
    "Near Burger King in the riverside area there is a cheap coffee shop called The Eagle.",
    "The pub Zizzi is family friendly and has a high customer rating.",
    "For French food at average prices try Café Rouge.",
];

#[test]
fn score_equals_library_multi_reference() {
    let dir = tempfile::tempdir().unwrap();
    let h = write(dir.path(), "hyp.txt", &HYPS);
    let r1 = write(dir.path(), "ref1.txt", &REFS_A);
    let r2 = write(dir.path(), "ref2.txt", &REFS_B);
    let out = run(&[
        "score",
        "--metrics",
        "bleu,nist,meteor,rouge,cider",
        "--hyp",
        h.to_str().unwrap(),
        "--ref",
        r1.to_str().unwrap(),
        "--ref",
        r2.to_str().unwrap(),
    ]);
    let got = json(&out);
    let refs: Vec<Vec<String>> = (0..3)
        .map(|i| vec![REFS_A[i].to_string(), REFS_B[i].to_string()])
        .collect();
    let metrics = Metric::parse_list("bleu,nist,meteor,rouge,cider").unwrap();
    let want = score_corpus(&metrics, &HYPS, &refs).unwrap();
    let obj = got.as_object().unwrap();
    assert_eq!(obj.len(), want.len(), "{got}");
    for (k, v) in &want {
        assert_eq!(obj[k].as_f64(), Some(*v), "{k}");
    }
    // one reference file gives the single-reference scores (different from the above)
    let single = json(&run(&[
        "score",
        "--metrics",
        "bleu",
        "--hyp",
        h.to_str().unwrap(),
        "--ref",
        r1.to_str().unwrap(),
    ]));
    let refs1: Vec<Vec<String>> = REFS_A.iter().map(|r| vec![r.to_string()]).collect();
    let want1 = score_corpus(&[Metric::Bleu], &HYPS, &refs1).unwrap();
    assert_eq!(single["bleu"].as_f64(), Some(want1["bleu"]));
    assert_ne!(want1["bleu"], want["bleu"]);
}

#[test]
fn score_accuracy_and_stemmer_option() {
    let dir = tempfile::tempdir().unwrap();
    let hyps = ["so 9 * 2 = 18 #### 18", "The answer is 7.", "(b)"];
    let golds = ["18", "8", "b"];
    let h = write(dir.path(), "answers.txt", &hyps);
    let r = write(dir.path(), "gold.txt", &golds);
    let got = json(&run(&[
        "score",
        "--metrics",
        "accuracy",
        "--hyp",
        h.to_str().unwrap(),
        "--ref",
        r.to_str().unwrap(),
    ]));
    let refs: Vec<Vec<String>> = golds.iter().map(|g| vec![g.to_string()]).collect();
    let want = score_corpus(&[Metric::Accuracy], &hyps, &refs).unwrap();
    assert_eq!(got["accuracy"].as_f64(), Some(want["accuracy"]));
    assert_eq!(want["accuracy"], 2.0 / 3.0);

    // ROUGE without stemming differs on inflected words
    let h = write(dir.path(), "h.txt", &["the cats were running quickly"]);
    let r = write(dir.path(), "r.txt", &["a cat runs quick"]);
    let args = |extra: &[&str]| {
        let mut a = vec![
            "score",
            "--metrics",
            "rouge",
            "--hyp",
            h.to_str().unwrap(),
            "--ref",
            r.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let stem = json(&bin().args(args(&[])).output().unwrap());
    let plain = json(&bin().args(args(&["--no-rouge-stemmer"])).output().unwrap());
    assert!(stem["rouge1"].as_f64().unwrap() > plain["rouge1"].as_f64().unwrap());
}

#[test]
fn mismatched_line_counts_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let h = write(dir.path(), "hyp.txt", &HYPS);
    let short = write(dir.path(), "short_refs.txt", &REFS_A[..2]);
    let out = run(&[
        "score",
        "--hyp",
        h.to_str().unwrap(),
        "--ref",
        short.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("short_refs.txt has 2 lines"), "{err}");
    assert!(err.contains("hyp.txt"), "{err}");
    assert!(out.stdout.is_empty());

    let missing = dir.path().join("nope.txt");
    let out = run(&[
        "score",
        "--hyp",
        missing.to_str().unwrap(),
        "--ref",
        short.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.txt"));

    let out = run(&[
        "score",
        "--metrics",
        "bleu,blue",
        "--hyp",
        h.to_str().unwrap(),
        "--ref",
        h.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("blue"));
}

#[test]
fn undefined_metric_is_null_not_fatal() {
    // two-word hypotheses: NIST (n = 5) is undefined in nltk; BLEU is defined (0)
    let dir = tempfile::tempdir().unwrap();
    let hyps = ["a b", "c d"];
    let refs = ["a b c d e f", "c d e f g h"];
    let h = write(dir.path(), "h.txt", &hyps);
    let r = write(dir.path(), "r.txt", &refs);
    let out = run(&[
        "score",
        "--metrics",
        "bleu,nist",
        "--hyp",
        h.to_str().unwrap(),
        "--ref",
        r.to_str().unwrap(),
    ]);
    let got = json(&out);
    let lib_refs: Vec<Vec<String>> = refs.iter().map(|r| vec![r.to_string()]).collect();
    let nist = score_corpus(&[Metric::Nist], &hyps, &lib_refs);
    match nist {
        Err(_) => {
            assert!(got["nist"].is_null(), "{got}");
            assert!(String::from_utf8_lossy(&out.stderr).contains("nist"));
        }
        Ok(v) => assert_eq!(got["nist"].as_f64(), Some(v["nist"])),
    }
    let bleu = score_corpus(&[Metric::Bleu], &hyps, &lib_refs).unwrap();
    assert_eq!(got["bleu"].as_f64(), Some(bleu["bleu"]));
}
