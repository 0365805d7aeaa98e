//! The shipped datasets (`data/`): they load, their counts match `data/manifest.json` (written by
//! scripts/extract_bigbench.py), and the E2E split is disjoint by meaning representation.

use std::collections::HashSet;
use std::path::Path;

use crosslore_data::{expand_references, Answer, ShippedTask, Split};

fn manifest() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/manifest.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn shipped_tasks_load_with_manifest_counts() {
    let m = manifest();
    for task in ShippedTask::ALL {
        for split in [Split::Train, Split::Test] {
            let ex = task.load(split).unwrap();
            let key = format!("{}/{}.jsonl", task.name(), split.name());
            let lines = m["files"][&key]["lines"].as_u64().unwrap() as usize;
            assert_eq!(ex.len(), lines, "{key}");
            assert!(
                ex.iter()
                    .all(|e| !e.target.trim().is_empty() && !e.prompt.turns.is_empty()),
                "{key}"
            );
        }
    }
}

#[test]
fn e2e_split_is_disjoint_by_meaning_representation() {
    let m = manifest();
    let train = ShippedTask::E2eNlg.load(Split::Train).unwrap();
    let test = ShippedTask::E2eNlg.load(Split::Test).unwrap();
    let mrs = |v: &[crosslore_data::Example]| -> HashSet<String> {
        v.iter()
            .map(|e| e.prompt.turns[0].content.clone())
            .collect()
    };
    let (tr, te) = (mrs(&train), mrs(&test));
    assert_eq!(tr.len(), train.len(), "one line per MR in train");
    assert_eq!(te.len(), test.len(), "one line per MR in test");
    assert!(tr.is_disjoint(&te));
    // Roughly 80/20 of the MRs.
    let frac = te.len() as f64 / (tr.len() + te.len()) as f64;
    assert!((0.18..=0.22).contains(&frac), "{frac}");
    // Multi-reference test; expanding train gives one example per reference.
    let refs = |key: &str| m["files"][key]["references"].as_u64().unwrap() as usize;
    assert_eq!(
        test.iter().map(|e| e.references.len()).sum::<usize>(),
        refs("e2e_nlg/test.jsonl")
    );
    assert!(test.iter().any(|e| e.references.len() > 1));
    assert_eq!(expand_references(&train).len(), refs("e2e_nlg/train.jsonl"));
}

#[test]
fn mathqa_gold_answers_are_options() {
    for split in [Split::Train, Split::Test] {
        for ex in ShippedTask::Mathqa.load(split).unwrap() {
            let Some(Answer::Choice { letter, option }) = &ex.answer else {
                panic!("{:?}", ex.id)
            };
            assert_eq!(ex.target, letter.to_string());
            assert!(
                ex.prompt.turns[0]
                    .content
                    .contains(&format!("{letter}) {option}")),
                "{:?}",
                ex.id
            );
        }
    }
}

#[test]
fn shipped_splits_do_not_overlap() {
    for task in ShippedTask::ALL {
        let ids = |s| -> HashSet<String> {
            task.load(s)
                .unwrap()
                .into_iter()
                .map(|e| e.id.unwrap())
                .collect()
        };
        assert!(ids(Split::Train).is_disjoint(&ids(Split::Test)), "{task}");
    }
}
